"""Writers that fsync one file at the same time: argv = file, writers, rounds. Each round
writes 256 KiB (several pages: the client sends them UNSTABLE, a single page would go
FILE_SYNC) and fsyncs, which sends a COMMIT; COMMITs of one file from two writers overlap."""

import os
import sys
from multiprocessing import Process


def writer(path, rounds, tag):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    block = bytes([tag]) * (256 << 10)
    for _ in range(rounds):
        os.pwrite(fd, block, 0)
        os.fsync(fd)
    os.close(fd)


if __name__ == "__main__":
    path, writers, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    procs = [Process(target=writer, args=(path, rounds, i)) for i in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    sys.exit(max(p.exitcode for p in procs))

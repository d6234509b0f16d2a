"""Provokes NFS errors from the calling process (run it in a pod's cgroup) and writes, as
JSON, what each step returned to the application: the VM test checks nasflow saw the same.

errors.py CLIENT_DIR SERVER_DIR SMALL_CLIENT_DIR MISSING_LOOKUPS RESULTS_JSON
  CLIENT_DIR/SERVER_DIR: one export, through the NFS mount and directly on the server.
  SMALL_CLIENT_DIR: a mount of a tiny export, to run out of space on."""

import errno
import json
import mmap
import os
import sys
import time

client, server, small, missing, results = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
out = {}


def outcome(call):
    try:
        call()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def pread_direct(fd):
    buf = mmap.mmap(-1, 4096)  # O_DIRECT wants an aligned buffer
    return outcome(lambda: os.preadv(fd, [buf], 0))


def make(path):
    with open(path, "wb") as f:
        f.write(b"n" * 4096)
    os.chmod(path, 0o644)


# EACCES: readable when opened, made unreadable on the server, read again (O_DIRECT, so
# the READ goes to the server, which checks permissions on every READ).
make(f"{server}/secret")
os.setresuid(65534, 65534, 0)
fd = os.open(f"{client}/secret", os.O_RDONLY | os.O_DIRECT)
out["eacces_before"] = pread_direct(fd)
os.seteuid(0)
os.chmod(f"{server}/secret", 0o600)
os.seteuid(65534)
out["eacces"] = pread_direct(fd)
os.close(fd)
os.seteuid(0)

# ESTALE: a file held open by the client and removed on the server.
make(f"{server}/stale")
fd = os.open(f"{client}/stale", os.O_RDONLY | os.O_DIRECT)
out["estale_before"] = pread_direct(fd)
os.unlink(f"{server}/stale")
time.sleep(5)  # nfsd's file cache lets go of the file (the server's timing: nothing waits for the agent)
out["estale"] = pread_direct(fd)
os.close(fd)

# ENOENT: lookups of names that do not exist.
out["enoent"] = [outcome(lambda i=i: os.stat(f"{client}/missing-{i}")) for i in range(missing)]

# ENOSPC: direct writes past the end of a tiny export.
fd = os.open(f"{small}/fill", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
chunk = mmap.mmap(-1, 1 << 20)
out["enospc"] = [outcome(lambda: os.write(fd, chunk)) for _ in range(3)]
os.close(fd)

with open(results, "w") as f:
    json.dump(out, f)

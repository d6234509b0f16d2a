#!/usr/bin/python3
"""Writes SIZE bytes at OFFSET into PATH through the page cache, then keeps the file open
until RELEASE exists, so that nothing but writeback or someone else's sync flushes it."""
import os
import sys
import time

path, offset, size, ready, release = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
chunk = b"n" * 65536
done = 0
while done < size:
    n = os.pwrite(fd, chunk[: min(len(chunk), size - done)], offset + done)
    done += n
open(ready, "w").close()
deadline = time.time() + 300
while not os.path.exists(release) and time.time() < deadline:  # polls for the release file
    time.sleep(0.1)
os.close(fd)

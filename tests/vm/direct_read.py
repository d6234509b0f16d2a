"""Opens a file with O_DIRECT, says so, waits to be told to go, then reads 64 KiB from offset
0 straight from the NAS (one NFS READ, no page cache): `direct_read.py <file> <ready> <go>`.
Prints the file's inode number (its NFS file id)."""
import mmap
import os
import sys
import time

path, ready, go = sys.argv[1:4]
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
print(os.fstat(fd).st_ino, flush=True)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.02)
buf = mmap.mmap(-1, 65536)  # page-aligned, as O_DIRECT wants
n = os.preadv(fd, [buf], 0)
assert n == 65536, n
os.close(fd)

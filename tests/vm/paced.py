#!/usr/bin/python3
"""Writes 4 KiB blocks with O_DIRECT to PATH as a Poisson process of RATE per second (0: as
fast as it can) until STOP exists or SECONDS have passed. Arrival times are scheduled, so a
writer that falls behind catches up: the count per interval follows the rate, not the CPU.
  paced.py PATH RATE SECONDS STOP [SEED]"""
import mmap
import os
import random
import sys
import time

path, rate, seconds, stop = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else 1)
buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT wants
buf.write(b"p" * 4096)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
start = time.monotonic()
due = start
block = 0
while time.monotonic() - start < seconds and not os.path.exists(stop):
    if rate > 0:
        due += rng.expovariate(rate)
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    os.pwrite(fd, buf, (block % 256) * 4096)
    block += 1
os.close(fd)
print(block)

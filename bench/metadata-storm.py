"""A metadata storm on an NFS directory for a fixed time: per round, create a new file, stat
a name never looked up before (a LOOKUP the client cannot answer from its caches), stat the
new file, and remove it. Prints {"ops": rounds * 4, "seconds": elapsed} as JSON."""
import json
import os
import sys
import time

base, seconds = sys.argv[1], float(sys.argv[2])
os.makedirs(base, exist_ok=True)
tag = f"{os.getpid()}-{time.monotonic_ns()}"
rounds, start = 0, time.monotonic()
while time.monotonic() - start < seconds:
    name = os.path.join(base, f"f{tag}-{rounds}")
    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    try:
        os.stat(os.path.join(base, f"missing{tag}-{rounds}"))
    except FileNotFoundError:
        pass
    os.stat(name)
    os.unlink(name)
    rounds += 1
elapsed = time.monotonic() - start
print(json.dumps({"ops": rounds * 4, "seconds": elapsed}))

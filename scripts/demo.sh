#!/bin/bash
# The VM demo: sets the machine up, boots Debian's kernel with a loopback NFS server, runs
# workloads in separate cgroups with nasflow tracing them, and shows what nasflow counted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --quiet --bin nasflow
R=target/demo
NASFLOW_VM_RESULTS=$PWD/$R bash tests/vm/run.sh >/dev/null 2>&1 || true
python3 - "$R" <<'PY'
import json, sys
from pathlib import Path
r = Path(sys.argv[1])
last = {}
for line in (r / "v2.jsonl").read_text().splitlines():
    l = json.loads(line)
    if l["kind"] == "io":
        last[(l["cgroup_id"], l["dev"], l["op"])] = l
def who(l):
    w = l["workload"]
    if "k8s.pod.name" in w:
        return f"{w['k8s.namespace.name']}/{w['k8s.pod.name']} (task {w['nasflow.task']})"
    return w.get("container.id", w.get("process.linux.cgroup", l["cgroup"] or "?"))[:44]
print(f"{'workload':<46} {'NAS':<22} {'op':<7} {'ops':>6} {'bytes':>12} {'mean ms':>8}")
for l in sorted(last.values(), key=lambda l: (-l["bytes"], l["cgroup"] or "")):
    mean = 1000 * l["latency"]["sum_s"] / l["latency"]["count"] if l["latency"]["count"] else 0
    nas = f"{l['nas'].get('server.address', '?')}:{l['nas'].get('nfs.export.path', l['dev'])}"
    print(f"{who(l):<46} {nas:<22} {l['op']:<7} {l['ops']:>6} {l['bytes']:>12} {mean:>8.2f}")
print(f"\nfull JSON lines: {r}/v2.jsonl (cgroup v2) and {r}/v1.jsonl (cgroup v1)")
PY

#!/bin/bash
# The VM demo: sets the machine up, boots Debian's kernel with a loopback kernel NFS server,
# runs workloads in pod cgroups (a trainer, a database, a backup job, a stat storm, a job
# hitting errors, a reader behind a slow link) with nasflow tracing them, and prints their
# per-pod NFS traffic as the agent exported it: what a real OTLP collector (rotel) received.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --quiet --bin nasflow
R=target/demo
KERNEL=$(ls /boot/vmlinuz-6.1.*-amd64 | sort -V | tail -n 1)
echo "booting the VM ($KERNEL, TCG emulation: about 4 minutes)..."
# The phases with pods in them; the test suite runs the rest.
NASFLOW_VM_KERNEL=$KERNEL NASFLOW_VM_PHASES=services,v2-start,nfs,v2-ready,v2-io,metadata,errors,netem,v2-stop,collect \
	NASFLOW_VM_RESULTS=$PWD/$R bash tests/vm/run.sh >"$R.log" 2>&1 || true
[ -s "$R/otlp.jsonl" ] || { echo "the VM run produced no OTLP data: see $R.log and $R/guest.log" >&2; exit 1; }
python3 - "$R" <<'PY'
import json, sys
from collections import defaultdict
from pathlib import Path

r = Path(sys.argv[1])
newest = {}
for line in (r / "otlp.jsonl").read_text().splitlines():
    p = json.loads(line)
    if p["resource"].get("nasflow.test.phase") != "v2" or "k8s.pod.name" not in p["attrs"]:
        continue
    key = (p["metric"], json.dumps(p["attrs"], sort_keys=True))
    if key not in newest or p["time"] >= newest[key]["time"]:
        newest[key] = p

pods = defaultdict(lambda: {"read": 0, "write": 0, "ops": defaultdict(int), "errors": defaultdict(int),
                            "rtx": 0, "rtt": [0, 0.0]})
for p in newest.values():
    a = p["attrs"]
    pod = (f"{a['k8s.namespace.name']}/{a['k8s.pod.name']}", a.get("nasflow.task", "-"),
           f"{a.get('server.address', '?')}:{a.get('nfs.export.path', '?')}")
    row = pods[pod]
    if p["metric"] == "nfs.client.io":
        row[a["nfs.io.direction"]] += p["value"]
    elif p["metric"] == "nfs.client.operation.count":
        op = a["nfs.operation.name"]
        row["ops"][op] += p["value"]
        if "error.type" in a:
            row["errors"][f"{op}:{a['error.type']}"] += p["value"]
    elif p["metric"] == "nfs.client.rpc.retransmit.count":
        row["rtx"] += p["value"]
    elif p["metric"] == "nfs.client.rpc.rtt":
        row["rtt"][0] += p["count"]
        row["rtt"][1] += p["sum"]

print(f"{'pod':<38} {'task':<15} {'NAS':<24} {'read B':>10} {'write B':>10} {'RPCs':>6}  top operations / errors")
for (pod, task, nas), row in sorted(pods.items(), key=lambda kv: -sum(kv[1]["ops"].values())):
    top = ", ".join(f"{op} {n}" for op, n in sorted(row["ops"].items(), key=lambda x: -x[1])[:3])
    extra = []
    if row["errors"]:
        extra.append("errors " + ", ".join(f"{k} {v}" for k, v in sorted(row["errors"].items())))
    if row["rtt"][0]:
        extra.append(f"mean rtt {1000 * row['rtt'][1] / row['rtt'][0]:.0f} ms")
    if row["rtx"]:
        extra.append(f"{row['rtx']} retransmits")
    print(f"{pod:<38} {task:<15} {nas:<24} {row['read']:>10} {row['write']:>10} {sum(row['ops'].values()):>6}  {top}")
    if extra:
        print(f"{'':<38} {'':<15} {'':<24} {'':>10} {'':>10} {'':>6}  {'; '.join(extra)}")
print(f"\nAs the collector received it: {r}/otlp.jsonl. The agent's own view: {r}/v2.jsonl.")
PY

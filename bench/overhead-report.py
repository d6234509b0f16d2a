"""Summarises an overhead run: per workload and agent mode, the median of the pair ratios
(IOPS with the agent / IOPS of the run just before without it), their spread, and the
programs' kernel time per I/O as a share of the I/O's own time. Also writes summary.json."""
import json
import statistics
import sys
from collections import defaultdict

r = sys.argv[1]
runs = [json.loads(line) for line in open(f"{r}/runs.jsonl")]
stats = [json.loads(line) for line in open(f"{r}/stats.jsonl")]
order = []
pairs = defaultdict(list)
iops = defaultdict(list)
prev_off = None
for run in runs:
    if run["workload"] not in order:
        order.append(run["workload"])
    iops[(run["workload"], run["mode"])].append(run["iops"])
    if run["mode"] == "off":
        prev_off = run
    elif prev_off and prev_off["workload"] == run["workload"]:
        pairs[(run["workload"], run["mode"])].append(run["iops"] / prev_off["iops"])
modes = []
for (_, m) in pairs:
    if m not in modes:
        modes.append(m)
summary = {"pairs": {}, "stats": {}}
print("| workload | IOPS off (median) | " + " | ".join(f"{m} / off (median, min-max)" for m in modes) + " |")
print("|---|---:|" + "---:|" * len(modes))
for w in order:
    cells = []
    for m in modes:
        rs = pairs.get((w, m), [])
        if not rs:
            cells.append("-")
            continue
        med = statistics.median(rs)
        summary["pairs"][f"{w}/{m}"] = {"median": med, "ratios": rs}
        cells.append(f"{med:.3f} ({min(rs):.3f}-{max(rs):.3f}, n={len(rs)})")
    off = statistics.median(iops[(w, "off")])
    print(f"| {w} | {off:.0f} | " + " | ".join(cells) + " |")
print()
print("| workload | agent | I/Os | mean time per I/O | the agent's programs per I/O | share | of it, server (svc_*) | of it, directories (dir_*) | programs (runs per I/O x us per run) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|")
for s in stats:
    per_io = s["prog_ns"] / s["ios"] if s["ios"] else float("nan")
    share = per_io / s["ns_per_io"]
    server_ns = sum(v["ns"] for n, v in s["programs"].items() if n.removeprefix("noop_").startswith("svc_"))
    server_per_io = server_ns / s["ios"] if s["ios"] else float("nan")
    dir_ns = sum(v["ns"] for n, v in s["programs"].items() if n.removeprefix("noop_").startswith("dir_"))
    dir_per_io = dir_ns / s["ios"] if s["ios"] else float("nan")
    summary["stats"][s["workload"] + ("" if s.get("mode", "default") == "default" else "/" + s["mode"])] = {
        "prog_ns_per_io": per_io, "io_ns": s["ns_per_io"], "share": share,
        "server_ns_per_io": server_per_io, "server_share": server_per_io / s["ns_per_io"],
    }
    progs = ", ".join(f"{n} {v['runs'] / s['ios']:.2f}x{v['ns'] / v['runs'] / 1000:.1f}" for n, v in sorted(s["programs"].items(), key=lambda kv: -kv[1]["ns"]))
    print(f"| {s['workload']} | {s.get('mode', 'default')} | {s['ios']} | {s['ns_per_io'] / 1000:.0f} us | {per_io / 1000:.2f} us | {share * 100:.2f}% "
          f"| {server_per_io / 1000:.2f} us ({server_per_io / s['ns_per_io'] * 100:.2f}%) "
          f"| {dir_per_io / 1000:.2f} us ({dir_per_io / s['ns_per_io'] * 100:.2f}%) | {progs} |")
json.dump(summary, open(f"{r}/summary.json", "w"), indent=1)

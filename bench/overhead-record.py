"""One JSON line per overhead run: workload, mode, round, I/Os, IOPS and mean time per I/O;
with bpftool dumps before and after, also the kernel time the agent's programs spent (the
no-op agent's empty `noop_*` programs in the noop mode: the floor of being attached at all)."""
import json
import sys

workload, mode, round_, out = sys.argv[1:5]
data = json.load(open(out))
if "jobs" in data:
    job = data["jobs"][0]
    side = job["read"] if job["read"]["io_bytes"] else job["write"]
    ios = side["total_ios"]
    iops = side["iops"]
    ns_per_io = side["lat_ns"]["mean"]
    if job["sync"]["total_ios"]:
        # fsync per write: the user's unit is the write and its fsync together.
        ns_per_io += job["sync"]["lat_ns"]["mean"]
else:
    ios = data["ops"]
    iops = ios / data["seconds"]
    ns_per_io = data["seconds"] * 1e9 / ios
rec = {"workload": workload, "mode": mode, "round": round_, "ios": ios, "iops": iops, "ns_per_io": ns_per_io}
if len(sys.argv) > 6:
    def progs(path):
        return {p["id"]: p for p in json.load(open(path))
                if p.get("name", "").startswith("noop_") == (mode == "noop")}
    before, after = progs(sys.argv[5]), progs(sys.argv[6])
    per_prog = {}
    for pid, p in after.items():
        b = before.get(pid, {})
        ns = p.get("run_time_ns", 0) - b.get("run_time_ns", 0)
        cnt = p.get("run_cnt", 0) - b.get("run_cnt", 0)
        if cnt:
            per_prog[p["name"]] = {"runs": cnt, "ns": ns}
    rec["programs"] = per_prog
    rec["prog_ns"] = sum(v["ns"] for v in per_prog.values())
print(json.dumps(rec))

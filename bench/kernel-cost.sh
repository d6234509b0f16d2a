#!/bin/bash
# Kernel cost of nasflow's BPF programs, measured with bpf_stats in the VM against empty
# programs on the same tracepoints in the same run. Prints the table BENCHMARKS.md records.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=${NASFLOW_BENCH_RESULTS:-$ROOT/target/bench-kernel-cost}
KERNEL=${NASFLOW_VM_KERNEL:-$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -n 1)}
(cd "$ROOT" && cargo build --quiet --release --bin nasflow && cargo build --quiet --release -p nasflow-probe --example noop_attach)
rm -rf "$R" && mkdir -p "$R"
timeout 1500 vng -r "$KERNEL" --user root --disable-kvm --memory 2G --rwdir "$R" \
	--exec "$ROOT/bench/kernel-cost-guest.sh $R $ROOT/target/release/nasflow $ROOT/target/release/examples/noop_attach" >"$R/vng.log" 2>&1
[ -e "$R/done" ] || { echo "the VM run failed: see $R/guest.log" >&2; exit 1; }
python3 - "$R/progs.json" <<'PY'
import json, sys
progs = {p["name"]: p for p in json.load(open(sys.argv[1])) if p.get("type") in ("tracepoint", "kprobe")}
pairs = [("nfs_initiate_read", "noop_rd_init", "nfs_initiate_read"), ("nfs_readpage_done", "noop_rd_done", "nfs_readpage_done"),
         ("nfs_initiate_write", "noop_wr_init", "nfs_initiate_write"), ("nfs_writeback_done", "noop_wr_done", "nfs_writeback_done"),
         ("nfs_initiate_commit", "noop_cm_init", "nfs_initiate_commit"), ("nfs_commit_done", "noop_cm_done", "nfs_commit_done"),
         ("nfs_fwrite_ent", "noop_fw_entry", "kprobe nfs_file_write"), ("nfs_fwrite_ret", "noop_fw_exit", "kretprobe nfs_file_write"),
         ("nfs_fread_ent", "noop_fr_entry", "kprobe nfs_file_read"), ("nfs_fread_ret", "noop_fr_exit", "kretprobe nfs_file_read"),
         ("rpc_task_begin", "noop_rpc_begin", "sunrpc:rpc_task_begin"), ("rpc_request", "noop_rpc_req", "sunrpc:rpc_request"),
         ("rpc_task_end", "noop_rpc_end", "sunrpc:rpc_task_end"), ("rpc_stats_lat", "noop_rpc_lat", "sunrpc:rpc_stats_latency"),
         ("xprt_retransmit", "noop_rpc_rtx", "sunrpc:xprt_retransmit"),
         ("hint_getattr", "noop_h_getattr", "nfs_getattr_enter"), ("hint_access", "noop_h_access", "nfs_access_enter"),
         ("hint_lookup", "noop_h_lookup", "nfs_lookup_enter"), ("hint_lookup_rv", "noop_h_lkp_rv", "nfs_lookup_revalidate_enter"),
         ("hint_revalidate", "noop_h_reval", "nfs_revalidate_inode_enter"), ("hint_open", "noop_h_open", "nfs_atomic_open_enter")]
print("| tracepoint | events | nasflow ns/event | no-op ns/event | ratio |")
print("|---|---:|---:|---:|---:|")
for ours, noop, tp in pairs:
    a, b = progs.get(ours, {}), progs.get(noop, {})
    ca, cb = a.get("run_cnt", 0), b.get("run_cnt", 0)
    na = a.get("run_time_ns", 0) / ca if ca else float("nan")
    nb = b.get("run_time_ns", 0) / cb if cb else float("nan")
    print(f"| {tp} | {ca} | {na:.0f} | {nb:.0f} | {na / nb:.2f} |")
PY

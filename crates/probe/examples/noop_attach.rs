//! Attaches the empty baseline programs to nasflow's tracepoints and kprobes and waits for a signal:
//! the "no-op" side of the kernel cost benchmark (BENCHMARKS.md).

use std::{thread, time::Duration};

use aya::{
    programs::{KProbe, TracePoint},
    Ebpf,
};

const PROGRAMS: [(&str, &str, &str); 17] = [
    ("noop_rpc_begin", "sunrpc", "rpc_task_begin"),
    ("noop_rpc_req", "sunrpc", "rpc_request"),
    ("noop_rpc_end", "sunrpc", "rpc_task_end"),
    ("noop_rpc_lat", "sunrpc", "rpc_stats_latency"),
    ("noop_rpc_rtx", "sunrpc", "xprt_retransmit"),
    ("noop_h_getattr", "nfs", "nfs_getattr_enter"),
    ("noop_h_access", "nfs", "nfs_access_enter"),
    ("noop_h_lookup", "nfs", "nfs_lookup_enter"),
    ("noop_h_lkp_rv", "nfs", "nfs_lookup_revalidate_enter"),
    ("noop_h_reval", "nfs", "nfs_revalidate_inode_enter"),
    ("noop_h_open", "nfs", "nfs_atomic_open_enter"),
    ("noop_rd_init", "nfs", "nfs_initiate_read"),
    ("noop_rd_done", "nfs", "nfs_readpage_done"),
    ("noop_wr_init", "nfs", "nfs_initiate_write"),
    ("noop_wr_done", "nfs", "nfs_writeback_done"),
    ("noop_cm_init", "nfs", "nfs_initiate_commit"),
    ("noop_cm_done", "nfs", "nfs_commit_done"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut ebpf = Ebpf::load(nasflow_probe_bpf::noop_object())?;
    for (name, category, event) in PROGRAMS {
        let tp: &mut TracePoint = ebpf.program_mut(name).ok_or(name)?.try_into()?;
        tp.load()?;
        tp.attach(category, event)?;
    }
    for (name, func) in [
        ("noop_fw_entry", "nfs_file_write"),
        ("noop_fw_exit", "nfs_file_write"),
        ("noop_fr_entry", "nfs_file_read"),
        ("noop_fr_exit", "nfs_file_read"),
    ] {
        let kp: &mut KProbe = ebpf.program_mut(name).ok_or(name)?.try_into()?;
        kp.load()?;
        kp.attach(func, 0)?;
    }
    println!("attached");
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

//! Attaches the empty baseline programs to nasflow's tracepoints and kprobes and waits for a signal:
//! the "no-op" side of the kernel cost benchmark (BENCHMARKS.md).

use std::{thread, time::Duration};

use aya::{
    programs::{KProbe, TracePoint},
    Ebpf,
};

const PROGRAMS: [(&str, &str); 6] = [
    ("noop_rd_init", "nfs_initiate_read"),
    ("noop_rd_done", "nfs_readpage_done"),
    ("noop_wr_init", "nfs_initiate_write"),
    ("noop_wr_done", "nfs_writeback_done"),
    ("noop_cm_init", "nfs_initiate_commit"),
    ("noop_cm_done", "nfs_commit_done"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut ebpf = Ebpf::load(nasflow_probe_bpf::noop_object())?;
    for (name, event) in PROGRAMS {
        let tp: &mut TracePoint = ebpf.program_mut(name).ok_or(name)?.try_into()?;
        tp.load()?;
        tp.attach("nfs", event)?;
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

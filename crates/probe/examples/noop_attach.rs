//! Attaches the empty baseline programs to nasflow's tracepoints and kprobes and waits for a signal:
//! the "no-op" side of the kernel cost benchmark (BENCHMARKS.md). The hooks come from the one
//! program table, so the baseline always covers what the probe attaches.

use std::{thread, time::Duration};

use aya::{
    programs::{KProbe, TracePoint},
    Ebpf,
};
use nasflow_probe_bpf::programs::{self, Hook};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut ebpf = Ebpf::load(nasflow_probe_bpf::noop_object())?;
    for p in programs::all() {
        let prog = ebpf.program_mut(p.noop).ok_or(p.noop)?;
        match p.hook {
            Hook::Tracepoint { category, event } => {
                let tp: &mut TracePoint = prog.try_into()?;
                tp.load()?;
                tp.attach(category, event)?;
            }
            Hook::Kprobe(function) | Hook::Kretprobe(function) => {
                let kp: &mut KProbe = prog.try_into()?;
                kp.load()?;
                kp.attach(function, 0)?;
            }
        }
    }
    println!("attached");
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

//! Attaches the empty baseline programs to nasflow's tracepoints and kprobes and waits for a signal:
//! the "no-op" side of the kernel cost benchmark (BENCHMARKS.md). The hooks come from the one
//! program table and the same feature switches, so the baseline covers what the probe
//! attaches: `noop_attach` mirrors the default agent, `noop_attach --app-bytes on --rtt off`
//! an agent run with those flags. The server hooks are attached when nfsd is loaded, as the
//! agent's default `--nfs-server auto` does; `--nfs-server off` leaves them out.

use std::{thread, time::Duration};

use aya::{
    programs::{KProbe, TracePoint},
    Ebpf,
};
use nasflow_probe_bpf::programs::{self, Features, Hook};

/// The agent's feature flags (`--app-bytes`, `--rtt`, `--latency`, `--nfs-server`, each
/// `on|off`; latency attaches no program of its own), and whether the server hooks are wanted.
fn features() -> Result<(Features, bool), String> {
    let mut f = Features::default();
    let mut server = true;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let on = match pair.get(1).map(String::as_str) {
            Some("on") => true,
            Some("off") => false,
            _ => {
                return Err(format!(
                    "usage: noop_attach [--app-bytes on|off] [--rtt on|off] [--latency on|off] [--nfs-server on|off], got {args:?}"
                ))
            }
        };
        match pair[0].as_str() {
            "--app-bytes" => f.app_bytes = on,
            "--rtt" => f.rtt = on,
            "--latency" => f.latency = on,
            "--nfs-server" => server = on,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok((f, server))
}

fn attach(ebpf: &mut Ebpf, p: &programs::Program) -> Result<(), Box<dyn std::error::Error>> {
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
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (features, server) = features()?;
    let mut ebpf = Ebpf::load(nasflow_probe_bpf::noop_object())?;
    for p in programs::all().filter(|p| features.wants(p)) {
        attach(&mut ebpf, p)?;
    }
    let mut server_hooks = 0;
    for p in programs::SERVER.iter().filter(|_| server) {
        // Absent until nfsd is loaded, as for the agent.
        if attach(&mut ebpf, p).is_ok() {
            server_hooks += 1;
        }
    }
    println!("attached ({server_hooks} server hooks)");
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

//! One attachment of the programs to a loaded nfs module: owned aya links that detach when
//! dropped, so detaching is dropping and nothing is looked up by name again.

use aya::{
    programs::{kprobe::KProbeLink, trace_point::TracePointLink, KProbe, TracePoint},
    Ebpf,
};
use nasflow_probe_bpf::programs::{Hook, Program};

use crate::{ensure_loaded, prog_err, program, ProbeError};

/// A link aya hands over: dropping it detaches the program.
enum Link {
    /// A tracepoint's perf link.
    #[allow(dead_code)] // held for its Drop
    Tracepoint(TracePointLink),
    /// A kprobe's or kretprobe's link.
    #[allow(dead_code)] // held for its Drop
    Kprobe(KProbeLink),
}

/// Which load of the nfs module this is: the inode of `/sys/module/nfs` changes with every
/// load; `None` when nfs is built into the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModuleInstance(pub(crate) Option<u64>);

/// The links of one attachment, by program.
pub(crate) struct Attachment {
    links: Vec<(&'static Program, Link)>,
    /// Optional programs that could not be loaded or attached, with the reason.
    pub(crate) failed: Vec<(&'static str, String)>,
    /// The nfs module instance attached to.
    pub(crate) module: ModuleInstance,
}

impl Attachment {
    pub(crate) fn new(module: ModuleInstance) -> Self {
        Self { links: Vec::new(), failed: Vec::new(), module }
    }

    /// Loads `p` if needed and attaches it; the link is kept until the attachment is dropped.
    pub(crate) fn attach(&mut self, ebpf: &mut Ebpf, p: &'static Program) -> Result<(), ProbeError> {
        ensure_loaded(ebpf, p)?;
        let link = match p.hook {
            Hook::Tracepoint { category, event } => {
                let tp: &mut TracePoint = program(ebpf, p.name)?;
                let id = tp.attach(category, event).map_err(|e| prog_err(p.name, e))?;
                Link::Tracepoint(tp.take_link(id).map_err(|e| prog_err(p.name, e))?)
            }
            Hook::Kprobe(function) | Hook::Kretprobe(function) => {
                let kp: &mut KProbe = program(ebpf, p.name)?;
                let id = kp.attach(function, 0).map_err(|e| prog_err(p.name, e))?;
                Link::Kprobe(kp.take_link(id).map_err(|e| prog_err(p.name, e))?)
            }
        };
        self.links.push((p, link));
        Ok(())
    }

    /// Whether every named program is attached.
    pub(crate) fn has_all(&self, names: &[&str]) -> bool {
        names.iter().all(|n| self.has(n))
    }

    /// Whether the named program is attached.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.links.iter().any(|(p, _)| p.name == name)
    }

    /// Attached programs.
    pub(crate) fn attached(&self) -> usize {
        self.links.len()
    }

    /// Attached programs among `of`.
    pub(crate) fn count(&self, of: &[Program]) -> usize {
        self.links.iter().filter(|(p, _)| of.iter().any(|o| o.name == p.name)).count()
    }
}

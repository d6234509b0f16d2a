//! The one table of nasflow's BPF programs: each program's name in the object, its no-op twin
//! (the kernel cost baseline), where it attaches and what it is for. Loading, attaching,
//! `nasflow check`, the benchmarks and the tracefs layouts all read it; a test checks it
//! against the sections of both compiled objects.

/// Where a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// A classic tracepoint `category:event` (its fields are read through tracefs layouts).
    Tracepoint {
        /// `nfs` or `sunrpc`.
        category: &'static str,
        /// The event.
        event: &'static str,
    },
    /// A kprobe at a function's entry.
    Kprobe(&'static str),
    /// A kretprobe at a function's return.
    Kretprobe(&'static str),
}

impl Program {
    /// The tracefs category of a tracepoint program (`nfs`, `sunrpc`); `""` for kprobes.
    #[must_use]
    pub fn hook_category(&self) -> &'static str {
        match self.hook {
            Hook::Tracepoint { category, .. } => category,
            Hook::Kprobe(_) | Hook::Kretprobe(_) => "",
        }
    }
}

impl Hook {
    /// The ELF section the C source puts the program in (`SEC(...)`).
    #[must_use]
    pub fn section(&self) -> String {
        match self {
            Self::Tracepoint { category, event } => format!("tracepoint/{category}/{event}"),
            Self::Kprobe(f) => format!("kprobe/{f}"),
            Self::Kretprobe(f) => format!("kretprobe/{f}"),
        }
    }

    /// The event of a tracepoint, `None` for kprobes.
    #[must_use]
    pub fn event(&self) -> Option<&'static str> {
        match self {
            Self::Tracepoint { event, .. } => Some(event),
            _ => None,
        }
    }
}

/// One BPF program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// Its name in `nasflow.bpf.o`.
    pub name: &'static str,
    /// The empty program on the same hook in `noop.bpf.o`.
    pub noop: &'static str,
    /// Where it attaches.
    pub hook: Hook,
}

const fn nfs(name: &'static str, noop: &'static str, event: &'static str) -> Program {
    Program { name, noop, hook: Hook::Tracepoint { category: "nfs", event } }
}

const fn sunrpc(name: &'static str, noop: &'static str, event: &'static str) -> Program {
    Program { name, noop, hook: Hook::Tracepoint { category: "sunrpc", event } }
}

/// The READ/WRITE/COMMIT data path: bytes, latency and attribution. Required; in the order of
/// the fields of `struct nasflow_layout`.
pub const DATA_PATH: [Program; 6] = [
    nfs("nfs_initiate_read", "noop_rd_init", "nfs_initiate_read"),
    nfs("nfs_readpage_done", "noop_rd_done", "nfs_readpage_done"),
    nfs("nfs_initiate_write", "noop_wr_init", "nfs_initiate_write"),
    nfs("nfs_writeback_done", "noop_wr_done", "nfs_writeback_done"),
    nfs("nfs_initiate_commit", "noop_cm_init", "nfs_initiate_commit"),
    nfs("nfs_commit_done", "noop_cm_done", "nfs_commit_done"),
];

/// `nfs_file_write`/`nfs_file_read` entry and return: who dirtied what (writeback
/// attribution, the `nfs_file_write` entry alone) and application bytes (the rest). Optional:
/// without the entry probe buffered writes go to the flushing context.
pub const FILE_CALLS: [Program; 4] = [
    Program { name: "nfs_fwrite_ent", noop: "noop_fw_entry", hook: Hook::Kprobe("nfs_file_write") },
    Program { name: "nfs_fwrite_ret", noop: "noop_fw_exit", hook: Hook::Kretprobe("nfs_file_write") },
    Program { name: "nfs_fread_ent", noop: "noop_fr_entry", hook: Hook::Kprobe("nfs_file_read") },
    Program { name: "nfs_fread_ret", noop: "noop_fr_exit", hook: Hook::Kretprobe("nfs_file_read") },
];

/// The program that makes writeback attribution work: it charges a buffered write to its
/// writer at entry, so no return probe runs on the page-cache path by default.
pub const WRITE_ATTRIBUTION: [&str; 1] = [FILE_CALLS[0].name];

/// sunrpc: every NFS RPC with its procedure, errno, rtt and retransmissions; in the order of
/// `struct nasflow_rpc_layout`. The first four are needed together; `xprt_retransmit`
/// (kernels from 5.12) is optional.
pub const RPC: [Program; 5] = [
    sunrpc("rpc_task_begin", "noop_rpc_begin", "rpc_task_begin"),
    sunrpc("rpc_request", "noop_rpc_req", "rpc_request"),
    sunrpc("rpc_task_end", "noop_rpc_end", "rpc_task_end"),
    sunrpc("rpc_stats_lat", "noop_rpc_lat", "rpc_stats_latency"),
    sunrpc("xprt_retransmit", "noop_rpc_rtx", "xprt_retransmit"),
];

/// The RPC program whose attachment means RPCs are counted.
pub const RPC_END: &str = RPC[2].name;
/// The program that gives each RPC its round trip and xid (`sunrpc:rpc_stats_latency`).
pub const RPC_STATS: &str = RPC[3].name;

/// Which of [`RPC`] a kernel may lack without losing the others.
pub const RPC_OPTIONAL: [&str; 1] = [RPC[4].name];

/// nfs events that tell which mount a thread works on (hints), in `hint_dev` order. Each is
/// optional.
pub const HINTS: [Program; crate::HINT_EVENT_COUNT] = [
    nfs("hint_getattr", "noop_h_getattr", "nfs_getattr_enter"),
    nfs("hint_access", "noop_h_access", "nfs_access_enter"),
    nfs("hint_lookup", "noop_h_lookup", "nfs_lookup_enter"),
    nfs("hint_lookup_rv", "noop_h_lkp_rv", "nfs_lookup_revalidate_enter"),
    nfs("hint_revalidate", "noop_h_reval", "nfs_revalidate_inode_enter"),
    nfs("hint_open", "noop_h_open", "nfs_atomic_open_enter"),
];

const fn nfsd(name: &'static str, noop: &'static str, event: &'static str) -> Program {
    Program { name, noop, hook: Hook::Tracepoint { category: "nfsd", event } }
}

/// The NFS server (`nfsd.bpf.o`), attached while the nfsd module is loaded; in the order the
/// events of a request pass. All are needed together.
pub const SERVER: [Program; 6] = [
    sunrpc("svc_process", "noop_svc_proc", "svc_process"),
    Program { name: "svc_fh_verify", noop: "noop_svc_fh", hook: Hook::Kprobe("fh_verify") },
    nfsd("svc_read_done", "noop_svc_read", "nfsd_read_io_done"),
    nfsd("svc_write_done", "noop_svc_write", "nfsd_write_io_done"),
    nfsd("svc_op_done", "noop_svc_op", "nfsd_compound_status"),
    sunrpc("svc_sendto", "noop_svc_send", "svc_xdr_sendto"),
];

const fn kprobe(name: &'static str, noop: &'static str, function: &'static str) -> Program {
    Program { name, noop, hook: Hook::Kprobe(function) }
}

/// Directories (`--directories`): functions that hold the file, or the parent directory, of
/// the operation they are about to send; each finds its watched directory. The data pair
/// first (READ, WRITE), then the metadata ones. Attached only when directories are watched.
pub const DIRECTORIES: [Program; 11] = [
    kprobe("dir_read", "noop_dir_read", "nfs_initiate_read"),
    kprobe("dir_write", "noop_dir_write", "nfs_initiate_write"),
    kprobe("dir_getattr", "noop_dir_getattr", "__nfs_revalidate_inode"),
    kprobe("dir_lookup", "noop_dir_lookup", "nfs_lookup"),
    kprobe("dir_open", "noop_dir_open", "nfs_atomic_open"),
    kprobe("dir_docreate", "noop_dir_create2", "nfs_do_create"),
    kprobe("dir_unlink", "noop_dir_unlink", "nfs_unlink"),
    kprobe("dir_rmdir", "noop_dir_rmdir", "nfs_rmdir"),
    kprobe("dir_create", "noop_dir_create", "nfs_create"),
    kprobe("dir_mkdir", "noop_dir_mkdir", "nfs_mkdir"),
    kprobe("dir_setattr", "noop_dir_setattr", "nfs_setattr"),
];

/// Which of [`DIRECTORIES`] hook functions only some kernels have (`nfs_do_create`, the CREATE of
/// NFSv3 opens since 6.0); where the function is missing, the program is left out without a warning.
pub const DIRECTORIES_OPTIONAL: [&str; 1] = ["dir_docreate"];

/// The optional signals, each of which costs kernel work on every event it watches. A signal
/// switched off attaches no program of its own and its work is skipped in shared ones.
#[allow(clippy::struct_excessive_bools)] // independent switches, each its own flag
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Bytes applications read and wrote (`APP_READ`/`APP_WRITE`), page-cache hits included:
    /// a kprobe and a kretprobe on every `read()` of an NFS file and a kretprobe on every
    /// `write()`. Off by default.
    pub app_bytes: bool,
    /// RPC round-trip times (`rpc_stats_latency`).
    pub rtt: bool,
    /// Operation latency histograms.
    pub latency: bool,
    /// Watched directories: the [`DIRECTORIES`] kprobes and a walk up the file's directories
    /// per operation. Off unless directories are configured.
    pub directories: bool,
    /// Which data operations are counted (`--operations`); a data operation left out
    /// attaches none of its programs.
    pub reads: bool,
    /// WRITE (with writeback attribution).
    pub writes: bool,
    /// COMMIT.
    pub commits: bool,
    /// Whether any other procedure is counted: without one, the hint events are not attached.
    pub metadata: bool,
}

impl Default for Features {
    fn default() -> Self {
        Self {
            app_bytes: false,
            rtt: true,
            latency: true,
            directories: false,
            reads: true,
            writes: true,
            commits: true,
            metadata: true,
        }
    }
}

/// The programs only [`Features::app_bytes`] needs: `nfs_file_read` entry and return.
pub const APP_READ: [&str; 2] = [FILE_CALLS[2].name, FILE_CALLS[3].name];

/// The program only [`Features::app_bytes`] adds to writes: `nfs_file_write`'s return.
pub const APP_WRITE: &str = FILE_CALLS[1].name;

/// The program only [`Features::rtt`] needs.
pub const RTT: &str = RPC[3].name;

impl Features {
    /// Whether `p` is attached with these features.
    #[must_use]
    pub fn wants(&self, p: &Program) -> bool {
        let is = |group: &[Program], i: usize| group.get(i).is_some_and(|q| q.name == p.name);
        if APP_READ.contains(&p.name) {
            self.app_bytes && self.reads
        } else if p.name == APP_WRITE {
            self.app_bytes && self.writes
        } else if p.name == RTT {
            self.rtt
        } else if is(&DATA_PATH, 0) || is(&DATA_PATH, 1) {
            self.reads
        } else if is(&DATA_PATH, 2) || is(&DATA_PATH, 3) || WRITE_ATTRIBUTION.contains(&p.name) {
            self.writes
        } else if is(&DATA_PATH, 4) || is(&DATA_PATH, 5) {
            self.commits
        } else if HINTS.iter().any(|h| h.name == p.name) {
            self.metadata
        } else if is(&DIRECTORIES, 0) {
            self.directories && self.reads
        } else if is(&DIRECTORIES, 1) {
            self.directories && self.writes
        } else if DIRECTORIES.iter().any(|d| d.name == p.name) {
            self.directories && self.metadata
        } else {
            true
        }
    }
}

/// Every program, data path first.
pub fn all() -> impl Iterator<Item = &'static Program> {
    DATA_PATH.iter().chain(&FILE_CALLS).chain(&RPC).chain(&HINTS).chain(&DIRECTORIES)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_features_leave_the_page_cache_path_alone() {
        let f = Features::default();
        let dirs: Vec<&str> = DIRECTORIES.iter().map(|p| p.name).collect();
        let off: Vec<&str> = all().filter(|p| !f.wants(p)).map(|p| p.name).collect();
        assert_eq!(off, [&["nfs_fwrite_ret", "nfs_fread_ent", "nfs_fread_ret"][..], &dirs].concat());
        let lean = Features { app_bytes: false, rtt: false, latency: false, ..f };
        let off: Vec<&str> = all().filter(|p| !lean.wants(p)).map(|p| p.name).collect();
        assert_eq!(off, [&["nfs_fwrite_ret", "nfs_fread_ent", "nfs_fread_ret", "rpc_stats_lat"][..], &dirs].concat());
        let full = Features { app_bytes: true, rtt: true, latency: true, directories: true, ..f };
        assert!(all().all(|p| full.wants(p)));
    }

    #[test]
    fn an_operation_left_out_attaches_none_of_its_programs() {
        let only_writes = Features {
            directories: true,
            reads: false,
            commits: false,
            metadata: false,
            app_bytes: true,
            ..Features::default()
        };
        let on: Vec<&str> = all().filter(|p| only_writes.wants(p)).map(|p| p.name).collect();
        assert_eq!(
            on,
            [
                "nfs_initiate_write",
                "nfs_writeback_done",
                "nfs_fwrite_ent",
                "nfs_fwrite_ret",
                "rpc_task_begin",
                "rpc_request",
                "rpc_task_end",
                "rpc_stats_lat",
                "xprt_retransmit",
                "dir_write",
            ]
        );
    }

    use std::collections::BTreeMap;

    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

    use super::*;

    /// (program name, section) of every function symbol in a BPF object.
    fn programs_of(obj: &[u8]) -> BTreeMap<String, String> {
        let file = object::File::parse(obj).expect("a BPF ELF");
        file.symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.is_global())
            .filter_map(|s| {
                let section = file.section_by_index(s.section_index()?).ok()?;
                Some((s.name().ok()?.to_owned(), section.name().ok()?.to_owned()))
            })
            .collect()
    }

    #[test]
    fn the_table_is_what_the_objects_hold() {
        let probe = programs_of(crate::probe_object());
        let compat = programs_of(crate::compat_object());
        let noop = programs_of(crate::noop_object());
        assert_eq!(probe, compat, "the compat build has the same programs in the same sections");
        for p in all() {
            assert_eq!(probe.get(p.name), Some(&p.hook.section()), "{} in nasflow.bpf.o", p.name);
            assert_eq!(noop.get(p.noop), Some(&p.hook.section()), "{} in noop.bpf.o", p.noop);
        }
        let listed: Vec<&str> = all().map(|p| p.name).collect();
        let unlisted: Vec<&String> = probe.keys().filter(|n| !listed.contains(&n.as_str())).collect();
        assert!(unlisted.is_empty(), "programs missing from the table: {unlisted:?}");
        let server = programs_of(crate::server_object());
        for p in &SERVER {
            assert_eq!(server.get(p.name), Some(&p.hook.section()), "{} in nfsd.bpf.o", p.name);
            assert_eq!(noop.get(p.noop), Some(&p.hook.section()), "{} in noop.bpf.o", p.noop);
        }
        assert_eq!(server.len(), SERVER.len(), "every server program is in the table");
        assert_eq!(noop.len(), listed.len() + SERVER.len(), "one no-op per program");
    }

    /// Atomic instructions that fetch (`BPF_FETCH`, `BPF_XCHG`, `BPF_CMPXCHG`): kernels before
    /// 5.12 refuse them (the verifier says "`BPF_STX` uses reserved fields").
    fn fetching_atomics(obj: &[u8]) -> usize {
        const BPF_STX_ATOMIC: [u8; 2] = [0xc3, 0xdb]; // BPF_STX | BPF_ATOMIC | BPF_W or BPF_DW
        const BPF_FETCH: i32 = 0x01;
        let file = object::File::parse(obj).expect("a BPF ELF");
        file.sections()
            .filter(|s| {
                s.name().is_ok_and(|n| {
                    n.starts_with("tracepoint/") || n.starts_with("kprobe/") || n.starts_with("kretprobe/")
                })
            })
            .flat_map(|s| s.data().expect("code").chunks_exact(8).map(<[u8]>::to_vec).collect::<Vec<_>>())
            .filter(|insn| {
                let imm = i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
                BPF_STX_ATOMIC.contains(&insn[0]) && imm & BPF_FETCH != 0
            })
            .count()
    }

    #[test]
    fn the_compat_build_has_no_fetching_atomics() {
        assert!(fetching_atomics(crate::probe_object()) > 0, "the full build uses them (the check can see them)");
        assert_eq!(fetching_atomics(crate::compat_object()), 0, "kernels before 5.12 refuse fetching atomics");
    }
}

//! Owns the kernel side of nasflow: loads the BPF programs, attaches them when the NFS client
//! module is there (late, and again after a reload), and reads the kernel maps into plain
//! cumulative [`Snapshot`]s. No names, no network: cgroup ids and device numbers only.

/// The one table of BPF programs, where they attach and what they are for.
pub use nasflow_probe_bpf::programs;

mod attach;
pub mod preflight;
pub mod server;
pub mod snapshot;
mod sys;
pub mod tracefs;

use std::{
    collections::{HashMap, HashSet},
    io,
    path::PathBuf,
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, MapError, RingBuf},
    programs::{KProbe, ProgramError, TracePoint},
    Ebpf, EbpfLoader,
};
use nasflow_probe_bpf::{globals, known_proc_id, maps, programs::Hook, Layout, RpcLayout, FETCH_ATOMICS_SINCE};

pub use nasflow_probe_bpf::{
    latency_slot_upper_bound_s, Op as Operation, ProcName, HIST_SLOTS as LATENCY_SLOTS, KNOWN_PROCS, MAX_DIRS,
    PRELOADED_PROCS,
};
pub use snapshot::{dev_string, Completed, Histogram, Inflight, IoRow, ProbeHealth, RpcFacts, SlowOp, Snapshot};

use crate::{
    attach::{Attachment, ModuleInstance},
    tracefs::Tracefs,
};

pub use preflight::VMLINUX_BTF;

/// Why the probe cannot start or read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No kernel BTF: CO-RE relocations would be silently skipped by aya.
    #[error("{path} is missing: this kernel has no BTF. nasflow needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since 5.8)")]
    NoBtf {
        /// The path looked at.
        path: PathBuf,
    },
    /// tracefs is neither mounted nor mountable.
    #[error("tracefs is not mounted and mounting it at {target} failed: {source} (mount the host's tracefs there, or grant CAP_SYS_ADMIN)")]
    Tracefs {
        /// Where the mount was tried.
        target: PathBuf,
        /// The mount error.
        source: io::Error,
    },
    /// A tracepoint lacks a field the probe needs.
    #[error("tracepoint {event} has no field `{field}`: this kernel's NFS tracepoints are not supported")]
    MissingField {
        /// The tracepoint.
        event: String,
        /// The field (or alternatives) looked for.
        field: String,
    },
    /// A tracepoint field has a size or place the probe cannot read.
    #[error("tracepoint {event} field `{field}` is {size} bytes at offset {offset}: not a layout nasflow can read")]
    UnsupportedField {
        /// The tracepoint.
        event: String,
        /// The field.
        field: String,
        /// Its offset.
        offset: u16,
        /// Its size.
        size: u16,
    },
    /// A format file could not be parsed.
    #[error("tracepoint {event}: {detail}")]
    BadFormat {
        /// The tracepoint.
        event: String,
        /// What was wrong.
        detail: String,
    },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The BPF object could not be loaded (verifier, permissions, maps).
    #[error(
        "loading the BPF object: {0} (nasflow needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN on kernels before 5.8)"
    )]
    Load(#[source] Box<aya::EbpfError>),
    /// A program could not be loaded or attached.
    #[error("program {name}: {source}")]
    Program {
        /// The program.
        name: String,
        /// The error.
        source: Box<ProgramError>,
    },
    /// A map could not be opened or read.
    #[error("map {name}: {source}")]
    Map {
        /// The map.
        name: &'static str,
        /// The error.
        source: Box<MapError>,
    },
}

/// Records of RPCs that ended are kept this long for their round-trip time (which follows
/// the end within microseconds), then swept.
const SETTLED_RPC_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Slow RPCs waiting for `rpc_stats_latency` the kernel map holds (they wait microseconds;
/// a full map reports at once, without the xid).
const SLOW_PENDING_ENTRIES: u32 = 1024;
/// A slow RPC still waiting this long after it ended never gets `rpc_stats_latency`: user
/// space reports it.
const SLOW_PENDING_STALE_NS: u64 = 1_000_000_000;

/// What the verifier said of each program: `Err` holds its reason.
pub type Verified = Vec<(&'static str, Result<(), String>)>;

/// How the probe identifies cgroups; decided by the caller from the host's hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupIdentity {
    /// cgroup v1 (hybrid or legacy): take the memory controller's cgroup from the task.
    pub v1: bool,
    /// Id (inode number) of the hierarchy's root cgroup.
    pub root_id: u64,
}

/// Map sizes and other knobs set before load.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// How cgroups are identified.
    pub cgroup: CgroupIdentity,
    /// Max (cgroup, dev, op, errno) keys in the counter and histogram maps.
    pub max_series: u32,
    /// Max RPCs in flight tracked at once.
    pub max_inflight: u32,
    /// Max files whose dirtying cgroups are remembered.
    pub max_dirty_files: u32,
    /// Where the kernel BTF is expected.
    pub btf_path: PathBuf,
    /// The host's /proc, to tell which threads still exist.
    pub proc_root: PathBuf,
    /// Optional signals; what is off attaches nothing.
    pub features: programs::Features,
    /// `--operations`: the procedure names counted (as the kernel spells them); `None` for
    /// all. Names outside it, and names nasflow does not know, are not counted.
    pub operations: Option<std::collections::BTreeSet<String>>,
    /// Operations reported one by one when they take this long (`None`: none are).
    pub slow_ops: Option<SlowOpOptions>,
}

/// `--slow-op-threshold` and `--max-slow-ops-per-second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowOpOptions {
    /// Operations at least this long are reported.
    pub threshold: Duration,
    /// Reports per second at most (the kernel counts the rest in `slow_ops_over_limit`).
    pub per_second: u32,
}

impl ProbeOptions {
    /// Histogram keys: each counter key may have an operation latency and a round-trip time
    /// histogram, so up to twice the series; one (the least a map holds) when both are off.
    #[must_use]
    pub fn hist_entries(&self) -> u32 {
        let kinds = u32::from(self.features.latency) + u32::from(self.features.rtt);
        self.max_series.saturating_mul(kinds).max(1)
    }

    /// Defaults sized for a busy node (see BENCHMARKS.md for their memory cost).
    #[must_use]
    pub fn new(cgroup: CgroupIdentity) -> Self {
        Self {
            cgroup,
            max_series: 10_240,
            max_inflight: 16_384,
            max_dirty_files: 16_384,
            btf_path: PathBuf::from(VMLINUX_BTF),
            proc_root: PathBuf::from("/proc"),
            features: programs::Features::default(),
            operations: None,
            slow_ops: None,
        }
    }
}

/// What [`Probe::poll`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEvent {
    /// Nothing changed.
    Unchanged,
    /// The nfs module appeared (or came back) and the programs are attached now.
    Attached,
    /// The nfs module went away; waiting for it.
    Detached,
}

/// The loaded probe and its attach state.
pub struct Probe {
    opts: ProbeOptions,
    tracefs: Tracefs,
    /// Declared before `ebpf`: links are dropped (detached) before the programs.
    attachment: Option<Attachment>,
    ebpf: Option<Ebpf>,
    layout: Option<Layout>,
    /// The RPC programs' layout; `None` when sunrpc's events cannot be used (the data path
    /// still works).
    rpc_layout: Option<RpcLayout>,
    /// The module instance a load or attach failed for: not retried until it changes.
    failed_for: Option<ModuleInstance>,
    /// How keys of removed cgroups are taken out of the maps.
    deleter: snapshot::Deleter,
    /// Loads of the BPF object so far.
    load_generation: u64,
    /// Watched directories as the kernel keys them, reapplied to every load.
    watched: Vec<WatchedDir>,
    /// The slow-op ring buffer of the current load (taken out of `ebpf` to be read).
    slow_ring: Mutex<Option<RingBuf<MapData>>>,
    /// Slow RPCs the sweep took from the kernel's waiting map, for the next snapshot.
    slow_swept: Mutex<Vec<nasflow_probe_bpf::SlowOp>>,
    /// Slow operations a reload took from the old maps (named by their table), for the next
    /// snapshot.
    slow_carried: Mutex<Vec<SlowOp>>,
}

/// One watched directory as the kernel sees it: an NFS directory inode and the id its
/// operations carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchedDir {
    /// NFS super block device (`MAJOR << 20 | MINOR`).
    pub dev: u32,
    /// The directory's inode number (the NFS fileid).
    pub ino: u64,
    /// 1-based place of the configured directory.
    pub id: u16,
}

/// The most watched directory inodes the kernel map holds (each configured directory once
/// per mount it is reached through).
pub const MAX_WATCHED_INODES: usize = 4096;
#[allow(clippy::cast_possible_truncation)] // 4096
const MAX_WATCHED_INODES_U32: u32 = MAX_WATCHED_INODES as u32;

/// The first kernel whose `nfs_create`/`nfs_mkdir` take a user namespace (later an idmap)
/// before the directory.
const IDMAPPED_SINCE: (u32, u32) = (5, 12);

fn nfs_module_instance() -> ModuleInstance {
    ModuleInstance(preflight::nfs_module_inode())
}

impl Probe {
    /// Checks the kernel's prerequisites and prepares the probe. Nothing is loaded until the
    /// nfs module's tracepoints exist: call [`Probe::poll`] (every second or so).
    pub fn new(opts: ProbeOptions) -> Result<Self, ProbeError> {
        preflight::btf(&opts.btf_path)?;
        let tracefs = Tracefs::find_or_mount()?;
        raise_memlock();
        Ok(Self {
            opts,
            tracefs,
            ebpf: None,
            layout: None,
            rpc_layout: None,
            attachment: None,
            failed_for: None,
            deleter: snapshot::Deleter::default(),
            load_generation: 0,
            watched: Vec::new(),
            slow_ring: Mutex::new(None),
            slow_swept: Mutex::new(Vec::new()),
            slow_carried: Mutex::new(Vec::new()),
        })
    }

    /// Attaches when the nfs module is present, re-attaches after it was reloaded, and notes
    /// when it went away. Cheap when nothing changed (two stat calls).
    pub fn poll(&mut self) -> Result<AttachEvent, ProbeError> {
        let present = self.tracefs.has_event("nfs", "nfs_initiate_read");
        let module = nfs_module_instance();
        match (&self.attachment, present) {
            (Some(a), true) if a.module == module => Ok(AttachEvent::Unchanged),
            // The module registers its tracepoints before it appears in sysfs: a module
            // identity showing up after attaching is the same module, not a reload.
            (Some(a), true) if a.module.0.is_none() => {
                if let Some(att) = self.attachment.as_mut() {
                    att.module = module;
                }
                Ok(AttachEvent::Unchanged)
            }
            (Some(_), true) => {
                tracing::info!("nfs module was reloaded: re-attaching");
                self.detach();
                self.attach(module)?;
                Ok(if self.attachment.is_some() { AttachEvent::Attached } else { AttachEvent::Detached })
            }
            (Some(_), false) => {
                self.detach();
                Ok(AttachEvent::Detached)
            }
            (None, true) if self.failed_for == Some(module) => Ok(AttachEvent::Unchanged),
            (None, true) => match self.attach(module) {
                Ok(true) => {
                    self.failed_for = None;
                    Ok(AttachEvent::Attached)
                }
                Ok(false) => Ok(AttachEvent::Unchanged),
                Err(e) => {
                    // Verifier or layout errors do not heal by retrying: wait for another
                    // module instance (or a restart) instead of reloading every second.
                    self.failed_for = Some(module);
                    Err(e)
                }
            },
            (None, false) => Ok(AttachEvent::Unchanged),
        }
    }

    fn load(&mut self, layout: Layout, rpc_layout: Option<RpcLayout>) -> Result<(), ProbeError> {
        let o = &self.opts;
        let rpc = rpc_layout.unwrap_or_default();
        let v1 = u8::from(o.cgroup.v1);
        let root = o.cgroup.root_id;
        let o_direct = u32::try_from(libc::O_DIRECT).unwrap_or(0o40000);
        let o_append = u32::try_from(libc::O_APPEND).unwrap_or(0o2000);
        let first_dynamic = known_proc_id(KNOWN_PROCS.len());
        let want_latency = u8::from(o.features.latency);
        let want_app_bytes = u8::from(o.features.app_bytes);
        let want_dirs = u8::from(o.features.directories);
        let count_new_procs = u8::from(o.operations.is_none());
        // At least 1 ns: 0 is "off" to the kernel.
        let slow_op_ns: u64 =
            o.slow_ops.map_or(0, |s| u64::try_from(s.threshold.as_nanos()).unwrap_or(u64::MAX).max(1));
        let slow_per_sec: u64 = o.slow_ops.map_or(0, |s| u64::from(s.per_second));
        // Slow RPCs wait for rpc_stats_latency's xid and round trip only where it is attached.
        let slow_waits_for_rpc = u8::from(slow_op_ns > 0 && o.features.rtt);
        let page = sys::page_size();
        let version = preflight::kernel_version();
        let create_dentry_arg: u8 = if version.is_some_and(|v| v < IDMAPPED_SINCE) { 2 } else { 3 };
        let dir_slot_ops: [u16; nasflow_probe_bpf::DIR_META_SLOTS] = nasflow_probe_bpf::DIR_SLOT_NAMES
            .map(|n| KNOWN_PROCS.iter().position(|k| *k == n).map_or(0, known_proc_id));
        let (object, compat) = match version {
            Some(v) if v < FETCH_ATOMICS_SINCE => (nasflow_probe_bpf::compat_object(), true),
            _ => (nasflow_probe_bpf::probe_object(), false),
        };
        if compat {
            tracing::info!(
                "kernel before 5.12: loading the build without fetching atomics (procedure names nasflow does not know count as UNNAMED; two cgroups first dirtying one file at the same instant may share a writeback slot)"
            );
        }
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::LAYOUT, &layout, true)
            .override_global(globals::FIRST_DYNAMIC_PROC, &first_dynamic, true)
            .override_global(globals::CGROUP_V1, &v1, true)
            .override_global(globals::ROOT_CGROUP, &root, true)
            .override_global(globals::O_DIRECT_FLAG, &o_direct, true)
            .override_global(globals::O_APPEND_FLAG, &o_append, true)
            .override_global(globals::RPC_LAYOUT, &rpc, true)
            .override_global(globals::WANT_LATENCY, &want_latency, true)
            .override_global(globals::WANT_APP_BYTES, &want_app_bytes, true)
            .override_global(globals::WANT_DIRS, &want_dirs, true)
            .override_global(globals::COUNT_NEW_PROCS, &count_new_procs, true)
            .override_global(globals::CREATE_DENTRY_ARG, &create_dentry_arg, true)
            .override_global(globals::DIR_SLOT_OPS, &dir_slot_ops, true)
            .override_global(globals::SLOW_OP_NS, &slow_op_ns, true)
            .override_global(globals::SLOW_OPS_PER_SEC, &slow_per_sec, true)
            .override_global(globals::SLOW_WAITS_FOR_RPC, &slow_waits_for_rpc, true)
            .map_max_entries(maps::SLOW_PENDING, if slow_waits_for_rpc > 0 { SLOW_PENDING_ENTRIES } else { 1 })
            // The ring takes its room only when slow operations are reported (else one page,
            // the least a ring buffer holds).
            .map_max_entries(
                maps::SLOW_OPS,
                if slow_op_ns > 0 { nasflow_probe_bpf::SLOW_RING_BYTES.max(page) } else { page },
            )
            .map_max_entries(maps::RPC_TASKS, o.max_inflight)
            .map_max_entries(maps::IO_COUNTERS, o.max_series)
            .map_max_entries(maps::IO_HIST, o.hist_entries())
            .map_max_entries(maps::INFLIGHT, o.max_inflight)
            .map_max_entries(maps::DIRTY, o.max_dirty_files)
            // The directory maps take room only when directories are watched.
            .map_max_entries(maps::WATCHED_DIRS, if o.features.directories { MAX_WATCHED_INODES_U32 } else { 1 })
            .map_max_entries(maps::WATCHED_DEVS, if o.features.directories { 1024 } else { 1 })
            .map_max_entries(maps::THREAD_DIR_HINTS, if o.features.directories { 8192 } else { 1 })
            .load(object)
            .map_err(|e| ProbeError::Load(Box::new(e)))?;
        // The data path and the file calls pass the verifier now: a refusal fails the load.
        let features = o.features;
        for p in programs::DATA_PATH.iter().chain(&programs::FILE_CALLS).filter(|p| features.wants(p)) {
            ensure_loaded(&mut ebpf, p)?;
        }
        if rpc_layout.is_some() {
            let mut ids: BpfHashMap<&mut MapData, ProcName, u16> = open_map_mut(&mut ebpf, maps::PROC_IDS)?;
            let known = KNOWN_PROCS.iter().enumerate().map(|(i, n)| (*n, known_proc_id(i)));
            let counted = |name: &str| o.operations.as_ref().is_none_or(|set| set.contains(counted_as(name)));
            for (name, id) in PRELOADED_PROCS.into_iter().chain(known) {
                let id = if counted(name) { id } else { nasflow_probe_bpf::OP_SKIP };
                ids.insert(ProcName::new(name), id, 0).map_err(|e| map_err(maps::PROC_IDS, e))?;
            }
        }
        apply_watched(&mut ebpf, &[], &self.watched)?;
        let ring = match ebpf.take_map(maps::SLOW_OPS).map(RingBuf::try_from) {
            Some(Ok(ring)) => Some(ring),
            Some(Err(e)) => return Err(map_err(maps::SLOW_OPS, e)),
            None => None,
        };
        *self.slow_ring.lock().unwrap_or_else(PoisonError::into_inner) = ring;
        self.ebpf = Some(ebpf);
        self.load_generation += 1;
        self.layout = Some(layout);
        self.rpc_layout = rpc_layout;
        Ok(())
    }

    /// Loads (once) and attaches; `false` when the module vanished meanwhile.
    fn attach(&mut self, module: ModuleInstance) -> Result<bool, ProbeError> {
        let Some(layout) = self.tracefs.read_layout()? else {
            return Ok(false);
        };
        if self.layout.is_some_and(|l| l != layout) {
            tracing::warn!(
                "the nfs tracepoint layout changed with the module reload: reloading the probe, counters restart"
            );
            self.carry_slow_ops();
            self.ebpf = None;
        }
        if self.ebpf.is_none() {
            let rpc = match preflight::rpc_tracing(&self.tracefs) {
                preflight::RpcTracing::Unsupported(e) => {
                    tracing::warn!(error = %e, "sunrpc tracepoints unusable: only READ, WRITE and COMMIT are counted (no metadata operations, rtt or retransmissions)");
                    None
                }
                preflight::RpcTracing::Absent => {
                    tracing::warn!("no sunrpc tracepoints: only READ, WRITE and COMMIT are counted (no metadata operations, rtt or retransmissions)");
                    None
                }
                usable => usable.layout(),
            };
            self.load(layout, rpc)?;
        }
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Ok(false);
        };
        let mut att = Attachment::new(module);
        let features = self.opts.features;
        for p in programs::DATA_PATH.iter().filter(|p| features.wants(p)) {
            att.attach(ebpf, p)?;
        }
        let kallsyms = if features.directories {
            std::fs::read_to_string("/proc/kallsyms").unwrap_or_default()
        } else {
            String::new()
        };
        for p in programs::DIRECTORIES.iter().filter(|p| features.wants(p)) {
            if programs::DIRECTORIES_OPTIONAL.contains(&p.name) && !kallsyms.is_empty() {
                let Hook::Kprobe(function) = p.hook else { continue };
                if !has_function(&kallsyms, function) {
                    tracing::debug!("{function} is not in this kernel: {} left out", p.name);
                    continue;
                }
            }
            if let Err(e) = att.attach(ebpf, p) {
                tracing::warn!(error = %e, "cannot probe {}: its operations carry no directory", p.hook.section());
                att.failed.push((p.name, reason(&e)));
            }
        }
        for p in programs::FILE_CALLS.iter().filter(|p| self.opts.features.wants(p)) {
            if let Err(e) = att.attach(ebpf, p) {
                att.failed.push((p.name, reason(&e)));
                let function = match p.hook {
                    Hook::Kprobe(f) | Hook::Kretprobe(f) => f,
                    Hook::Tracepoint { event, .. } => event,
                };
                if programs::WRITE_ATTRIBUTION.contains(&p.name) {
                    tracing::warn!(
                        error = %e,
                        "cannot probe {function}: buffered writes flushed in the background will be charged to the flushing context (usually the root cgroup)"
                    );
                } else {
                    tracing::warn!(error = %e, "cannot probe {function}: application bytes of those calls are not counted");
                }
            }
        }
        tracing::info!(
            tracepoints = att.count(&programs::DATA_PATH),
            kprobes = att.count(&programs::FILE_CALLS),
            "attached to the NFS client"
        );
        self.attachment = Some(att);
        // The data path counts from here; every other RPC follows once its programs pass the
        // verifier (seconds on a slow machine).
        self.attach_rpc();
        Ok(true)
    }

    /// Loads (once) and attaches the sunrpc and hint programs. Failures only degrade: the
    /// data path keeps working, and the reason is logged.
    fn attach_rpc(&mut self) {
        let (Some(rpc), Some(ebpf), Some(att)) = (self.rpc_layout, self.ebpf.as_mut(), self.attachment.as_mut()) else {
            return;
        };
        let features = self.opts.features;
        let present = |p: &programs::Program| {
            if !features.wants(p) {
                false
            } else if programs::RPC_OPTIONAL.contains(&p.name) {
                preflight::has_retransmits(&rpc)
            } else if let Some(i) = programs::HINTS.iter().position(|h| h.name == p.name) {
                rpc.hint_dev[i].size > 0
            } else {
                true
            }
        };
        for p in programs::RPC.iter().chain(&programs::HINTS).filter(|p| present(p)) {
            if let Err(e) = att.attach(ebpf, p) {
                tracing::warn!(error = %e, "cannot attach {}: fewer RPCs are attributed", p.hook.section());
                att.failed.push((p.name, reason(&e)));
            }
        }
        tracing::info!(
            tracepoints = att.count(&programs::RPC) + att.count(&programs::HINTS),
            "RPC tracing attached (every NFS operation, rtt, retransmissions)"
        );
    }

    fn detach(&mut self) {
        if self.attachment.take().is_some() {
            tracing::info!("detached from the NFS client (module gone); waiting for it to return");
        }
    }

    /// Loads every program this kernel has the events for, without attaching any, and says
    /// for each whether the verifier took it (for `nasflow check`). `Ok(None)` while the nfs
    /// module is not loaded: there are no tracepoint layouts to load with yet.
    pub fn verify(&mut self) -> Result<Option<Verified>, ProbeError> {
        let Some(layout) = self.tracefs.read_layout()? else {
            return Ok(None);
        };
        let rpc = preflight::rpc_tracing(&self.tracefs).layout();
        self.load(layout, rpc)?;
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Ok(None);
        };
        let mut out = Vec::new();
        let groups: [&[programs::Program]; 5] =
            [&programs::DATA_PATH, &programs::FILE_CALLS, &programs::RPC, &programs::HINTS, &programs::DIRECTORIES];
        for p in groups.into_iter().flatten() {
            if p.hook.event().is_some_and(|e| !self.tracefs.has_event(p.hook_category(), e)) {
                continue;
            }
            out.push((p.name, ensure_loaded(ebpf, p).map_err(|e| reason(&e))));
        }
        self.ebpf = None;
        *self.slow_ring.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.layout = None;
        Ok(Some(out))
    }

    /// Reads the maps into a cumulative snapshot. Empty until first attached.
    pub fn snapshot(&self) -> Result<Snapshot, ProbeError> {
        let mut snap = Snapshot { taken_at: Some(SystemTime::now()), ..Snapshot::default() };
        snap.health.series_capacity = self.opts.max_series;
        snap.health.load_generation = self.load_generation;
        snap.health.attached = self.attachment.is_some();
        snap.health.write_attribution =
            self.attachment.as_ref().is_some_and(|a| a.has_all(&programs::WRITE_ATTRIBUTION));
        let Some(ebpf) = self.ebpf.as_ref() else {
            return Ok(snap);
        };
        snap.health.rpc_tracing = self.attachment.as_ref().is_some_and(|a| a.has(programs::RPC_END));
        if let Some(a) = &self.attachment {
            snap.health.attached_programs = a.attached() as u64;
            snap.health.failed_programs.clone_from(&a.failed);
        }
        // The ring before the name table: every record's procedure id is in the table read
        // after it.
        let slow = self.take_slow_records();
        let names = self.proc_names(ebpf)?;
        snap.rows = snapshot::read_rows(ebpf, &names, &mut snap.health)?;
        snap.inflight = snapshot::read_inflight(ebpf, &mut snap.health)?;
        let o = &self.opts;
        let h = &snap.health;
        let mut fill = vec![
            (maps::IO_COUNTERS, h.series_used, u64::from(o.max_series)),
            (maps::IO_HIST, h.hist_used, u64::from(o.hist_entries())),
            (maps::INFLIGHT, h.inflight_used.0, u64::from(o.max_inflight)),
            (maps::RPC_TASKS, h.inflight_used.1, u64::from(o.max_inflight)),
        ];
        // The maps no snapshot reads: their keys are counted.
        for name in [maps::DIRTY, maps::WRITE_ARGS, maps::READ_ARGS] {
            let (used, capacity) = snapshot::fill(ebpf, name)?;
            fill.push((name, used, capacity));
        }
        snap.health.maps = fill;
        snap.health.counters = snapshot::read_health(ebpf)?;
        snap.slow_ops = std::mem::take(&mut *self.slow_carried.lock().unwrap_or_else(PoisonError::into_inner));
        snap.slow_ops.extend(snapshot::slow_ops_from(&slow, &names, SystemTime::now(), snapshot::monotonic_ns()));
        Ok(snap)
    }

    /// The slow-operation records the kernel reported since the last call, and those the
    /// sweep took from the waiting map (at most what the ring holds, so a read is bounded).
    fn take_slow_records(&self) -> Vec<nasflow_probe_bpf::SlowOp> {
        let mut records = std::mem::take(&mut *self.slow_swept.lock().unwrap_or_else(PoisonError::into_inner));
        let mut guard = self.slow_ring.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ring) = guard.as_mut() {
            while let Some(item) = ring.next() {
                if let Some(r) = nasflow_probe_bpf::SlowOp::from_bytes(&item) {
                    records.push(r);
                }
            }
        }
        records
    }

    /// Before a reload drops the maps: the slow operations they still hold (in the ring and
    /// waiting for their xid), named by the old table, go to the next snapshot.
    fn carry_slow_ops(&mut self) {
        if let Err(e) = self.sweep_waiting_slow(u64::MAX) {
            tracing::debug!(error = %e, "slow operations waiting for their xid");
        }
        let records = self.take_slow_records();
        let Some(ebpf) = self.ebpf.as_ref() else { return };
        let names = match self.proc_names(ebpf) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "reading procedure names before a reload: slow operations of named procedures dropped");
                HashMap::new()
            }
        };
        let ops = snapshot::slow_ops_from(&records, &names, SystemTime::now(), snapshot::monotonic_ns());
        self.slow_carried.lock().unwrap_or_else(PoisonError::into_inner).extend(ops);
    }

    /// Sets the watched directories (the whole set; what is not in it is no longer watched).
    /// Kept for later loads. At most [`MAX_WATCHED_INODES`] are kept; returns how many were
    /// left out.
    pub fn set_watched(&mut self, mut dirs: Vec<WatchedDir>) -> Result<usize, ProbeError> {
        dirs.sort_unstable();
        dirs.dedup_by_key(|d| (d.dev, d.ino));
        let dropped = dirs.len().saturating_sub(MAX_WATCHED_INODES);
        dirs.truncate(MAX_WATCHED_INODES);
        if dirs == self.watched {
            return Ok(dropped);
        }
        if let Some(ebpf) = self.ebpf.as_mut() {
            apply_watched(ebpf, &self.watched, &dirs)?;
        }
        self.watched = dirs;
        Ok(dropped)
    }

    /// Operation ids of named RPCs, from the kernel's name table.
    fn proc_names(&self, ebpf: &Ebpf) -> Result<std::collections::HashMap<u16, ProcName>, ProbeError> {
        if self.rpc_layout.is_none() {
            return Ok(std::collections::HashMap::new());
        }
        let ids: BpfHashMap<&MapData, ProcName, u16> = open_map(ebpf, maps::PROC_IDS)?;
        Ok(ids.iter().filter_map(Result::ok).map(|(name, id)| (id, name)).collect())
    }

    /// Deletes every key of the given cgroups (they no longer exist), so the maps only hold
    /// live series, and returns their final values: the rows those series end with.
    pub fn forget_cgroups(&mut self, gone: &HashSet<u64>) -> Result<Vec<IoRow>, ProbeError> {
        let Some(ebpf) = self.ebpf.as_ref() else {
            return Ok(Vec::new());
        };
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let names = self.proc_names(ebpf)?;
        snapshot::forget_cgroups(ebpf, gone, &names, &mut self.deleter)
    }

    /// Deletes in-flight records older than `max_age` (completions that never came: a module
    /// reload, a missed event) and the call arguments of threads that ended. Returns how many
    /// were deleted.
    pub fn sweep_inflight(&mut self, max_age: std::time::Duration) -> Result<usize, ProbeError> {
        let now = snapshot::monotonic_ns();
        // Without rpc_stats_latency attached (refused, or not yet) no waiting one completes.
        let completes = self.attachment.as_ref().is_some_and(|a| a.has(programs::RPC_STATS));
        self.sweep_waiting_slow(if completes { now.saturating_sub(SLOW_PENDING_STALE_NS) } else { u64::MAX })?;
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Ok(0);
        };
        let cutoff = now.saturating_sub(u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX));
        let settled = now.saturating_sub(SETTLED_RPC_AGE.as_secs() * 1_000_000_000);
        Ok(snapshot::sweep_inflight(ebpf, cutoff, settled)? + snapshot::sweep_call_args(ebpf, &self.opts.proc_root)?)
    }

    /// Takes every slow operation still waiting for its xid, for the next snapshot (the last
    /// one, when the agent stops: what waits would be lost).
    pub fn take_waiting_slow_ops(&mut self) -> Result<(), ProbeError> {
        self.sweep_waiting_slow(u64::MAX)
    }

    /// Moves the slow operations that ended before `ended_before_ns` and still wait for their
    /// xid from the kernel's map to the next snapshot.
    fn sweep_waiting_slow(&mut self, ended_before_ns: u64) -> Result<(), ProbeError> {
        let Some(ebpf) = self.ebpf.as_mut().filter(|_| self.opts.slow_ops.is_some()) else {
            return Ok(());
        };
        let waiting = snapshot::take_stale_slow(ebpf, ended_before_ns)?;
        self.slow_swept.lock().unwrap_or_else(PoisonError::into_inner).extend(waiting);
        Ok(())
    }
}

/// Whether `/proc/kallsyms` text lists a function (`addr t name` or `... [module]`).
fn has_function(kallsyms: &str, name: &str) -> bool {
    kallsyms.lines().any(|l| l.split_whitespace().nth(2) == Some(name))
}

/// The `--operations` name a procedure is selected by: `READ_PLUS` is a READ.
fn counted_as(name: &str) -> &str {
    if name == "READ_PLUS" {
        "READ"
    } else {
        name
    }
}

/// Moves the kernel's watched-directory maps from `old` to `new`: deletes what left, adds
/// what came (a key is never missing while it stays watched).
fn apply_watched(ebpf: &mut Ebpf, old: &[WatchedDir], new: &[WatchedDir]) -> Result<(), ProbeError> {
    let key = |d: &WatchedDir| nasflow_probe_bpf::DirKey { dev: d.dev, pad: 0, ino: d.ino };
    let devs = |set: &[WatchedDir]| {
        let mut n: std::collections::BTreeMap<u32, u32> = std::collections::BTreeMap::new();
        for d in set {
            *n.entry(d.dev).or_default() += 1;
        }
        n
    };
    {
        let mut dirs: BpfHashMap<&mut MapData, nasflow_probe_bpf::DirKey, u16> =
            open_map_mut(ebpf, maps::WATCHED_DIRS)?;
        for d in new {
            dirs.insert(key(d), d.id, 0).map_err(|e| map_err(maps::WATCHED_DIRS, e))?;
        }
        for d in old.iter().filter(|o| !new.iter().any(|n| (n.dev, n.ino) == (o.dev, o.ino))) {
            // Already gone (a reload started from empty maps) is fine.
            let _ = dirs.remove(&key(d));
        }
    }
    let (old_devs, new_devs) = (devs(old), devs(new));
    let mut map: BpfHashMap<&mut MapData, u32, u32> = open_map_mut(ebpf, maps::WATCHED_DEVS)?;
    for (dev, n) in &new_devs {
        map.insert(dev, n, 0).map_err(|e| map_err(maps::WATCHED_DEVS, e))?;
    }
    for dev in old_devs.keys().filter(|d| !new_devs.contains_key(d)) {
        let _ = map.remove(dev);
    }
    Ok(())
}

/// Why a program failed, in a line or three: the error, and the end of a verifier log (where
/// the verifier says what it refused).
fn reason(e: &ProbeError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [first, .., last] if lines.len() <= 4 => format!("{first} … {last}"),
        [first, rest @ ..] => format!("{first} … {}", rest[rest.len() - 3..].join(" / ")),
    }
}

/// Kernels before 5.11 charge BPF maps to `RLIMIT_MEMLOCK`, often 64 KiB in containers:
/// lift it (needs `CAP_SYS_RESOURCE` beyond the hard limit). Later kernels ignore it.
fn raise_memlock() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a valid rlimit struct is passed by pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        tracing::debug!(
            error = %io::Error::last_os_error(),
            "cannot lift RLIMIT_MEMLOCK: on kernels before 5.11 map creation may fail (grant CAP_SYS_RESOURCE)"
        );
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| ProbeError::Program { name: name.to_owned(), source: Box::new(ProgramError::NotLoaded) })?;
    p.try_into().map_err(|e| prog_err(name, e))
}

/// Loads `p` into the kernel (the verifier's turn) unless it is loaded already.
fn ensure_loaded(ebpf: &mut Ebpf, p: &programs::Program) -> Result<(), ProbeError> {
    let loaded = match p.hook {
        Hook::Tracepoint { .. } => {
            let tp: &mut TracePoint = program(ebpf, p.name)?;
            if tp.fd().is_ok() {
                Ok(())
            } else {
                tp.load()
            }
        }
        Hook::Kprobe(_) | Hook::Kretprobe(_) => {
            let kp: &mut KProbe = program(ebpf, p.name)?;
            if kp.fd().is_ok() {
                Ok(())
            } else {
                kp.load()
            }
        }
    };
    loaded.map_err(|e| prog_err(p.name, e))
}

fn prog_err(name: &str, e: ProgramError) -> ProbeError {
    ProbeError::Program { name: name.to_owned(), source: Box::new(e) }
}

fn map_err(name: &'static str, e: MapError) -> ProbeError {
    ProbeError::Map { name, source: Box::new(e) }
}

fn open_map<'a, T>(ebpf: &'a Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<&'a aya::maps::Map, Error = MapError>,
{
    let m = ebpf.map(name).ok_or_else(|| map_err(name, MapError::InvalidName { name: name.to_owned() }))?;
    T::try_from(m).map_err(|e| map_err(name, e))
}

fn open_map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let m = ebpf.map_mut(name).ok_or_else(|| map_err(name, MapError::InvalidName { name: name.to_owned() }))?;
    T::try_from(m).map_err(|e| map_err(name, e))
}

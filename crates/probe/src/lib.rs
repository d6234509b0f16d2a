//! Owns the kernel side of nasflow: loads the BPF programs, attaches them when the NFS client
//! module is there (late, and again after a reload), and reads the kernel maps into plain
//! cumulative [`Snapshot`]s. No names, no network: cgroup ids and device numbers only.

pub mod tracefs;

use std::{
    collections::HashSet,
    fs, io,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, MapError, PerCpuArray, PerCpuHashMap},
    programs::{KProbe, ProgramError, TracePoint},
    Ebpf, EbpfLoader,
};
use nasflow_probe_bpf::{
    globals, maps, Health, InflightKey, InflightVal, IoCounters, IoKey, Layout, Op, RpcLayout, RpcTask, RpcTaskKey,
    HEALTH_COUNT, HINT_EVENTS, HIST_SLOTS, OP_MASK, OP_RETRANS, OP_RTT, PRELOADED_PROCS, RPC_RUNNING,
};

pub use nasflow_probe_bpf::{
    latency_slot_upper_bound_s, IoHist as Histogram, Op as Operation, ProcName, HIST_SLOTS as LATENCY_SLOTS,
};

use crate::tracefs::{probe_events, Tracefs, RPC_EVENTS};

/// Where the kernel publishes its own BTF; without it CO-RE cannot work.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

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
}

impl ProbeOptions {
    /// Defaults sized for a busy node (see BENCHMARKS.md for their memory cost).
    #[must_use]
    pub fn new(cgroup: CgroupIdentity) -> Self {
        Self {
            cgroup,
            max_series: 10_240,
            max_inflight: 16_384,
            max_dirty_files: 16_384,
            btf_path: PathBuf::from(VMLINUX_BTF),
        }
    }
}

/// One (cgroup, device, operation, errno) row of cumulative kernel counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoRow {
    /// cgroup id (v2 id or v1 memory cgroup kernfs id).
    pub cgroup: u64,
    /// NFS super block device as the kernel encodes it (`MAJOR << 20 | MINOR`).
    pub dev: u32,
    /// The operation.
    pub op: Op,
    /// Positive errno for failed operations, 0 for successes.
    pub err: u16,
    /// Completed operations.
    pub ops: u64,
    /// READ bytes received, WRITE bytes sent.
    pub bytes: u64,
    /// Latency samples and their sum.
    pub latency_count: u64,
    /// Sum of the latency samples, ns.
    pub latency_sum_ns: u64,
    /// Log2 latency slots: slot 0 is <= 2^-30 s, slot s covers (2^(s-31), 2^(s-30)] s.
    pub latency_slots: [u64; HIST_SLOTS],
    /// Retransmissions of this operation (kept on the `err == 0` row: a retransmission
    /// happens before the outcome is known).
    pub retransmits: u64,
    /// Round-trip times (request sent to reply received), in the same slots; `None` when
    /// the RPC programs are not attached or no reply was timed.
    pub rtt: Option<Box<Histogram>>,
}

impl IoRow {
    /// `major:minor` of the device, as mountinfo writes it.
    #[must_use]
    pub fn dev_string(&self) -> String {
        dev_string(self.dev)
    }
}

/// `major:minor` of a kernel device number (`MAJOR << 20 | MINOR`), as mountinfo writes it.
#[must_use]
pub fn dev_string(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xf_ffff)
}

/// Probe health: what the kernel side could not count, and how full the maps are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeHealth {
    /// Cumulative health counters, by name.
    pub counters: Vec<(&'static str, u64)>,
    /// Counter keys in use and the map's capacity.
    pub series_used: u64,
    /// Capacity of the counter map.
    pub series_capacity: u32,
    /// Whether the programs are attached now.
    pub attached: bool,
    /// Whether the buffered-write kprobe is attached (writeback attribution works).
    pub write_attribution: bool,
    /// Whether the sunrpc programs are attached (every RPC, rtt and retransmissions).
    pub rpc_tracing: bool,
}

/// RPCs in flight on one device when the snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflight {
    /// NFS super block device.
    pub dev: u32,
    /// RPCs started and not completed.
    pub count: u64,
    /// Age of the oldest of them.
    pub oldest: Duration,
}

/// Everything the kernel counted so far, cumulative since load.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When the maps were read.
    pub taken_at: Option<SystemTime>,
    /// Rows, sorted by (cgroup, dev, op, err).
    pub rows: Vec<IoRow>,
    /// RPCs in flight per device, sorted by device.
    pub inflight: Vec<Inflight>,
    /// Probe health.
    pub health: ProbeHealth,
}

/// `CLOCK_MONOTONIC` in ns: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
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

/// Links held for one attachment of the programs.
struct Attachment {
    /// (program, category, link)
    tracepoints: Vec<(String, aya::programs::trace_point::TracePointLinkId)>,
    /// Optional programs: (program, link); their absence degrades, never fails.
    extra: Vec<(String, aya::programs::trace_point::TracePointLinkId)>,
    kprobes: Vec<(String, aya::programs::kprobe::KProbeLinkId)>,
    /// The nfs module instance attached to.
    module: ModuleInstance,
}

/// Which load of the nfs module this is: the inode of `/sys/module/nfs` changes with every
/// load; `None` when nfs is built into the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModuleInstance(Option<u64>);

/// The loaded probe and its attach state.
pub struct Probe {
    opts: ProbeOptions,
    tracefs: Tracefs,
    ebpf: Option<Ebpf>,
    layout: Option<Layout>,
    /// The RPC programs' layout; `None` when sunrpc's events cannot be used (the data path
    /// still works).
    rpc_layout: Option<RpcLayout>,
    attachment: Option<Attachment>,
    /// The module instance a load or attach failed for: not retried until it changes.
    failed_for: Option<ModuleInstance>,
}

/// kprobe programs and the function they probe (names under 16 bytes: the kernel truncates).
const KPROBES: [(&str, &str); 4] = [
    ("nfs_fwrite_ent", "nfs_file_write"),
    ("nfs_fwrite_ret", "nfs_file_write"),
    ("nfs_fread_ent", "nfs_file_read"),
    ("nfs_fread_ret", "nfs_file_read"),
];

fn nfs_module_instance() -> ModuleInstance {
    ModuleInstance(fs::metadata("/sys/module/nfs").ok().map(|m| m.ino()))
}

impl Probe {
    /// Checks the kernel's prerequisites and prepares the probe. Nothing is loaded until the
    /// nfs module's tracepoints exist: call [`Probe::poll`] (every second or so).
    pub fn new(opts: ProbeOptions) -> Result<Self, ProbeError> {
        if !opts.btf_path.is_file() {
            return Err(ProbeError::NoBtf { path: opts.btf_path });
        }
        let tracefs = Tracefs::find_or_mount()?;
        raise_memlock();
        Ok(Self { opts, tracefs, ebpf: None, layout: None, rpc_layout: None, attachment: None, failed_for: None })
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
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::LAYOUT, &layout, true)
            .override_global(globals::CGROUP_V1, &v1, true)
            .override_global(globals::ROOT_CGROUP, &root, true)
            .override_global(globals::O_DIRECT_FLAG, &o_direct, true)
            .override_global(globals::RPC_LAYOUT, &rpc, true)
            .map_max_entries(maps::RPC_TASKS, o.max_inflight)
            .map_max_entries(maps::IO_COUNTERS, o.max_series)
            .map_max_entries(maps::IO_HIST, o.max_series)
            .map_max_entries(maps::INFLIGHT, o.max_inflight)
            .map_max_entries(maps::DIRTY, o.max_dirty_files)
            .load(nasflow_probe_bpf::probe_object())
            .map_err(|e| ProbeError::Load(Box::new(e)))?;
        for event in probe_events() {
            let tp: &mut TracePoint = program(&mut ebpf, event)?;
            tp.load().map_err(|e| prog_err(event, e))?;
        }
        for (name, _) in KPROBES {
            let kp: &mut KProbe = program(&mut ebpf, name)?;
            kp.load().map_err(|e| prog_err(name, e))?;
        }
        if rpc_layout.is_some() {
            let mut ids: BpfHashMap<&mut MapData, ProcName, u16> = open_map_mut(&mut ebpf, maps::PROC_IDS)?;
            for (name, id) in PRELOADED_PROCS {
                ids.insert(ProcName::new(name), id, 0).map_err(|e| map_err(maps::PROC_IDS, e))?;
            }
        }
        self.ebpf = Some(ebpf);
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
            self.ebpf = None;
        }
        if self.ebpf.is_none() {
            let rpc = match self.tracefs.read_rpc_layout() {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "sunrpc tracepoints unusable: only READ, WRITE and COMMIT are counted (no metadata operations, rtt or retransmissions)");
                    None
                }
            };
            self.load(layout, rpc)?;
        }
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Ok(false);
        };
        let mut att = Attachment { tracepoints: Vec::new(), extra: Vec::new(), kprobes: Vec::new(), module };
        for event in probe_events() {
            let tp: &mut TracePoint = program(ebpf, event)?;
            let id = tp.attach("nfs", event).map_err(|e| prog_err(event, e))?;
            att.tracepoints.push((event.to_owned(), id));
        }
        for (name, func) in KPROBES {
            let kp: &mut KProbe = program(ebpf, name)?;
            match kp.attach(func, 0) {
                Ok(id) => att.kprobes.push((name.to_owned(), id)),
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot probe {func}: buffered writes flushed in the background will be charged to the flushing context (usually the root cgroup)"
                ),
            }
        }
        tracing::info!(tracepoints = att.tracepoints.len(), kprobes = att.kprobes.len(), "attached to the NFS client");
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
        for ((name, present), (category, event)) in rpc_programs(&rpc).into_iter().zip(rpc_events()) {
            if !present {
                continue;
            }
            let attached = program::<TracePoint>(ebpf, name).and_then(|tp| {
                if tp.fd().is_err() {
                    tp.load().map_err(|e| prog_err(name, e))?;
                }
                tp.attach(category, event).map_err(|e| prog_err(name, e))
            });
            match attached {
                Ok(id) => att.extra.push((name.to_owned(), id)),
                Err(e) => tracing::warn!(error = %e, "cannot attach {category}:{event}: fewer RPCs are attributed"),
            }
        }
        tracing::info!(
            tracepoints = att.extra.len(),
            "RPC tracing attached (every NFS operation, rtt, retransmissions)"
        );
    }

    fn detach(&mut self) {
        let (Some(att), Some(ebpf)) = (self.attachment.take(), self.ebpf.as_mut()) else {
            return;
        };
        for (name, id) in att.tracepoints {
            if let Ok(tp) = program::<TracePoint>(ebpf, &name) {
                let _ = tp.detach(id);
            }
        }
        for (name, id) in att.extra {
            if let Ok(tp) = program::<TracePoint>(ebpf, &name) {
                let _ = tp.detach(id);
            }
        }
        for (name, id) in att.kprobes {
            if let Ok(kp) = program::<KProbe>(ebpf, &name) {
                let _ = kp.detach(id);
            }
        }
        tracing::info!("detached from the NFS client (module gone); waiting for it to return");
    }

    /// Reads the maps into a cumulative snapshot. Empty until first attached.
    pub fn snapshot(&self) -> Result<Snapshot, ProbeError> {
        let mut snap = Snapshot { taken_at: Some(SystemTime::now()), ..Snapshot::default() };
        snap.health.series_capacity = self.opts.max_series;
        snap.health.attached = self.attachment.is_some();
        snap.health.write_attribution = self.attachment.as_ref().is_some_and(|a| {
            ["nfs_fwrite_ent", "nfs_fwrite_ret"].iter().all(|n| a.kprobes.iter().any(|(k, _)| k == n))
        });
        let Some(ebpf) = self.ebpf.as_ref() else {
            return Ok(snap);
        };
        snap.health.rpc_tracing =
            self.attachment.as_ref().is_some_and(|a| a.extra.iter().any(|(n, _)| n == "rpc_task_end"));
        let names = self.proc_names(ebpf)?;
        let op_of = |raw: u16| Op::from_raw(raw).or_else(|| names.get(&(raw & OP_MASK)).map(|n| Op::Rpc(*n)));
        let counters: PerCpuHashMap<&MapData, IoKey, IoCounters> = open_map(ebpf, maps::IO_COUNTERS)?;
        let hists: BpfHashMap<&MapData, IoKey, Histogram> = open_map(ebpf, maps::IO_HIST)?;
        let mut rows: std::collections::BTreeMap<(u64, u32, Op, u16), IoRow> = std::collections::BTreeMap::new();
        // Histograms first, in one pass: operation latencies and, flagged, round-trip times.
        // Count, buckets and sum come from one entry, so they agree (OTLP requires count =
        // bucket total). The ops counters are another map, read a moment later: while I/O
        // runs, ops and the histogram count can differ by what completed in between. Without
        // a histogram (map full) no latency is reported; the drop is counted in
        // `histogram_map_full`.
        for item in &hists {
            let (key, h) = item.map_err(|e| map_err(maps::IO_HIST, e))?;
            let Some(op) = op_of(key.op) else {
                continue;
            };
            let r = entry(&mut rows, key.cgroup, key.dev, op, key.err);
            if key.op & OP_RTT != 0 {
                r.rtt = Some(Box::new(h));
            } else {
                r.latency_slots = h.slots;
                r.latency_count = h.slots.iter().sum();
                r.latency_sum_ns = h.sum_ns;
            }
        }
        for item in &counters {
            let (key, per_cpu) = item.map_err(|e| map_err(maps::IO_COUNTERS, e))?;
            snap.health.series_used += 1;
            let Some(op) = op_of(key.op) else {
                continue;
            };
            let (ops, bytes) = per_cpu.iter().fold((0, 0), |(o, b), c| (o + c.ops, b + c.bytes));
            if key.op & OP_RETRANS != 0 {
                entry(&mut rows, key.cgroup, key.dev, op, 0).retransmits += ops;
                continue;
            }
            let r = entry(&mut rows, key.cgroup, key.dev, op, key.err);
            r.ops += ops;
            r.bytes += bytes;
        }
        snap.rows = rows.into_values().collect();
        let inflight: BpfHashMap<&MapData, InflightKey, InflightVal> = open_map(ebpf, maps::INFLIGHT)?;
        let now = monotonic_ns();
        let mut per_dev: std::collections::BTreeMap<u32, Inflight> = std::collections::BTreeMap::new();
        for (k, v) in inflight.iter().filter_map(Result::ok) {
            let age = Duration::from_nanos(now.saturating_sub(v.start_ns));
            let e = per_dev.entry(k.dev).or_insert(Inflight { dev: k.dev, count: 0, oldest: Duration::ZERO });
            e.count += 1;
            e.oldest = e.oldest.max(age);
        }
        // Every NFS RPC in flight, data ones included: the larger count, the older age.
        let tasks: BpfHashMap<&MapData, RpcTaskKey, RpcTask> = open_map(ebpf, maps::RPC_TASKS)?;
        let mut rpc_per_dev: std::collections::BTreeMap<u32, (u64, Duration)> = std::collections::BTreeMap::new();
        for (_, t) in tasks.iter().filter_map(Result::ok).filter(|(_, t)| t.state == RPC_RUNNING) {
            let e = rpc_per_dev.entry(t.dev).or_default();
            e.0 += 1;
            e.1 = e.1.max(Duration::from_nanos(now.saturating_sub(t.start_ns)));
        }
        for (dev, (count, oldest)) in rpc_per_dev {
            let e = per_dev.entry(dev).or_insert(Inflight { dev, count: 0, oldest: Duration::ZERO });
            e.count = e.count.max(count);
            e.oldest = e.oldest.max(oldest);
        }
        snap.inflight = per_dev.into_values().collect();
        let health: PerCpuArray<&MapData, u64> = open_map(ebpf, maps::HEALTH)?;
        for h in Health::ALL {
            let total = health.get(&(h as u32), 0).map_err(|e| map_err(maps::HEALTH, e))?.iter().sum::<u64>();
            snap.health.counters.push((h.name(), total));
        }
        debug_assert_eq!(snap.health.counters.len(), HEALTH_COUNT as usize);
        Ok(snap)
    }

    /// Operation ids of named RPCs, from the kernel's name table.
    fn proc_names(&self, ebpf: &Ebpf) -> Result<std::collections::HashMap<u16, ProcName>, ProbeError> {
        if self.rpc_layout.is_none() {
            return Ok(std::collections::HashMap::new());
        }
        let ids: BpfHashMap<&MapData, ProcName, u16> = open_map(ebpf, maps::PROC_IDS)?;
        Ok(ids.iter().filter_map(Result::ok).map(|(name, id)| (id, name)).collect())
    }

    /// Deletes every row of the given cgroups (they no longer exist), so the maps only hold
    /// live series. Returns how many keys were removed.
    pub fn forget_cgroups(&mut self, gone: &HashSet<u64>) -> Result<usize, ProbeError> {
        if gone.is_empty() {
            return Ok(0);
        }
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Ok(0);
        };
        let mut removed = 0;
        {
            let mut counters: PerCpuHashMap<&mut MapData, IoKey, IoCounters> = open_map_mut(ebpf, maps::IO_COUNTERS)?;
            let keys: Vec<IoKey> =
                counters.keys().filter_map(Result::ok).filter(|k| gone.contains(&k.cgroup)).collect();
            for k in &keys {
                if counters.remove(k).is_ok() {
                    removed += 1;
                }
            }
        }
        let mut hists: BpfHashMap<&mut MapData, IoKey, Histogram> = open_map_mut(ebpf, maps::IO_HIST)?;
        let keys: Vec<IoKey> = hists.keys().filter_map(Result::ok).filter(|k| gone.contains(&k.cgroup)).collect();
        for k in &keys {
            let _ = hists.remove(k);
        }
        Ok(removed)
    }

    /// Deletes in-flight records older than `max_age`: completions that never came (a
    /// module reload, a missed event). Returns how many were deleted.
    pub fn sweep_inflight(&mut self, max_age: Duration) -> Result<usize, ProbeError> {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Ok(0);
        };
        let mut inflight: BpfHashMap<&mut MapData, InflightKey, InflightVal> = open_map_mut(ebpf, maps::INFLIGHT)?;
        let cutoff = monotonic_ns().saturating_sub(u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX));
        let stale: Vec<InflightKey> =
            inflight.iter().filter_map(Result::ok).filter(|(_, v)| v.start_ns < cutoff).map(|(k, _)| k).collect();
        let mut removed = 0;
        for k in &stale {
            if inflight.remove(k).is_ok() {
                removed += 1;
            }
        }
        let mut tasks: BpfHashMap<&mut MapData, RpcTaskKey, RpcTask> = open_map_mut(ebpf, maps::RPC_TASKS)?;
        let stale: Vec<RpcTaskKey> = tasks
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, t)| t.state == RPC_RUNNING && t.start_ns < cutoff)
            .map(|(k, _)| k)
            .collect();
        for k in &stale {
            if tasks.remove(k).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
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

/// The sunrpc and hint programs, in [`rpc_events`] order, and whether this kernel has their
/// event (its fields are in the layout).
fn rpc_programs(rpc: &RpcLayout) -> Vec<(&'static str, bool)> {
    let mut out: Vec<(&'static str, bool)> = RPC_EVENTS
        .iter()
        .map(|(event, name)| (*name, *event != "xprt_retransmit" || rpc.rtx_task_id.size > 0))
        .collect();
    out.extend(HINT_EVENTS.iter().zip(rpc.hint_dev).map(|((_, name), f)| (*name, f.size > 0)));
    out
}

/// (category, event) of each of [`rpc_programs`].
fn rpc_events() -> Vec<(&'static str, &'static str)> {
    RPC_EVENTS.iter().map(|(e, _)| ("sunrpc", *e)).chain(HINT_EVENTS.iter().map(|(e, _)| ("nfs", *e))).collect()
}

/// The row of one (cgroup, dev, op, err), made empty on first use.
fn entry(
    rows: &mut std::collections::BTreeMap<(u64, u32, Op, u16), IoRow>,
    cgroup: u64,
    dev: u32,
    op: Op,
    err: u16,
) -> &mut IoRow {
    rows.entry((cgroup, dev, op, err)).or_insert_with(|| IoRow {
        cgroup,
        dev,
        op,
        err,
        ops: 0,
        bytes: 0,
        latency_count: 0,
        latency_sum_ns: 0,
        latency_slots: [0; HIST_SLOTS],
        retransmits: 0,
        rtt: None,
    })
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

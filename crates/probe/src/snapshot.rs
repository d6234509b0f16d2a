//! What the probe hands downstream: plain, typed rows of cumulative kernel counters, one
//! histogram type, and probe health. Reading the maps into them is here too.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, SystemTime},
};

use std::os::fd::{AsFd, BorrowedFd};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap},
    Ebpf,
};
use nasflow_probe_bpf::{
    maps, Health, InflightKey, InflightVal, IoCounters, IoHist, IoKey, Op, ProcName, RpcTask, RpcTaskKey, HIST_SLOTS,
    OP_MASK, OP_RETRANS, OP_RTT, RPC_RUNNING,
};

use crate::{map_err, open_map, open_map_mut, sys, ProbeError};

/// A latency histogram in the kernel's log2 slots: slot 0 holds samples of at most 2^-30 s,
/// slot `s >= 1` samples in (2^(s-31), 2^(s-30)] s. The one histogram type of the pipe: the
/// probe fills it, jsonl prints it, OTLP encodes its slots one to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Sample counts per slot.
    pub slots: [u64; HIST_SLOTS],
    /// Sum of the samples, ns.
    pub sum_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self { slots: [0; HIST_SLOTS], sum_ns: 0 }
    }
}

impl From<&IoHist> for Histogram {
    fn from(h: &IoHist) -> Self {
        Self { slots: h.slots, sum_ns: h.sum_ns }
    }
}

impl Histogram {
    /// Samples: the sum of the slots, so count and buckets always agree.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.slots.iter().sum()
    }

    /// Adds another histogram's samples.
    pub fn add(&mut self, o: &Self) {
        self.sum_ns += o.sum_ns;
        for (a, b) in self.slots.iter_mut().zip(o.slots) {
            *a += b;
        }
    }

    /// `self - o`, or `None` when any part went down (a reset).
    #[must_use]
    pub fn minus(&self, o: &Self) -> Option<Self> {
        let mut slots = [0; HIST_SLOTS];
        for (i, s) in slots.iter_mut().enumerate() {
            *s = self.slots[i].checked_sub(o.slots[i])?;
        }
        Some(Self { slots, sum_ns: self.sum_ns.checked_sub(o.sum_ns)? })
    }
}

/// Operations that completed with one outcome, and what they moved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completed {
    /// Completed operations.
    pub ops: u64,
    /// READ bytes received, WRITE bytes sent; application bytes for `APP_*`.
    pub bytes: u64,
    /// Their latencies, start to completion (empty for application bytes).
    pub latency: Histogram,
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
    /// The watched directory the operation's file is in (`--directories`: its 1-based
    /// place in the list), 0 for none.
    pub dir: u16,
    /// Operations that completed with this outcome; `None` while the kernel only has wire
    /// samples for the key (an rtt or a retransmission of an operation not completed yet).
    pub completed: Option<Completed>,
    /// Retransmissions of this operation (on the `err == 0` row: a retransmission happens
    /// before the outcome is known).
    pub retransmits: u64,
    /// Round-trip times (request sent to reply received); `None` when the RPC programs are not
    /// attached or no reply was timed.
    pub rtt: Option<Histogram>,
}

impl IoRow {
    /// An empty row of one key: nothing completed, no wire samples.
    #[must_use]
    pub fn new(cgroup: u64, dev: u32, op: Op, err: u16) -> Self {
        Self { cgroup, dev, op, err, dir: 0, completed: None, retransmits: 0, rtt: None }
    }

    /// The row below watched directory `dir`.
    #[must_use]
    pub fn with_dir(mut self, dir: u16) -> Self {
        self.dir = dir;
        self
    }

    /// The row with `ops` operations that moved `bytes` completed in it.
    #[must_use]
    pub fn with_completed(mut self, ops: u64, bytes: u64, latency: Histogram) -> Self {
        self.completed = Some(Completed { ops, bytes, latency });
        self
    }

    /// The row with retransmissions and round-trip times.
    #[must_use]
    pub fn with_wire(mut self, retransmits: u64, rtt: Option<Histogram>) -> Self {
        self.retransmits = retransmits;
        self.rtt = rtt;
        self
    }

    /// Completed operations, 0 when none.
    #[must_use]
    pub fn ops(&self) -> u64 {
        self.completed.as_ref().map_or(0, |c| c.ops)
    }

    /// Bytes of the completed operations, 0 when none.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.completed.as_ref().map_or(0, |c| c.bytes)
    }

    /// `major:minor` of the device, as mountinfo writes it.
    #[must_use]
    pub fn dev_string(&self) -> String {
        dev_string(self.dev)
    }

    fn completed_mut(&mut self) -> &mut Completed {
        self.completed.get_or_insert_with(Completed::default)
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
    /// Which load of the BPF object the counters come from: a new load restarts every
    /// counter at zero, so its series must start anew.
    pub load_generation: u64,
    /// Programs attached now.
    pub attached_programs: u64,
    /// Optional programs that could not be loaded or attached, with the reason.
    pub failed_programs: Vec<(&'static str, String)>,
    /// Histogram keys in use (latencies and round-trip times).
    pub hist_used: u64,
    /// RPCs tracked in flight (data path and sunrpc tasks).
    pub inflight_used: (u64, u64),
    /// Fill of the bounded maps read each interval: (map, entries, capacity).
    pub maps: Vec<(&'static str, u64, u64)>,
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
    /// Rows, sorted by (cgroup, dev, op, dir, err).
    pub rows: Vec<IoRow>,
    /// RPCs in flight per device, sorted by device.
    pub inflight: Vec<Inflight>,
    /// Probe health.
    pub health: ProbeHealth,
    /// Operations past the slow-op threshold reported since the last snapshot, in the order
    /// they completed.
    pub slow_ops: Vec<SlowOp>,
}

/// An operation that took at least the slow-op threshold (`--slow-op-threshold`), reported
/// one by one by the kernel within its per-second budget: what a latency histogram cannot
/// say (which call, from whom, on which file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowOp {
    /// Cgroup id it is charged to.
    pub cgroup: u64,
    /// NFS super block device (`MAJOR << 20 | MINOR`; 0 when not known).
    pub dev: u32,
    /// The operation.
    pub op: Op,
    /// Positive errno, 0 for success.
    pub err: u16,
    /// Watched directory id, 0 for none.
    pub dir: u16,
    /// When it started.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// READ and WRITE payload bytes (0 for other operations).
    pub bytes: u64,
    /// File id (inode number on the server) and offset, for READ, WRITE and COMMIT.
    pub file: Option<(u64, i64)>,
    /// The RPC's xid and round trip, when `sunrpc:rpc_stats_latency` was seen for it.
    pub rpc: Option<RpcFacts>,
}

/// What the RPC layer says of one slow operation's (last) request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcFacts {
    /// The transaction id on the wire (what a packet capture on the NAS shows).
    pub xid: u32,
    /// From sending to the reply; `None` without a reply (timed out, never sent).
    pub rtt: Option<Duration>,
}

/// The operation of a kernel operation id: a fixed one, or a procedure name the kernel was
/// given (flags masked off); `None` for an id not known (yet).
fn op_named(raw: u16, names: &HashMap<u16, ProcName>) -> Option<Op> {
    Op::from_raw(raw).or_else(|| names.get(&(raw & OP_MASK)).map(|n| Op::Rpc(*n)))
}

/// Slow operations from ring records: operation ids named as the rows' are, kernel start
/// times (`CLOCK_MONOTONIC`) placed on the wall clock by one reading of both clocks. Records
/// of unknown operation ids are skipped.
pub(crate) fn slow_ops_from(
    records: &[nasflow_probe_bpf::SlowOp],
    names: &HashMap<u16, ProcName>,
    wall_now: SystemTime,
    mono_now_ns: u64,
) -> Vec<SlowOp> {
    records
        .iter()
        .filter_map(|r| {
            let op = op_named(r.op, names)?;
            let ago = Duration::from_nanos(mono_now_ns.saturating_sub(r.start_ns));
            Some(SlowOp {
                cgroup: r.cgroup,
                dev: r.dev,
                op,
                err: r.err,
                dir: r.dir,
                start: wall_now.checked_sub(ago).unwrap_or(wall_now),
                duration: Duration::from_nanos(r.duration_ns),
                bytes: r.bytes,
                file: (r.fileid != 0).then_some((r.fileid, r.offset)),
                rpc: (r.has_rpc != 0).then(|| RpcFacts {
                    xid: r.xid,
                    rtt: (r.rtt_us != 0).then(|| Duration::from_micros(u64::from(r.rtt_us))),
                }),
            })
        })
        .collect()
}

/// `CLOCK_MONOTONIC` in ns: the clock of `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

type RowKey = (u64, u32, Op, u16, u16);

/// The row of one key, made empty on first use.
fn entry<'a>(rows: &'a mut BTreeMap<RowKey, IoRow>, key: &IoKey, op: Op, err: u16) -> &'a mut IoRow {
    rows.entry((key.cgroup, key.dev, op, key.dir, err))
        .or_insert_with(|| IoRow::new(key.cgroup, key.dev, op, err).with_dir(key.dir))
}

/// Rows from histogram and counter entries: the map layout (flags, per-CPU shares, named
/// operation ids) turned into typed rows. Keys of unknown operation ids are skipped.
fn rows_from(
    names: &HashMap<u16, ProcName>,
    hists: impl IntoIterator<Item = (IoKey, Histogram)>,
    counters: impl IntoIterator<Item = (IoKey, IoCounters)>,
) -> Vec<IoRow> {
    let op_of = |raw: u16| op_named(raw, names);
    let mut rows: BTreeMap<RowKey, IoRow> = BTreeMap::new();
    for (key, h) in hists {
        let Some(op) = op_of(key.op) else {
            continue;
        };
        let r = entry(&mut rows, &key, op, key.err);
        if key.op & OP_RTT != 0 {
            r.rtt = Some(h);
        } else {
            r.completed_mut().latency = h;
        }
    }
    for (key, sum) in counters {
        let Some(op) = op_of(key.op) else {
            continue;
        };
        if key.op & OP_RETRANS != 0 {
            entry(&mut rows, &key, op, 0).retransmits += sum.ops;
            continue;
        }
        let c = entry(&mut rows, &key, op, key.err).completed_mut();
        c.ops += sum.ops;
        c.bytes += sum.bytes;
    }
    rows.into_values().collect()
}

/// The per-CPU shares of one counter entry, added up.
fn total(per_cpu: &[IoCounters]) -> IoCounters {
    per_cpu.iter().fold(IoCounters::default(), |t, c| IoCounters { ops: t.ops + c.ops, bytes: t.bytes + c.bytes })
}

/// Reads the counter and histogram maps into rows; counts the counter keys in use.
pub(crate) fn read_rows(
    ebpf: &Ebpf,
    names: &HashMap<u16, ProcName>,
    health: &mut ProbeHealth,
) -> Result<Vec<IoRow>, ProbeError> {
    let counters: PerCpuHashMap<&MapData, IoKey, IoCounters> = open_map(ebpf, maps::IO_COUNTERS)?;
    let hists: BpfHashMap<&MapData, IoKey, IoHist> = open_map(ebpf, maps::IO_HIST)?;
    // Histograms first, in one pass: operation latencies and, flagged, round-trip times.
    // Count, buckets and sum come from one entry, so they agree (OTLP requires count =
    // bucket total). The ops counters are another map, read a moment later: while I/O
    // runs, ops and the histogram count can differ by what completed in between. Without
    // a histogram (map full) no latency is reported; the drop is counted in
    // `histogram_map_full`.
    let mut hist_items = Vec::new();
    for item in &hists {
        let (key, h) = item.map_err(|e| map_err(maps::IO_HIST, e))?;
        hist_items.push((key, Histogram::from(&h)));
    }
    health.hist_used = hist_items.len() as u64;
    let mut counter_items = Vec::new();
    for item in &counters {
        let (key, per_cpu) = item.map_err(|e| map_err(maps::IO_COUNTERS, e))?;
        health.series_used += 1;
        counter_items.push((key, total(&per_cpu)));
    }
    Ok(rows_from(names, hist_items, counter_items))
}

/// RPCs in flight per device, from the data path's in-flight map and sunrpc's task map: the
/// larger count, the older age.
pub(crate) fn read_inflight(ebpf: &Ebpf, health: &mut ProbeHealth) -> Result<Vec<Inflight>, ProbeError> {
    let inflight: BpfHashMap<&MapData, InflightKey, InflightVal> = open_map(ebpf, maps::INFLIGHT)?;
    let now = monotonic_ns();
    let mut per_dev: BTreeMap<u32, Inflight> = BTreeMap::new();
    let (mut entries, mut tasks_n) = (0, 0);
    for (k, v) in inflight.iter().filter_map(Result::ok) {
        entries += 1;
        // A record whose RPCs all completed is not in flight (one being deleted).
        if v.pending == 0 {
            continue;
        }
        let age = Duration::from_nanos(now.saturating_sub(v.start_ns));
        let e = per_dev.entry(k.dev).or_insert(Inflight { dev: k.dev, count: 0, oldest: Duration::ZERO });
        e.count += 1;
        e.oldest = e.oldest.max(age);
    }
    let tasks: BpfHashMap<&MapData, RpcTaskKey, RpcTask> = open_map(ebpf, maps::RPC_TASKS)?;
    let mut rpc_per_dev: BTreeMap<u32, (u64, Duration)> = BTreeMap::new();
    for (_, t) in tasks.iter().filter_map(Result::ok).inspect(|_| tasks_n += 1).filter(|(_, t)| t.state == RPC_RUNNING)
    {
        let e = rpc_per_dev.entry(t.dev).or_default();
        e.0 += 1;
        e.1 = e.1.max(Duration::from_nanos(now.saturating_sub(t.start_ns)));
    }
    for (dev, (count, oldest)) in rpc_per_dev {
        let e = per_dev.entry(dev).or_insert(Inflight { dev, count: 0, oldest: Duration::ZERO });
        e.count = e.count.max(count);
        e.oldest = e.oldest.max(oldest);
    }
    health.inflight_used = (entries, tasks_n);
    Ok(per_dev.into_values().collect())
}

/// The cumulative health counters, by name.
pub(crate) fn read_health(ebpf: &Ebpf) -> Result<Vec<(&'static str, u64)>, ProbeError> {
    let health: PerCpuArray<&MapData, u64> = open_map(ebpf, maps::HEALTH)?;
    Health::ALL
        .iter()
        .map(|h| {
            let total = health.get(&(*h as u32), 0).map_err(|e| map_err(maps::HEALTH, e))?.iter().sum::<u64>();
            Ok((h.name(), total))
        })
        .collect()
}

/// Takes keys out of hash maps with their final values: lookup-and-delete where the kernel
/// has it (5.14+, learned on first use), else a lookup, then a delete.
#[derive(Debug, Default)]
pub(crate) struct Deleter {
    unsupported: bool,
}

impl Deleter {
    /// One key's final value, one `V` per slot (per-CPU maps: one per possible CPU); `None`
    /// when the key was gone already. Before 5.14, increments between the lookup and the
    /// delete (a completion racing the removal of a cgroup's keys) are lost.
    fn take<K: aya::Pod, V: aya::Pod + Default + Clone>(
        &mut self,
        fd: BorrowedFd<'_>,
        key: &K,
        slots: usize,
    ) -> std::io::Result<Option<Vec<V>>> {
        let mut values = vec![V::default(); slots];
        let key = std::ptr::from_ref(key).cast::<u8>();
        let value = values.as_mut_ptr().cast::<u8>();
        if !self.unsupported {
            // SAFETY: `key` is a key of the map behind `fd`; `values` holds `slots` values of
            // the map's value type, 8-byte multiples each (asserted in the ABI).
            match unsafe { sys::lookup_and_delete(fd, key, value) }? {
                sys::Taken::Value => return Ok(Some(values)),
                sys::Taken::Absent => return Ok(None),
                sys::Taken::Unsupported => {
                    tracing::info!(
                        "this kernel cannot look up and delete a map key at once (before 5.14): a removed cgroup's keys are read, then deleted"
                    );
                    self.unsupported = true;
                }
            }
        }
        // SAFETY: as above.
        if unsafe { sys::lookup(fd, key, value) }? == sys::Taken::Absent {
            return Ok(None);
        }
        // SAFETY: as above.
        unsafe { sys::delete(fd, key) }?;
        Ok(Some(values))
    }
}

/// Entries in use in a hash map, and its capacity.
pub(crate) fn fill(ebpf: &Ebpf, name: &'static str) -> Result<(u64, u64), ProbeError> {
    let Some(aya::maps::Map::HashMap(map) | aya::maps::Map::PerCpuHashMap(map) | aya::maps::Map::LruHashMap(map)) =
        ebpf.map(name)
    else {
        return Err(map_err(name, aya::maps::MapError::InvalidName { name: name.to_owned() }));
    };
    let info = map.info().map_err(|e| map_err(name, e))?;
    let capacity = u64::from(info.max_entries());
    let used = sys::count_keys(map.fd().as_fd(), info.key_size() as usize, capacity)
        .map_err(|e| map_err(name, aya::maps::MapError::IoError(e)))?;
    Ok((used, capacity))
}

/// The fd of a hash or per-CPU hash map.
fn map_fd<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<BorrowedFd<'a>, ProbeError> {
    match ebpf.map(name) {
        Some(aya::maps::Map::HashMap(m) | aya::maps::Map::PerCpuHashMap(m)) => Ok(m.fd().as_fd()),
        _ => Err(map_err(name, aya::maps::MapError::InvalidName { name: name.to_owned() })),
    }
}

/// Deletes every counter and histogram key of the given cgroups and returns their final
/// values as rows: what their series end with, increments up to the deletion included.
pub(crate) fn forget_cgroups(
    ebpf: &Ebpf,
    gone: &HashSet<u64>,
    names: &HashMap<u16, ProcName>,
    deleter: &mut Deleter,
) -> Result<Vec<IoRow>, ProbeError> {
    const POSSIBLE: &str = "/sys/devices/system/cpu/possible";
    let cpus = aya::util::nr_cpus().map_err(|(_, source)| ProbeError::Io { path: POSSIBLE.into(), source })?;
    let io = |name: &'static str| move |e: std::io::Error| map_err(name, aya::maps::MapError::IoError(e));
    let counters: PerCpuHashMap<&MapData, IoKey, IoCounters> = open_map(ebpf, maps::IO_COUNTERS)?;
    let keys: Vec<IoKey> = counters.keys().filter_map(Result::ok).filter(|k| gone.contains(&k.cgroup)).collect();
    let fd = map_fd(ebpf, maps::IO_COUNTERS)?;
    let mut counter_items = Vec::with_capacity(keys.len());
    for k in keys {
        if let Some(per_cpu) = deleter.take::<_, IoCounters>(fd, &k, cpus).map_err(io(maps::IO_COUNTERS))? {
            counter_items.push((k, total(&per_cpu)));
        }
    }
    let hists: BpfHashMap<&MapData, IoKey, IoHist> = open_map(ebpf, maps::IO_HIST)?;
    let keys: Vec<IoKey> = hists.keys().filter_map(Result::ok).filter(|k| gone.contains(&k.cgroup)).collect();
    let fd = map_fd(ebpf, maps::IO_HIST)?;
    let mut hist_items = Vec::with_capacity(keys.len());
    for k in keys {
        if let Some(h) = deleter.take::<_, IoHist>(fd, &k, 1).map_err(io(maps::IO_HIST))? {
            hist_items.push((k, Histogram::from(&h[0])));
        }
    }
    Ok(rows_from(names, hist_items, counter_items))
}

/// Deletes the per-thread call arguments (`write_args`, `read_args`) of threads that no longer
/// exist under `proc_root`: a return probe the kernel missed leaves its entry behind, and
/// only the same thread's next call would overwrite it. Returns how many were deleted.
pub(crate) fn sweep_call_args(ebpf: &mut Ebpf, proc_root: &std::path::Path) -> Result<usize, ProbeError> {
    let mut removed = 0;
    for name in [maps::WRITE_ARGS, maps::READ_ARGS] {
        let mut args: BpfHashMap<&mut MapData, u64, u64> = open_map_mut(ebpf, name)?;
        let dead: Vec<u64> = args
            .keys()
            .filter_map(Result::ok)
            .filter(|id| {
                let (process, thread) = (id >> 32, id & 0xffff_ffff);
                !proc_root.join(format!("{process}/task/{thread}")).exists()
            })
            .collect();
        for id in &dead {
            if args.remove(id).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Deletes in-flight and running RPC task records that started before `cutoff_ns`
/// (monotonic), and the records of RPCs that ended (or were no NFS RPCs) and started before
/// `settled_ns`: those are kept only for the round-trip time that follows an end.
pub(crate) fn sweep_inflight(ebpf: &mut Ebpf, cutoff_ns: u64, settled_ns: u64) -> Result<usize, ProbeError> {
    let mut inflight: BpfHashMap<&mut MapData, InflightKey, InflightVal> = open_map_mut(ebpf, maps::INFLIGHT)?;
    let stale: Vec<InflightKey> =
        inflight.iter().filter_map(Result::ok).filter(|(_, v)| v.start_ns < cutoff_ns).map(|(k, _)| k).collect();
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
        .filter(|(_, t)| if t.state == RPC_RUNNING { t.start_ns < cutoff_ns } else { t.start_ns < settled_ns })
        .map(|(k, _)| k)
        .collect();
    for k in &stale {
        if tasks.remove(k).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Slow RPCs still waiting for `rpc_stats_latency` that ended before `cutoff_ns`: it follows
/// the end within microseconds, so these never had a request to report (a task that never
/// got a slot). Taken out to be reported without xid; whoever deletes an entry reports it,
/// so a late event and this sweep never both do.
pub(crate) fn take_stale_slow(ebpf: &mut Ebpf, cutoff_ns: u64) -> Result<Vec<nasflow_probe_bpf::SlowOp>, ProbeError> {
    let mut pending: BpfHashMap<&mut MapData, RpcTaskKey, nasflow_probe_bpf::SlowOp> =
        open_map_mut(ebpf, maps::SLOW_PENDING)?;
    let stale: Vec<(RpcTaskKey, nasflow_probe_bpf::SlowOp)> = pending
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, s)| s.start_ns.saturating_add(s.duration_ns) < cutoff_ns)
        .collect();
    Ok(stale.into_iter().filter(|(k, _)| pending.remove(k).is_ok()).map(|(_, s)| s).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_ops_are_named_placed_on_the_wall_clock_and_carry_their_file() {
        let raw = |op: u16, start_ns: u64, fileid: u64| nasflow_probe_bpf::SlowOp {
            cgroup: 42,
            start_ns,
            duration_ns: 750_000_000,
            bytes: if fileid == 0 { 0 } else { 65_536 },
            fileid,
            offset: 1 << 20,
            dev: 0x0030_0001,
            op,
            err: 5,
            dir: 2,
            has_rpc: u16::from(fileid != 0),
            xid: 0x1234_abcd,
            rtt_us: if fileid == 0 { 0 } else { 2_500 },
            pad: 0,
        };
        let getattr = nasflow_probe_bpf::OP_RPC_BASE + 3;
        let names = HashMap::from([(getattr, ProcName::new("GETATTR"))]);
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let records = [
            raw(nasflow_probe_bpf::OP_WRITE, 9_000_000_000, 77),
            raw(getattr, 9_500_000_000, 0),
            raw(nasflow_probe_bpf::OP_RPC_BASE + 9, 9_600_000_000, 0),
        ];
        let ops = slow_ops_from(&records, &names, wall, 10_000_000_000);
        assert_eq!(ops.len(), 2, "an unknown operation id is skipped");
        assert_eq!(ops[0].op, Op::Write);
        assert_eq!(ops[0].start, wall - Duration::from_secs(1), "started 1 s before the read");
        assert_eq!(ops[0].duration, Duration::from_millis(750));
        assert_eq!((ops[0].file, ops[0].bytes, ops[0].err, ops[0].dir), (Some((77, 1 << 20)), 65_536, 5, 2));
        assert_eq!((ops[0].cgroup, ops[0].dev), (42, 0x0030_0001));
        assert_eq!(ops[1].op, Op::Rpc(ProcName::new("GETATTR")));
        assert_eq!((ops[1].file, ops[1].start), (None, wall - Duration::from_millis(500)));
        assert_eq!(ops[0].rpc, Some(RpcFacts { xid: 0x1234_abcd, rtt: Some(Duration::from_micros(2_500)) }));
        assert_eq!(ops[1].rpc, None, "no rpc_stats_latency seen");
        let bytes: [u8; 72] = {
            let mut b = [0u8; 72];
            b[0] = 42;
            b
        };
        assert_eq!(nasflow_probe_bpf::SlowOp::from_bytes(&bytes).map(|r| r.cgroup), Some(42));
        assert!(nasflow_probe_bpf::SlowOp::from_bytes(&bytes[..71]).is_none());
    }

    #[test]
    fn histogram_count_is_its_slots_and_minus_detects_resets() {
        let mut a = Histogram::default();
        a.slots[3] = 2;
        a.slots[20] = 1;
        a.sum_ns = 900;
        assert_eq!(a.count(), 3);
        let mut b = a.clone();
        b.add(&a);
        assert_eq!((b.count(), b.sum_ns), (6, 1800));
        assert_eq!(b.minus(&a), Some(a.clone()));
        assert_eq!(a.minus(&b), None, "a histogram that went down was reset");
    }

    #[test]
    fn a_row_says_whether_anything_completed() {
        let wire = IoRow::new(7, 1, Op::Read, 0).with_wire(2, None);
        assert_eq!((wire.completed.is_none(), wire.ops(), wire.bytes()), (true, 0, 0));
        let done = IoRow::new(7, 1, Op::Read, 0).with_completed(3, 4096, Histogram::default());
        assert_eq!((done.ops(), done.bytes(), done.dev_string()), (3, 4096, "0:1".to_owned()));
    }

    #[test]
    fn keys_below_different_directories_are_different_rows() {
        let key = |op: u16, err: u16, dir: u16| IoKey { cgroup: 7, dev: 1, op, err, dir, pad: [0; 3] };
        let c = |ops, bytes| IoCounters { ops, bytes };
        let counters = vec![
            (key(nasflow_probe_bpf::OP_WRITE, 0, 0), c(1, 100)),
            (key(nasflow_probe_bpf::OP_WRITE, 0, 2), c(2, 200)),
            (key(nasflow_probe_bpf::OP_WRITE, 5, 2), c(1, 0)),
            (key(nasflow_probe_bpf::OP_WRITE | nasflow_probe_bpf::OP_RETRANS, 0, 2), c(4, 0)),
        ];
        let rows = rows_from(&HashMap::new(), Vec::new(), counters);
        let got: Vec<(u16, u16, u64, u64, u64)> =
            rows.iter().map(|r| (r.dir, r.err, r.ops(), r.bytes(), r.retransmits)).collect();
        assert_eq!(got, [(0, 0, 1, 100, 0), (2, 0, 2, 200, 4), (2, 5, 1, 0, 0)]);
    }
}

//! nasflow's BPF programs, as ELF objects built by clang, their table, and the kernel/user
//! ABI generated from `bpf/nasflow.h`. Nothing else in nasflow knows these byte layouts.

/// Keeps an embedded object 8-byte aligned, as the ELF parser expects.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static PROBE_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/nasflow.bpf.o")));
static NOOP_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/noop.bpf.o")));
static SERVER_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/nfsd.bpf.o")));
static COMPAT_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/nasflow-compat.bpf.o")));

/// The NFS client probe: counters, histograms and attribution (`bpf/nasflow.bpf.c`).
#[must_use]
pub fn probe_object() -> &'static [u8] {
    &PROBE_OBJECT.0
}

/// The probe built without fetching atomics (compare-and-swap, fetch-and-add), which kernels
/// before 5.12 refuse: for them, with the two small differences `nasflow.bpf.c` states.
#[must_use]
pub fn compat_object() -> &'static [u8] {
    &COMPAT_OBJECT.0
}

/// The NFS server probe (`bpf/nfsd.bpf.c`): what nfsd serves per export and client. It uses
/// no fetching atomics, so one build serves every kernel.
#[must_use]
pub fn server_object() -> &'static [u8] {
    &SERVER_OBJECT.0
}

/// The first kernel with fetching atomics in BPF (`BPF_FETCH`, `BPF_CMPXCHG`).
pub const FETCH_ATOMICS_SINCE: (u32, u32) = (5, 12);

/// Empty programs on the same tracepoints, the baseline for the kernel cost benchmark.
#[must_use]
pub fn noop_object() -> &'static [u8] {
    &NOOP_OBJECT.0
}

/// The generated mirror of `bpf/nasflow.h` (bindgen, in build.rs): every shared struct with
/// compile-time asserts of its size and field offsets, every enum value and `#define`.
#[allow(
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    clippy::pedantic,
    clippy::unreadable_literal,
    unsafe_op_in_unsafe_fn
)]
pub mod abi {
    include!(concat!(env!("OUT_DIR"), "/abi.rs"));
}

pub mod programs;

#[cfg(test)]
mod btf_check;

/// An ABI number as the `u16` the kernel stores it in; refused at compile time if it does not
/// fit.
#[allow(clippy::cast_possible_truncation)] // checked by the assert
const fn u16_of(v: u32) -> u16 {
    assert!(v <= u16::MAX as u32);
    v as u16
}

/// Latency histogram slots per key; see `NASFLOW_HIST_SLOTS`.
pub const HIST_SLOTS: usize = abi::NASFLOW_HIST_SLOTS as usize;

/// `NASFLOW_RECORD_BYTES`: raw tracepoint bytes the programs read; every field must end
/// within them.
pub const RECORD_BYTES: u16 = u16_of(abi::NASFLOW_RECORD_BYTES);

/// `NASFLOW_HINT_EVENTS`: the nfs events that hint which mount a thread works on.
pub const HINT_EVENT_COUNT: usize = abi::NASFLOW_HINT_EVENTS as usize;

/// The kernel's latency slot of a sample, as `latency_slot()` in `bpf/nasflow.bpf.c` computes
/// it: the sample in units of 2^-30 s (`ns + ns * 73741824 / 10^9`, capped at 2^37 ns), then
/// slot 0 for at most 1 unit, else `floor(log2(units - 1)) + 1`, at most `HIST_SLOTS - 1`.
/// Slot `s >= 1` thus holds (2^(s-31), 2^(s-30)] seconds. Kept beside the ABI so user space
/// and tests agree with the kernel on bucket edges.
#[must_use]
pub fn latency_slot(ns: u64) -> usize {
    let ns = ns.min(1 << 37);
    let units = ns + ns * 73_741_824 / 1_000_000_000;
    if units <= 1 {
        return 0;
    }
    let slot = (units - 1).ilog2() as usize + 1;
    slot.min(HIST_SLOTS - 1)
}

/// Upper bound, in seconds, of kernel latency slot `slot`: 2^(slot-30).
#[must_use]
pub fn latency_slot_upper_bound_s(slot: usize) -> f64 {
    #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)] // slot < 40
    2f64.powi(slot as i32 - 30)
}

/// Map names, as in the C source.
pub mod maps {
    /// Per-CPU counters per [`IoKey`](super::IoKey).
    pub const IO_COUNTERS: &str = "io_counters";
    /// Shared latency histograms per [`IoKey`](super::IoKey).
    pub const IO_HIST: &str = "io_hist";
    /// Per-CPU probe health counters indexed by [`Health`](super::Health).
    pub const HEALTH: &str = "health";
    /// RPCs between start and completion.
    pub const INFLIGHT: &str = "inflight";
    /// Dirtying cgroups per file, for writeback attribution.
    pub const DIRTY: &str = "dirty";
    /// `nfs_file_write` arguments between entry and return.
    pub const WRITE_ARGS: &str = "write_args";
    /// `nfs_file_read` arguments between entry and return.
    pub const READ_ARGS: &str = "read_args";
    /// RPC tasks from submission to end, per [`RpcTaskKey`](super::RpcTaskKey).
    pub const RPC_TASKS: &str = "rpc_tasks";
    /// Procedure name ([`ProcName`](super::ProcName)) to operation id.
    pub const PROC_IDS: &str = "proc_ids";
    /// sunrpc client id to NFS super block device.
    pub const RPC_CLIENTS: &str = "rpc_clients";
    /// Watched directories: [`DirKey`](super::DirKey) to directory id.
    pub const WATCHED_DIRS: &str = "watched_dirs";
    /// Devices with watched directories (device to their count).
    pub const WATCHED_DEVS: &str = "watched_devs";
    /// Per-thread directory hints of metadata operations.
    pub const THREAD_DIR_HINTS: &str = "thread_dir_hints";
    /// Ring buffer of [`SlowOp`](super::SlowOp) records.
    pub const SLOW_OPS: &str = "slow_ops";
    /// Slow RPCs waiting for `rpc_stats_latency`: [`RpcTaskKey`](super::RpcTaskKey) to
    /// [`SlowOp`](super::SlowOp).
    pub const SLOW_PENDING: &str = "slow_pending";
}

/// Map names of the server probe (`nfsd.bpf.o`).
pub mod server_maps {
    /// `svc_counters`: per-CPU operations and bytes per server key.
    pub const COUNTERS: &str = "svc_counters";
    /// `svc_hist`: latency histograms per server key.
    pub const HIST: &str = "svc_hist";
    /// `svc_health`: the server health counters.
    pub const HEALTH: &str = "svc_health";
    /// `svc_op_ids`: NFSv4 operation names to numbers.
    pub const OP_IDS: &str = "svc_op_ids";
    /// `svc_threads`: the request each nfsd thread serves.
    pub const THREADS: &str = "svc_threads";
}

/// Names of the server probe's `const volatile` globals.
pub mod server_globals {
    /// `svc_layout`: the server events' field layouts.
    pub const LAYOUT: &str = "svc_layout";
    /// `want_latency`: whether histograms are updated.
    pub const WANT_LATENCY: &str = "want_latency";
}

/// `const volatile` globals set before load.
pub mod globals {
    /// [`Layout`](super::Layout) of the six tracepoints.
    pub const LAYOUT: &str = "layout";
    /// `u8`: non-zero on cgroup v1 hosts.
    pub const CGROUP_V1: &str = "cgroup_v1";
    /// `u64`: id of the root cgroup.
    pub const ROOT_CGROUP: &str = "root_cgroup";
    /// `u32`: the architecture's `O_DIRECT`.
    pub const O_DIRECT_FLAG: &str = "o_direct_flag";
    /// `u32`: the architecture's `O_APPEND`.
    pub const O_APPEND_FLAG: &str = "o_append_flag";
    /// [`RpcLayout`](super::RpcLayout) of the sunrpc and hint tracepoints.
    pub const RPC_LAYOUT: &str = "rpc_layout";
    /// `u16`: the first id for procedure names not in [`KNOWN_PROCS`](super::KNOWN_PROCS).
    pub const FIRST_DYNAMIC_PROC: &str = "first_dynamic_proc";
    /// `u8`: non-zero to fill operation latency histograms.
    pub const WANT_LATENCY: &str = "want_latency";
    /// `u8`: non-zero to count application bytes.
    pub const WANT_APP_BYTES: &str = "want_app_bytes";
    /// `u8`: non-zero to find each operation's watched directory.
    pub const WANT_DIRS: &str = "want_dirs";
    /// `u8`: zero to leave procedure names not loaded uncounted (`--operations`).
    pub const COUNT_NEW_PROCS: &str = "count_new_procs";
    /// `u8`: which argument of `nfs_create`/`nfs_mkdir` is the dentry (2 before 5.12, else 3).
    pub const CREATE_DENTRY_ARG: &str = "create_dentry_arg";
    /// `[u16; DIR_META_SLOTS]`: the operation ids of the directory hint slots
    /// ([`DIR_SLOT_NAMES`](super::DIR_SLOT_NAMES)).
    pub const DIR_SLOT_OPS: &str = "dir_slot_ops";
    /// `u64`: operations at least this many nanoseconds long are reported; 0 for none.
    pub const SLOW_OP_NS: &str = "slow_op_ns";
    /// `u64`: slow operations reported per second at most.
    pub const SLOW_OPS_PER_SEC: &str = "slow_ops_per_sec";
    /// `u8`: non-zero when `rpc_stats_latency` is attached, so slow RPCs wait for its xid and
    /// round trip.
    pub const SLOW_WAITS_FOR_RPC: &str = "slow_waits_for_rpc";
}

/// The procedures of the directory hint slots, in `enum nasflow_dir_slot` order.
pub const DIR_SLOT_NAMES: [&str; DIR_META_SLOTS] =
    ["GETATTR", "LOOKUP", "OPEN", "CREATE", "REMOVE", "MKDIR", "RMDIR", "SETATTR"];

/// `NASFLOW_DIR_META_SLOTS`.
pub const DIR_META_SLOTS: usize = abi::NASFLOW_DIR_META_SLOTS as usize;

/// `NASFLOW_PROC_NAME`: room for a procedure name, NUL included.
pub const PROC_NAME_LEN: usize = abi::NASFLOW_PROC_NAME as usize;

/// `struct nasflow_proc_name`: an RPC procedure name as the kernel spells it, NUL-padded.
/// Also what [`Op::Rpc`] carries, so an operation stays a small `Copy` value.
pub type ProcName = abi::nasflow_proc_name;

impl ProcName {
    /// The name; longer names are cut at [`PROC_NAME_LEN`]` - 1` bytes.
    #[must_use]
    pub fn new(name: &str) -> Self {
        let mut out = [0u8; PROC_NAME_LEN];
        let n = name.len().min(PROC_NAME_LEN - 1);
        out[..n].copy_from_slice(&name.as_bytes()[..n]);
        Self { name: out }
    }

    /// The name up to its first NUL; `?` when the kernel gave bytes that are not UTF-8.
    #[must_use]
    pub fn as_str(&self) -> &str {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(PROC_NAME_LEN);
        std::str::from_utf8(&self.name[..end]).unwrap_or("?")
    }
}

impl core::fmt::Debug for ProcName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operation was: the data RPCs and application bytes by their fixed numbers in
/// `enum nasflow_op`, every other NFS RPC by its procedure name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// NFS READ.
    Read,
    /// NFS WRITE.
    Write,
    /// NFS COMMIT.
    Commit,
    /// Bytes an application read through `nfs_file_read` (page-cache hits included).
    AppRead,
    /// Bytes an application wrote through `nfs_file_write`.
    AppWrite,
    /// Any other NFS RPC (GETATTR, LOOKUP, OPEN, SEQUENCE, ...), v3 procedure or v4 operation.
    Rpc(ProcName),
}

/// `NASFLOW_OP_READ`.
pub const OP_READ: u16 = u16_of(abi::NASFLOW_OP_READ);
/// `NASFLOW_OP_WRITE`.
pub const OP_WRITE: u16 = u16_of(abi::NASFLOW_OP_WRITE);
/// `NASFLOW_OP_COMMIT`.
pub const OP_COMMIT: u16 = u16_of(abi::NASFLOW_OP_COMMIT);
/// `NASFLOW_OP_APP_READ`.
pub const OP_APP_READ: u16 = u16_of(abi::NASFLOW_OP_APP_READ);
/// `NASFLOW_OP_APP_WRITE`.
pub const OP_APP_WRITE: u16 = u16_of(abi::NASFLOW_OP_APP_WRITE);
/// `NASFLOW_OP_RPC_UNNAMED`: an RPC whose name found the name table full.
pub const OP_RPC_UNNAMED: u16 = u16_of(abi::NASFLOW_OP_RPC_UNNAMED);
/// `NASFLOW_OP_RPC_BASE`: first id handed out to a procedure name.
pub const OP_RPC_BASE: u16 = u16_of(abi::NASFLOW_OP_RPC_BASE);
/// `NASFLOW_OP_RTT`: the key's histogram holds round-trip times.
pub const OP_RTT: u16 = u16_of(abi::NASFLOW_OP_RTT);
/// `NASFLOW_OP_RETRANS`: the key's counter ops are retransmissions.
pub const OP_RETRANS: u16 = u16_of(abi::NASFLOW_OP_RETRANS);
/// `NASFLOW_OP_MASK`: the operation without its flags.
pub const OP_MASK: u16 = u16_of(abi::NASFLOW_OP_MASK);
/// `NASFLOW_OP_SKIP`: the id of a procedure `--operations` leaves out.
pub const OP_SKIP: u16 = u16_of(abi::NASFLOW_OP_SKIP);

/// Procedure names user space gives fixed ids before attaching: the data RPCs the nfs
/// tracepoints count with their bytes (`READ_PLUS` is NFSv4.2's READ).
pub const PRELOADED_PROCS: [(&str, u16); 4] =
    [("READ", OP_READ), ("READ_PLUS", OP_READ), ("WRITE", OP_WRITE), ("COMMIT", OP_COMMIT)];

/// Every NFS procedure name the kernel's NFS client sends (v3 procedures, v4.x operations as
/// `nfs4_procedures` names them), loaded before attaching with ids from [`OP_RPC_BASE`] on,
/// so the kernel only looks names up. The data RPCs are in [`PRELOADED_PROCS`].
pub const KNOWN_PROCS: &[&str] = &[
    // NFSv3 (RFC 1813).
    "NULL",
    "GETATTR",
    "SETATTR",
    "LOOKUP",
    "ACCESS",
    "READLINK",
    "CREATE",
    "MKDIR",
    "SYMLINK",
    "MKNOD",
    "REMOVE",
    "RMDIR",
    "RENAME",
    "LINK",
    "READDIR",
    "READDIRPLUS",
    "FSSTAT",
    "FSINFO",
    "PATHCONF",
    // NFSv4.0-4.2 client procedures (fs/nfs/nfs4xdr.c).
    "OPEN",
    "OPEN_CONFIRM",
    "OPEN_NOATTR",
    "OPEN_DOWNGRADE",
    "CLOSE",
    "RENEW",
    "SETCLIENTID",
    "SETCLIENTID_CONFIRM",
    "LOCK",
    "LOCKT",
    "LOCKU",
    "LOOKUP_ROOT",
    "STATFS",
    "SERVER_CAPS",
    "DELEGRETURN",
    "GETACL",
    "SETACL",
    "FS_LOCATIONS",
    "RELEASE_LOCKOWNER",
    "SECINFO",
    "FSID_PRESENT",
    "EXCHANGE_ID",
    "CREATE_SESSION",
    "DESTROY_SESSION",
    "SEQUENCE",
    "GET_LEASE_TIME",
    "RECLAIM_COMPLETE",
    "LAYOUTGET",
    "GETDEVICEINFO",
    "LAYOUTCOMMIT",
    "LAYOUTRETURN",
    "SECINFO_NO_NAME",
    "TEST_STATEID",
    "FREE_STATEID",
    "GETDEVICELIST",
    "BIND_CONN_TO_SESSION",
    "DESTROY_CLIENTID",
    "SEEK",
    "ALLOCATE",
    "DEALLOCATE",
    "LAYOUTSTATS",
    "CLONE",
    "COPY",
    "OFFLOAD_CANCEL",
    "LOOKUPP",
    "LAYOUTERROR",
    "COPY_NOTIFY",
    "GETXATTR",
    "SETXATTR",
    "LISTXATTRS",
    "REMOVEXATTR",
];

/// The id of the `i`-th of [`KNOWN_PROCS`].
#[must_use]
pub fn known_proc_id(i: usize) -> u16 {
    OP_RPC_BASE + u16::try_from(i).unwrap_or(u16::MAX - OP_RPC_BASE)
}

impl Op {
    /// The operation for a fixed kernel number (flags masked off); `None` for the ids of
    /// named RPCs, which the `proc_ids` map translates.
    #[must_use]
    pub fn from_raw(raw: u16) -> Option<Self> {
        match raw & OP_MASK {
            OP_READ => Some(Self::Read),
            OP_WRITE => Some(Self::Write),
            OP_COMMIT => Some(Self::Commit),
            OP_APP_READ => Some(Self::AppRead),
            OP_APP_WRITE => Some(Self::AppWrite),
            OP_RPC_UNNAMED => Some(Self::Rpc(ProcName::new("UNNAMED"))),
            _ => None,
        }
    }

    /// The name the kernel and the NFS RFCs give it.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Commit => "COMMIT",
            Self::AppRead => "APP_READ",
            Self::AppWrite => "APP_WRITE",
            Self::Rpc(name) => name.as_str(),
        }
    }

    /// Whether this counts RPCs (with latency), rather than application bytes.
    #[must_use]
    pub fn is_rpc(&self) -> bool {
        !matches!(self, Self::AppRead | Self::AppWrite)
    }
}

/// `struct nasflow_io_key`: who (cgroup v2 id or v1 memory cgroup kernfs id), where (NFS
/// super block, `MAJOR << 20 | MINOR`), what ([`Op`] number and flags), how it ended
/// (positive errno, 0 for success).
pub type IoKey = abi::nasflow_io_key;
/// `struct nasflow_io_counters`, one CPU's share: completed operations, and READ bytes
/// received or WRITE bytes sent.
pub type IoCounters = abi::nasflow_io_counters;
/// `struct nasflow_io_hist`: log2 latency slots and the sum of the samples in ns.
pub type IoHist = abi::nasflow_io_hist;
/// `struct nasflow_inflight_key`: an RPC between start and completion.
pub type InflightKey = abi::nasflow_inflight_key;
/// `struct nasflow_inflight_val`: who started the RPC, when, and how many share the entry.
pub type InflightVal = abi::nasflow_inflight_val;
/// `struct nasflow_dir_key`: a watched directory as (NFS super block dev, inode number).
pub type DirKey = abi::nasflow_dir_key;

/// Watched directory ids run from 1 to this (`NASFLOW_MAX_DIRS`); 0 is none.
pub const MAX_DIRS: u16 = u16_of(abi::NASFLOW_MAX_DIRS);
/// Directory levels a walk goes up from a file (`NASFLOW_DIR_DEPTH`).
pub const DIR_DEPTH: u16 = u16_of(abi::NASFLOW_DIR_DEPTH);
/// `struct nasflow_field`: a tracepoint field's place in the raw record (size 0: unused).
pub type Field = abi::nasflow_field;
/// `struct nasflow_tp_fields`: the fields read from one tracepoint.
pub type TpFields = abi::nasflow_tp_fields;
/// `struct nasflow_layout`: field layouts of the six data-path tracepoints.
pub type Layout = abi::nasflow_layout;
/// `struct nasflow_rpc_task_key`: sunrpc's client and task ids.
pub type RpcTaskKey = abi::nasflow_rpc_task_key;
/// `struct nasflow_rpc_task`: who caused an RPC task and where it goes.
pub type RpcTask = abi::nasflow_rpc_task;
/// `struct nasflow_rpc_layout`: fields of the sunrpc events and of the hint events.
pub type RpcLayout = abi::nasflow_rpc_layout;
/// `NASFLOW_SLOW_RING_BYTES`: the slow-op ring buffer's size.
pub const SLOW_RING_BYTES: u32 = abi::NASFLOW_SLOW_RING_BYTES;

/// `struct nasflow_slow_op`: one operation past the slow-op threshold, from the ring buffer.
pub type SlowOp = abi::nasflow_slow_op;

impl SlowOp {
    /// The record from the ring buffer's bytes; `None` when they are not one record.
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != std::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: the length matches, and any bytes are a valid value of this plain struct
        // of integers (see the `Pod` impls below); the read is unaligned-safe.
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
    }
}

/// `struct nasflow_svc_key`: export (fsid), client address, version, operation, status.
pub type SvcKey = abi::nasflow_svc_key;
/// `struct nasflow_svc_counters`: one CPU's served operations and payload bytes.
pub type SvcCounters = abi::nasflow_svc_counters;
/// `struct nasflow_svc_op_name`: an NFSv4 operation name as nfsd's events spell it.
pub type SvcOpName = abi::nasflow_svc_op_name;
/// `struct nasflow_svc_layout`: the server events' field layouts.
pub type SvcLayout = abi::nasflow_svc_layout;
/// `fsid_type` of operations that used no file handle.
pub const FSID_NONE: u8 = 0xff;
/// `op` of an NFSv4 operation name the table lacks.
pub const SVC_OP_UNKNOWN: u16 = u16_of(abi::NASFLOW_SVC_OP_UNKNOWN);
/// Flag in `op`: a procedure of the NFS ACL program (nfsacl).
pub const SVC_OP_ACL: u16 = u16_of(abi::NASFLOW_SVC_OP_ACL);
/// Flag in `status`: the RPC layer refused the call (`accept_stat` below it).
pub const SVC_RPC_ERROR: u16 = u16_of(abi::NASFLOW_SVC_RPC_ERROR);
/// Server health counter names, in `enum nasflow_svc_health` order.
pub const SVC_HEALTH: [&str; abi::NASFLOW_SH__COUNT as usize] = [
    "server_counters_map_full",
    "server_histogram_map_full",
    "server_threads_map_full",
    "server_read_failed",
    "server_reply_status_unknown",
];

/// `enum nasflow_rpc_state`: an NFS RPC on the wire or queued.
pub const RPC_RUNNING: u32 = abi::NASFLOW_RPC_RUNNING;

/// Indices of `enum nasflow_health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Health {
    /// Counter updates lost to a full counters map.
    CountersFull = abi::NASFLOW_H_COUNTERS_FULL,
    /// Latency samples lost to a full histogram map.
    HistFull = abi::NASFLOW_H_HIST_FULL,
    /// Completions without a start, charged to the root cgroup.
    UnmatchedDone = abi::NASFLOW_H_UNMATCHED_DONE,
    /// Starts not recorded because the in-flight map was full.
    InflightFull = abi::NASFLOW_H_INFLIGHT_FULL,
    /// Dirtying writes not recorded because the dirty map was full.
    DirtyFull = abi::NASFLOW_H_DIRTY_FULL,
    /// Dirtying writes not recorded because a file had too many dirtying cgroups.
    DirtySlotsFull = abi::NASFLOW_H_DIRTY_SLOTS_FULL,
    /// WRITE bytes a kernel thread sent with no known dirtier (charged to its cgroup, the root).
    WriteBytesUnowned = abi::NASFLOW_H_WRITE_BYTES_UNOWNED,
    /// Tracepoint records that could not be read.
    ReadFailed = abi::NASFLOW_H_READ_FAILED,
    /// `nfs_file_write`/`nfs_file_read` entries not recorded because an argument map was full.
    WriteArgsFull = abi::NASFLOW_H_WRITE_ARGS_FULL,
    /// RPC ends without a recorded begin (begun before attach, or evicted): not counted.
    RpcUnmatched = abi::NASFLOW_H_RPC_UNMATCHED,
    /// RPCs whose procedure name found the name table full (counted as `UNNAMED`).
    ProcNamesFull = abi::NASFLOW_H_PROC_NAMES_FULL,
    /// Operations on files deeper below their mount's root than a walk goes: no directory.
    DirTooDeep = abi::NASFLOW_H_DIR_TOO_DEEP,
    /// Slow operations over the per-second budget: not reported.
    SlowLimited = abi::NASFLOW_H_SLOW_LIMITED,
    /// Slow operations that found the ring buffer full: not reported.
    SlowRingFull = abi::NASFLOW_H_SLOW_RING_FULL,
}

/// Number of health counters (`NASFLOW_H__COUNT`).
pub const HEALTH_COUNT: u32 = abi::NASFLOW_H__COUNT;

impl Health {
    /// Every health counter, in index order (its length is the header's count: a counter added
    /// there and not here does not compile).
    pub const ALL: [Self; HEALTH_COUNT as usize] = [
        Self::CountersFull,
        Self::HistFull,
        Self::UnmatchedDone,
        Self::InflightFull,
        Self::DirtyFull,
        Self::DirtySlotsFull,
        Self::WriteBytesUnowned,
        Self::ReadFailed,
        Self::WriteArgsFull,
        Self::RpcUnmatched,
        Self::ProcNamesFull,
        Self::DirTooDeep,
        Self::SlowLimited,
        Self::SlowRingFull,
    ];

    /// A stable `snake_case` name for logs and telemetry.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::CountersFull => "counters_map_full",
            Self::HistFull => "histogram_map_full",
            Self::UnmatchedDone => "unmatched_completions",
            Self::InflightFull => "inflight_map_full",
            Self::DirtyFull => "dirty_map_full",
            Self::DirtySlotsFull => "dirty_slots_full",
            Self::WriteBytesUnowned => "write_bytes_unowned",
            Self::ReadFailed => "record_read_failed",
            Self::WriteArgsFull => "call_args_map_full",
            Self::RpcUnmatched => "rpc_unmatched_ends",
            Self::ProcNamesFull => "procedure_names_full",
            Self::DirTooDeep => "directory_walk_too_deep",
            Self::SlowLimited => "slow_ops_over_limit",
            Self::SlowRingFull => "slow_ops_ring_full",
        }
    }
}

// SAFETY: all of these are `repr(C)` structs generated from nasflow.h, made only of integers
// and integer arrays with explicit padding fields (bindgen's layout asserts check that no
// implicit padding exists: every size equals the sum of its fields).
unsafe impl aya::Pod for IoKey {}
// SAFETY: as above.
unsafe impl aya::Pod for DirKey {}
// SAFETY: as above.
unsafe impl aya::Pod for IoCounters {}
// SAFETY: as above.
unsafe impl aya::Pod for IoHist {}
// SAFETY: as above.
unsafe impl aya::Pod for Layout {}
// SAFETY: as above.
unsafe impl aya::Pod for InflightKey {}
// SAFETY: as above.
unsafe impl aya::Pod for InflightVal {}
// SAFETY: as above (bytes).
unsafe impl aya::Pod for ProcName {}
// SAFETY: as above.
unsafe impl aya::Pod for RpcTaskKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RpcTask {}
// SAFETY: as above.
unsafe impl aya::Pod for SlowOp {}
// SAFETY: as above.
unsafe impl aya::Pod for RpcLayout {}
// SAFETY: as above: `#[repr(C)]` integers and byte arrays, padding spelled out in the header.
unsafe impl aya::Pod for SvcKey {}
// SAFETY: as above.
unsafe impl aya::Pod for SvcCounters {}
// SAFETY: as above.
unsafe impl aya::Pod for SvcOpName {}
// SAFETY: as above.
unsafe impl aya::Pod for SvcLayout {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_elf_and_aligned() {
        for obj in [probe_object(), compat_object(), noop_object()] {
            assert_eq!(&obj[..4], b"\x7fELF");
            assert_eq!(obj.as_ptr() as usize % 8, 0);
        }
    }

    #[test]
    fn health_names_follow_indices() {
        for (i, h) in Health::ALL.iter().enumerate() {
            assert_eq!(*h as usize, i);
        }
    }

    #[test]
    fn latency_slots_have_exact_power_of_two_edges() {
        // In units of 2^-30 s: 2^k units is the top of slot k, 2^k + 1 the bottom of k+1.
        let units_to_ns = |u: u64| u * 1_000_000_000 / (1 << 30);
        for k in 1..30u32 {
            let top = 1u64 << k;
            // Find ns values whose unit count is exactly 2^k and 2^k + 1 (the rounding of the
            // ns -> units conversion makes some unit counts unreachable: search nearby).
            let at = (units_to_ns(top).saturating_sub(2)..units_to_ns(top) + 3)
                .find(|ns| ns + ns * 73_741_824 / 1_000_000_000 == top);
            if let Some(ns) = at {
                assert_eq!(latency_slot(ns), k as usize, "2^{k} units");
            }
            let above =
                (units_to_ns(top)..units_to_ns(top) + 4).find(|ns| ns + ns * 73_741_824 / 1_000_000_000 == top + 1);
            if let Some(ns) = above {
                assert_eq!(latency_slot(ns), k as usize + 1, "2^{k}+1 units");
            }
        }
        assert_eq!(latency_slot(0), 0);
        assert_eq!(latency_slot(1_000_000), 21, "1 ms is in (2^-10, 2^-9] s");
        assert_eq!(latency_slot(976_562), 20, "just under 2^-10 s");
        // Samples are capped at 2^37 ns (137 s): slot 38, the last one in use.
        assert_eq!(latency_slot(u64::MAX), 38);
        assert_eq!(latency_slot(1 << 37), 38);
    }

    #[test]
    fn op_numbers_and_flags() {
        let fixed = [Op::Read, Op::Write, Op::Commit, Op::AppRead, Op::AppWrite];
        for (raw, op) in fixed.iter().enumerate() {
            let raw = u16::try_from(raw).expect("small");
            assert_eq!(Op::from_raw(raw), Some(*op));
            assert_eq!(Op::from_raw(raw | OP_RTT), Some(*op), "flags are masked");
        }
        assert_eq!(Op::from_raw(OP_RPC_BASE), None, "named RPCs come from the proc_ids map");
        assert_eq!(Op::from_raw(OP_RPC_UNNAMED).map(|o| o.name().to_owned()).as_deref(), Some("UNNAMED"));
        for (name, id) in PRELOADED_PROCS {
            assert_eq!(Op::from_raw(id).map(|o| o.is_rpc()), Some(true), "{name}");
        }
        assert!(!Op::AppRead.is_rpc() && Op::Rpc(ProcName::new("GETATTR")).is_rpc());
        // Known names get distinct ids below the flag bits, none of the data RPCs'.
        let ids: std::collections::HashSet<u16> = (0..KNOWN_PROCS.len()).map(known_proc_id).collect();
        assert_eq!(ids.len(), KNOWN_PROCS.len());
        assert!(ids.iter().all(|id| *id >= OP_RPC_BASE && *id < OP_RETRANS));
        assert!(KNOWN_PROCS.iter().all(|n| !PRELOADED_PROCS.iter().any(|(p, _)| p == n) && n.len() < PROC_NAME_LEN));
    }

    #[test]
    fn every_directory_slot_names_a_known_procedure() {
        assert!(DIR_SLOT_NAMES.iter().all(|n| KNOWN_PROCS.contains(n)), "{DIR_SLOT_NAMES:?}");
        assert_eq!(abi::NASFLOW_DS_READ as usize, DIR_META_SLOTS, "data slots follow the metadata ones");
    }

    #[test]
    fn proc_names_are_nul_padded_and_cut() {
        let n = ProcName::new("BIND_CONN_TO_SESSION");
        assert_eq!(n.as_str(), "BIND_CONN_TO_SESSION");
        assert_eq!(n.name[20..], [0; 4]);
        assert_eq!(ProcName::new(&"X".repeat(40)).as_str().len(), PROC_NAME_LEN - 1);
        let mut bad = ProcName::default();
        bad.name[0] = 0xff;
        assert_eq!(bad.as_str(), "?");
    }
}

/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The kernel/user ABI of nasflow's probe: every struct that crosses a BPF map or a
 * `const volatile` global, and the numbers both sides must agree on. It is the only copy:
 * build.rs generates the Rust types and constants from it with bindgen (with layout asserts),
 * so a change here reaches the BPF programs and user space together.
 */
#ifndef NASFLOW_H
#define NASFLOW_H

/* Watched directories (--directories): ids 1..NASFLOW_MAX_DIRS name them; 0 is none. */
#define NASFLOW_MAX_DIRS 1024
/* Directory levels walked up from a file towards its mount's root. */
#define NASFLOW_DIR_DEPTH 32

/* The operations a directory kprobe names the directory of, each with a hint slot of its
 * own (a GETATTR made inside a create does not take the create's directory). */
enum nasflow_dir_slot {
	NASFLOW_DS_GETATTR = 0,
	NASFLOW_DS_LOOKUP = 1,
	NASFLOW_DS_OPEN = 2,
	NASFLOW_DS_CREATE = 3,
	NASFLOW_DS_REMOVE = 4,
	NASFLOW_DS_MKDIR = 5,
	NASFLOW_DS_RMDIR = 6,
	NASFLOW_DS_SETATTR = 7,
	/* The data RPCs, taken by their nfs events right after the kprobe. */
	NASFLOW_DS_READ = 8,
	NASFLOW_DS_WRITE = 9,
	NASFLOW_DS__COUNT = 10,
};
/* The metadata slots, whose operation ids user space gives (dir_slot_ops). */
#define NASFLOW_DIR_META_SLOTS 8

/* Key of the watched-directory map: an NFS directory as (super block dev, inode number). */
struct nasflow_dir_key {
	__u32 dev;
	__u32 pad;
	__u64 ino;
};

/* Log2 latency slots. Slot 0 holds samples of at most 1 unit (2^-30 s); slot s >= 1 holds
 * samples in (2^(s-1), 2^s] units, i.e. (2^(s-31), 2^(s-30)] seconds: OTLP exponential
 * bucket index s-31 at scale 0. 40 slots reach 2^9 s. */
#define NASFLOW_HIST_SLOTS 40

/* Raw tracepoint record bytes the programs read: every field nasflow reads ends within them. */
#define NASFLOW_RECORD_BYTES 64

/* Dirtying cgroups remembered per (dev, inode) for writeback attribution. */
#define NASFLOW_DIRTY_SLOTS 4

/* What the RPC was. Stable numbers: user space names them. */
enum nasflow_op {
	NASFLOW_OP_READ = 0,
	NASFLOW_OP_WRITE = 1,
	NASFLOW_OP_COMMIT = 2,
	/* What applications read and wrote through nfs_file_read/nfs_file_write (page-cache
	 * hits included): bytes only, no latency. Not RPCs. */
	NASFLOW_OP_APP_READ = 3,
	NASFLOW_OP_APP_WRITE = 4,
	/* An RPC whose procedure name found no room in the name table. */
	NASFLOW_OP_RPC_UNNAMED = 5,
	/* Every other NFS RPC: ids from here on are handed out per procedure name as the
	 * kernel spells it (GETATTR, LOOKUP, SEQUENCE, ...) and listed in the proc_ids map. */
	NASFLOW_OP_RPC_BASE = 16,
	/* A procedure --operations leaves out: its RPCs are not counted. */
	NASFLOW_OP_SKIP = 0x3fff,
};

/* Flags on nasflow_io_key.op, beside the operation (op & NASFLOW_OP_MASK):
 * - NASFLOW_OP_RTT: the key's histogram holds round-trip times (request sent to reply
 *   received: network and server) instead of operation durations; no counters.
 * - NASFLOW_OP_RETRANS: the key's counter ops are retransmissions of the operation. */
#define NASFLOW_OP_RTT 0x8000
#define NASFLOW_OP_RETRANS 0x4000
#define NASFLOW_OP_MASK 0x3fff

/* Procedure names are at most this long, NUL included (BIND_CONN_TO_SESSION is 21). */
#define NASFLOW_PROC_NAME 24

/* Key of the proc_ids map: a procedure name, NUL-padded. */
struct nasflow_proc_name {
	__u8 name[NASFLOW_PROC_NAME];
};

/* An RPC task: sunrpc's client id and task id (both in every sunrpc:rpc_* event). */
struct nasflow_rpc_task_key {
	__u32 client_id;
	__u32 task_id;
};

/* States of an RPC task record. */
enum nasflow_rpc_state {
	NASFLOW_RPC_BEGUN = 1,   /* rpc_task_begin seen, program not known yet */
	NASFLOW_RPC_RUNNING = 2, /* an NFS RPC on the wire or queued */
	NASFLOW_RPC_ENDED = 3,   /* rpc_task_end seen; kept for rtt and a possible restart */
	NASFLOW_RPC_OTHER = 4,   /* not NFS (lockd, rpcbind, nfsd callbacks): ignored */
	/* rpc_task_begin of a READ, WRITE or COMMIT that the nfs events count: its operation is
	 * known from the thread's hint, so rpc_request reads no names for it */
	NASFLOW_RPC_BEGUN_DATA = 5,
};

/* Who caused an RPC task and where it goes, from its submission to its end. */
struct nasflow_rpc_task {
	__u64 cgroup;
	__u64 start_ns;
	__u32 dev;
	__u16 op;
	__u16 err;
	__u32 state;
	__u16 dir;
	/* 1 while its slow report waits in slow_pending for rpc_stats_latency. */
	__u16 slow;
};

/* Counter and histogram key: who (cgroup), where (NFS super block dev), what (op), how it
 * ended (positive errno, 0 for success), below which watched directory (dir, 0 for none). */
struct nasflow_io_key {
	__u64 cgroup;
	__u32 dev;
	__u16 op;
	__u16 err;
	__u16 dir;
	__u16 pad[3];
};

/* Per-CPU cumulative counters for one key. */
struct nasflow_io_counters {
	__u64 ops;
	__u64 bytes;
};

/* Shared (not per-CPU) latency histogram for one key, updated with atomic adds. Its count is
 * the sum of its slots; the sum of latencies lives beside them, so one read of the entry
 * gives count, buckets and sum together. */
struct nasflow_io_hist {
	__u64 slots[NASFLOW_HIST_SLOTS];
	__u64 sum_ns;
};

/* An RPC between its start and its completion; both tracepoints carry these fields. */
struct nasflow_inflight_key {
	__u32 dev;
	__u16 op;
	__u16 pad;
	__u64 fileid;
	__s64 offset;
};

/* Who started the RPC and when (bpf_ktime_get_ns, CLOCK_MONOTONIC). Overlapping RPCs with
 * the same key (two COMMITs of one file) share the entry: `pending` counts them, and the
 * later ones are timed from the first start. */
struct nasflow_inflight_val {
	__u64 cgroup;
	__u64 start_ns;
	__u32 pending;
	__u16 dir;
	__u16 pad;
};

/* Probe health counters, a per-CPU array indexed by this enum. */
enum nasflow_health {
	/* A counter update found the counters map full: ops/bytes were lost. */
	NASFLOW_H_COUNTERS_FULL = 0,
	/* A latency sample found the histogram map full. */
	NASFLOW_H_HIST_FULL = 1,
	/* A completion had no matching start (started before attach, or evicted): its op was
	 * charged to the root cgroup, without latency. */
	NASFLOW_H_UNMATCHED_DONE = 2,
	/* The in-flight map was full at a start: the completion will be unmatched. */
	NASFLOW_H_INFLIGHT_FULL = 3,
	/* The dirty-owner map was full: those buffered bytes will be charged to the flusher. */
	NASFLOW_H_DIRTY_FULL = 4,
	/* More cgroups dirtied one file than it has slots: bytes charged to the flusher. */
	NASFLOW_H_DIRTY_SLOTS_FULL = 5,
	/* WRITE bytes a kernel thread sent that no dirtier accounted for (mmap writes, pages
	 * dirtied before attach): charged to the kernel thread's (root) cgroup. */
	NASFLOW_H_WRITE_BYTES_UNOWNED = 6,
	/* A tracepoint field could not be read. */
	NASFLOW_H_READ_FAILED = 7,
	/* A per-thread argument map was full at nfs_file_write/nfs_file_read entry. */
	NASFLOW_H_WRITE_ARGS_FULL = 8,
	/* An RPC ended that nasflow never saw begin (begun before attach, or its record was
	 * evicted from the full task map): not counted. */
	NASFLOW_H_RPC_UNMATCHED = 9,
	/* An RPC procedure name found the name table full: counted as RPC_UNNAMED. */
	NASFLOW_H_PROC_NAMES_FULL = 10,
	/* A file was more than NASFLOW_DIR_DEPTH directories below its mount's root: its
	 * operation carries no directory. */
	NASFLOW_H_DIR_TOO_DEEP = 11,
	/* A slow operation over the per-second budget (--max-slow-ops-per-second): not reported. */
	NASFLOW_H_SLOW_LIMITED = 12,
	/* A slow operation found the ring buffer full (user space behind): not reported. */
	NASFLOW_H_SLOW_RING_FULL = 13,
	NASFLOW_H__COUNT = 14,
};

/* Ring buffer of slow operations (bytes; a power of two and a multiple of the page size). */
#define NASFLOW_SLOW_RING_BYTES (256 * 1024)

/* An operation that took at least the slow-op threshold, as the ring buffer carries it:
 * who and where as in the counters' key, when it started (bpf_ktime_get_ns, CLOCK_MONOTONIC)
 * and how long it took; for READ, WRITE and COMMIT also the file and the offset, and the
 * bytes moved. */
struct nasflow_slow_op {
	__u64 cgroup;
	__u64 start_ns;
	__u64 duration_ns;
	__u64 bytes;
	__u64 fileid;
	__s64 offset;
	__u32 dev;
	__u16 op;
	__u16 err;
	__u16 dir;
	/* 1 when xid and rtt_us are known (sunrpc:rpc_stats_latency seen for the RPC). */
	__u16 has_rpc;
	__u32 xid;
	/* Round trip of the reply, µs; 0 without a reply. */
	__u32 rtt_us;
	__u32 pad;
};

/* The xid and round trip rpc_stats_latency saw for a data RPC, for the nfs *_done event of
 * the same RPC that follows on the same thread. */
struct nasflow_slow_rpc {
	__u64 pid_tgid;
	/* When rpc_stats_latency set it (bpf_ktime_get_ns); 0 once used or cleared. */
	__u64 at_ns;
	__u32 xid;
	__u32 rtt_us;
	__u16 op;
	__u16 pad[3];
};

/* The per-second budget of slow reports: the second it counts (of CLOCK_MONOTONIC) and how
 * many were reported in it. */
struct nasflow_slow_budget {
	__u64 second;
	__u64 used;
};

/* Where one tracepoint field is in the raw record, from the tracefs format file. */
struct nasflow_field {
	__u16 offset;
	__u16 size;
};

/* The fields nasflow reads from one NFS tracepoint. Unused fields stay zero-sized. */
struct nasflow_tp_fields {
	struct nasflow_field dev;
	struct nasflow_field fileid;
	struct nasflow_field offset;
	/* initiate: requested count; done: res_count */
	struct nasflow_field count;
	/* done only: the count asked for, to see a short transfer the kernel resends */
	struct nasflow_field arg_count;
	/* read done only: end of file reached */
	struct nasflow_field eof;
	/* done only: error or status (negative errno) */
	struct nasflow_field error;
};

/* Field layouts of the six tracepoints, read by user space before load. */
struct nasflow_layout {
	struct nasflow_tp_fields read_init;
	struct nasflow_tp_fields read_done;
	struct nasflow_tp_fields write_init;
	struct nasflow_tp_fields write_done;
	struct nasflow_tp_fields commit_init;
	struct nasflow_tp_fields commit_done;
};

/* The sunrpc events' fields, and the `dev` of the nfs events that tell which mount a
 * thread works on (hints). */
#define NASFLOW_HINT_EVENTS 6
struct nasflow_rpc_layout {
	struct nasflow_field begin_task_id;
	struct nasflow_field begin_client_id;
	struct nasflow_field req_task_id;
	struct nasflow_field req_client_id;
	struct nasflow_field req_progname;
	struct nasflow_field req_procname;
	struct nasflow_field end_task_id;
	struct nasflow_field end_client_id;
	struct nasflow_field end_status;
	struct nasflow_field lat_task_id;
	struct nasflow_field lat_client_id;
	struct nasflow_field lat_rtt;
	struct nasflow_field lat_xid;
	struct nasflow_field rtx_task_id;
	struct nasflow_field rtx_client_id;
	struct nasflow_field hint_dev[NASFLOW_HINT_EVENTS];
};

_Static_assert(sizeof(struct nasflow_io_key) == 24, "nasflow_io_key ABI");
_Static_assert(sizeof(struct nasflow_io_counters) == 16, "nasflow_io_counters ABI");
_Static_assert(sizeof(struct nasflow_io_hist) == 8 * NASFLOW_HIST_SLOTS + 8, "nasflow_io_hist ABI");
_Static_assert(sizeof(struct nasflow_inflight_key) == 24, "nasflow_inflight_key ABI");
_Static_assert(sizeof(struct nasflow_inflight_val) == 24, "nasflow_inflight_val ABI");
_Static_assert(sizeof(struct nasflow_tp_fields) == 28, "nasflow_tp_fields ABI");
_Static_assert(sizeof(struct nasflow_layout) == 168, "nasflow_layout ABI");

_Static_assert(sizeof(struct nasflow_dir_key) == 16, "nasflow_dir_key ABI");
_Static_assert(sizeof(struct nasflow_proc_name) == NASFLOW_PROC_NAME, "nasflow_proc_name ABI");
_Static_assert(sizeof(struct nasflow_rpc_task_key) == 8, "nasflow_rpc_task_key ABI");
_Static_assert(sizeof(struct nasflow_rpc_task) == 32, "nasflow_rpc_task ABI");
_Static_assert(sizeof(struct nasflow_rpc_layout) == 84, "nasflow_rpc_layout ABI");
_Static_assert(sizeof(struct nasflow_slow_op) == 72, "nasflow_slow_op ABI");
_Static_assert(sizeof(struct nasflow_slow_budget) == 16, "nasflow_slow_budget ABI");
_Static_assert(sizeof(struct nasflow_slow_rpc) == 32, "nasflow_slow_rpc ABI");

/* ---- NFS server (nfsd) ---- */

/* File handle fsid bytes kept (FSID_UUID16_INUM, the longest, has 24). */
#define NASFLOW_FSID_BYTES 24
/* Client address as sunrpc prints it ("%pISpc"), port cut off; INET6_ADDRSTRLEN plus
 * brackets fits. */
#define NASFLOW_SVC_ADDR 48
/* NFSv4 operation names as nfsd_compound_status gives them ("OP_READ"). */
#define NASFLOW_SVC_OP_NAME 24
/* fsid_type of an operation that touched no file handle (NULL, SEQUENCE, EXCHANGE_ID). */
#define NASFLOW_FSID_NONE 0xff
/* op of an NFSv4 operation name the table does not hold. */
#define NASFLOW_SVC_OP_UNKNOWN 0xffff
/* op flag: a procedure of the NFS ACL program (nfsacl, served by nfsd beside NFSv2/v3). */
#define NASFLOW_SVC_OP_ACL 0x4000
/* status flag: the RPC layer refused the call (accept_stat in the low bits). */
#define NASFLOW_SVC_RPC_ERROR 0x8000

/* Server counter and histogram key: which export (its file handles' fsid, as mountd keys
 * exports), which client, which operation (v2/v3 procedure number, v4 operation number),
 * how it ended (nfsstat3/nfsstat4, 0 for success). */
struct nasflow_svc_key {
	__u8 fsid_type;
	__u8 vers;
	__u16 op;
	__u16 status;
	__u16 pad;
	__u8 fsid[NASFLOW_FSID_BYTES];
	__u8 addr[NASFLOW_SVC_ADDR];
};

/* Per-CPU cumulative counters of one server key: operations and their payload bytes
 * (READ: sent to the client, WRITE: received). */
struct nasflow_svc_counters {
	__u64 ops;
	__u64 bytes;
};

/* A v4 operation name, the key of the name to number table user space fills. */
struct nasflow_svc_op_name {
	__u8 name[NASFLOW_SVC_OP_NAME];
};

/* Server health counters, a per-CPU array indexed by this enum. */
enum nasflow_svc_health {
	/* The server counters map was full: operations lost. */
	NASFLOW_SH_COUNTERS_FULL = 0,
	/* The server histogram map was full: latency samples lost. */
	NASFLOW_SH_HIST_FULL = 1,
	/* The per-thread request map was full: that thread's requests are not counted. */
	NASFLOW_SH_THREADS_FULL = 2,
	/* A tracepoint record or file handle could not be read. */
	NASFLOW_SH_READ_FAILED = 3,
	/* A reply's status could not be found (not the reply to the request's xid). */
	NASFLOW_SH_NO_STATUS = 4,
	NASFLOW_SH__COUNT = 5,
};

/* Field layouts of the server's events, read by user space before load. */
struct nasflow_svc_layout {
	struct nasflow_field proc_xid;
	struct nasflow_field proc_vers;
	struct nasflow_field proc_proc;
	struct nasflow_field proc_service;
	struct nasflow_field proc_addr;
	struct nasflow_field read_len;
	struct nasflow_field write_len;
	struct nasflow_field op_status;
	struct nasflow_field op_name;
	struct nasflow_field send_xid;
	struct nasflow_field send_head;
};

_Static_assert(sizeof(struct nasflow_svc_key) == 80, "nasflow_svc_key ABI");
_Static_assert(sizeof(struct nasflow_svc_layout) == 44, "nasflow_svc_layout ABI");

#endif /* NASFLOW_H */

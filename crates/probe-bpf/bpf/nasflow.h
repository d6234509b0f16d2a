/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The kernel/user ABI of nasflow's probe: every struct that crosses a BPF map or a
 * `const volatile` global. The Rust mirrors live in crates/probe-bpf/src/lib.rs and assert the
 * same sizes; change both together.
 */
#ifndef NASFLOW_H
#define NASFLOW_H

/* Log2 latency slots. Slot 0 holds samples of at most 1 unit (2^-30 s); slot s >= 1 holds
 * samples in (2^(s-1), 2^s] units, i.e. (2^(s-31), 2^(s-30)] seconds: OTLP exponential
 * bucket index s-31 at scale 0. 40 slots reach 2^9 s. */
#define NASFLOW_HIST_SLOTS 40

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
};

/* Counter and histogram key: who (cgroup), where (NFS super block dev), what (op), how it
 * ended (positive errno, 0 for success). */
struct nasflow_io_key {
	__u64 cgroup;
	__u32 dev;
	__u16 op;
	__u16 err;
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
	__u32 pad;
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
	NASFLOW_H__COUNT = 9,
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

_Static_assert(sizeof(struct nasflow_io_key) == 16, "nasflow_io_key ABI");
_Static_assert(sizeof(struct nasflow_io_counters) == 16, "nasflow_io_counters ABI");
_Static_assert(sizeof(struct nasflow_io_hist) == 8 * NASFLOW_HIST_SLOTS + 8, "nasflow_io_hist ABI");
_Static_assert(sizeof(struct nasflow_inflight_key) == 24, "nasflow_inflight_key ABI");
_Static_assert(sizeof(struct nasflow_inflight_val) == 24, "nasflow_inflight_val ABI");
_Static_assert(sizeof(struct nasflow_tp_fields) == 28, "nasflow_tp_fields ABI");
_Static_assert(sizeof(struct nasflow_layout) == 168, "nasflow_layout ABI");

#endif /* NASFLOW_H */

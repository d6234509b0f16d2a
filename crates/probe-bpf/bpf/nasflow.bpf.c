// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * nasflow's NFS client probe: counts READ, WRITE and COMMIT RPCs per (cgroup, device,
 * operation, errno) with bytes and a log2 latency histogram, aggregated in the kernel.
 *
 * Attribution:
 * - READ: the context that starts the RPC is the reader's (also for readahead).
 * - WRITE/COMMIT: buffered writes are flushed later, often by kworkers in the root cgroup.
 *   nfs_file_write (kprobe/kretprobe) remembers per (dev, inode) which cgroups dirtied how many
 *   bytes; a WRITE RPC is split among them by those bytes. Without a record (O_DIRECT, or
 *   nothing pending) the RPC is charged to the context that sends it.
 * - Completions run in rpciod; the in-flight map carries the cgroup from start to done.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "nasflow.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* One read of a value other CPUs change, as the kernel's READ_ONCE. */
#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))

/* The first id handed out to a procedure name user space did not load. */
const volatile __u16 first_dynamic_proc = NASFLOW_OP_RPC_BASE;

/*
 * Claims a dirty-owner slot that holds `owner`, for `cgroup`. Fetching atomics (compare and
 * swap) need 5.12; the compat build (NASFLOW_COMPAT, for older kernels) stores without it:
 * two cgroups first dirtying one file at the same instant may then share a slot, and the
 * bytes of one are charged to the other.
 */
static __always_inline int claim_slot(__u64 *slot, __u64 owner, __u64 cgroup)
{
#ifdef NASFLOW_COMPAT
	if (READ_ONCE(*slot) != owner)
		return 0;
	*slot = cgroup;
	return 1;
#else
	return __sync_val_compare_and_swap(slot, owner, cgroup) == owner;
#endif
}

/* Tracepoint field layouts, from tracefs format files. */
const volatile struct nasflow_layout layout = {};
/* Non-zero on cgroup v1 hosts: take the memory controller's cgroup from the task. */
const volatile __u8 cgroup_v1 = 0;
/* The root cgroup's id: where completions without a start are charged. */
const volatile __u64 root_cgroup = 1;
/* O_DIRECT of this architecture: direct writes never dirty the page cache. */
const volatile __u32 o_direct_flag = 040000;
/* O_APPEND of this architecture: an appending write ends at the file's size plus its bytes. */
const volatile __u32 o_append_flag = 02000;
/* Optional signals (user space also leaves their programs unattached when off):
 * operation latency histograms, and application bytes (nfs_file_read/nfs_file_write calls,
 * page-cache hits included). */
const volatile __u8 want_latency = 1;
const volatile __u8 want_app_bytes = 0;
/* Non-zero with --directories: operations carry the watched directory of their file. */
const volatile __u8 want_dirs = 0;
/* Zero with --operations: a procedure name user space did not load is not counted. */
const volatile __u8 count_new_procs = 1;
/* Which argument of nfs_create and nfs_mkdir is the dentry (1-based): 3 since 5.12 (an
 * idmap or user namespace comes first), 2 before. */
const volatile __u8 create_dentry_arg = 3;

/* Operations at least this long are reported one by one (--slow-op-threshold); 0: none. */
const volatile __u64 slow_op_ns = 0;
/* Slow operations reported per second at most (--max-slow-ops-per-second). */
const volatile __u64 slow_ops_per_sec = 50;
/* Non-zero when rpc_stats_latency is attached: slow RPCs other than READ, WRITE and COMMIT
 * wait for it (it follows rpc_task_end) to be reported with their xid and round trip. */
const volatile __u8 slow_waits_for_rpc = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct nasflow_io_key);
	__type(value, struct nasflow_io_counters);
} io_counters SEC(".maps");

/* Slow operations, one record each, for user space to turn into spans. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, NASFLOW_SLOW_RING_BYTES);
} slow_ops SEC(".maps");

/*
 * Slow RPCs other than READ, WRITE and COMMIT between rpc_task_end and rpc_stats_latency,
 * which adds their xid and round trip. An RPC that never got a request slot has no
 * rpc_stats_latency: user space reports what is left here after a second. Whoever deletes
 * an entry reports it, so none is reported twice.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct nasflow_rpc_task_key);
	__type(value, struct nasflow_slow_op);
} slow_pending SEC(".maps");

/* The xid and round trip of the data RPC this CPU's thread completes next: rpc_stats_latency
 * sets them right before the nfs *_done event of the same RPC, on the same thread. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nasflow_slow_rpc);
} slow_rpc SEC(".maps");

/* The per-second budget of slow reports (one entry). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nasflow_slow_budget);
} slow_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct nasflow_io_key);
	__type(value, struct nasflow_io_hist);
} io_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NASFLOW_H__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} health SEC(".maps");

/* RPCs between start and completion. A plain preallocated hash (cheaper than an LRU's
 * global list lock); user space deletes entries whose completion never came. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct nasflow_inflight_key);
	__type(value, struct nasflow_inflight_val);
} inflight SEC(".maps");

/* Who dirtied a file's page cache and how many bytes of it are not yet flushed. */
struct dirty_key {
	__u32 dev;
	__u32 pad;
	__u64 ino;
};

struct dirty_slot {
	__u64 cgroup;
	__s64 pending;
	/* Smooth weighted round-robin credit, in 1/OP_CREDIT ops: which dirtier carries the
	 * next WRITE op, so ops follow the byte shares over time. */
	__s64 credit;
};

#define OP_CREDIT 1024

struct dirty_val {
	struct dirty_slot slot[NASFLOW_DIRTY_SLOTS];
	/* The cgroup charged with the last flushed WRITE: COMMITs follow it. */
	__u64 last_cgroup;
	/* The watched directory of the file's last WRITE: its COMMITs carry it too. */
	__u32 dir;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dirty_key);
	__type(value, struct dirty_val);
} dirty SEC(".maps");

/* nfs_file_write's inode between entry and return, per thread, only with --app-bytes on.
 * Deleted at return; a return the kretprobe missed leaves an entry that the thread's next
 * write overwrites. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u64);
} write_args SEC(".maps");

/* nfs_file_read's inode between entry and return, per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u64);
} read_args SEC(".maps");

/* Watched directories, (dev, inode) to id, and the devices that have any (a walk is only
 * made on those). Filled by user space, which keeps them current as mounts and directories
 * come and go. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct nasflow_dir_key);
	__type(value, __u16);
} watched_dirs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} watched_devs SEC(".maps");

/* The directory of the operation a thread is about to send, from the kprobe that knew its
 * file (nfs_initiate_read/_write, nfs_lookup, ...), for the event that starts the RPC. One
 * set per CPU, as rpc_hints (the kprobe and the RPC run back to back in one thread), with a
 * slot per operation (enum nasflow_dir_slot): a call nested in another (the GETATTR of a
 * directory inside a create in it) does not take the outer one's hint. */
struct dir_hint {
	__u64 pid_tgid;
	__u64 ts;
	__u32 dir;
	__u32 pad;
};

struct dir_hint_set {
	struct dir_hint slot[NASFLOW_DS__COUNT];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dir_hint_set);
} dir_hints SEC(".maps");

/* The metadata slots live per thread: between a call and its RPC the thread may sleep on
 * another RPC (the GETACL inside a create) and wake on another CPU. An LRU: the entries of
 * threads that ended age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct dir_hint_set);
} thread_dir_hints SEC(".maps");

/* Initial value of a thread's hint set (too large for the stack). */
struct dir_hint_set zero_dir_hints = {};

/* The operation ids of the metadata slots (GETATTR, LOOKUP, ... as named in proc_ids). */
const volatile __u16 dir_slot_ops[NASFLOW_DIR_META_SLOTS] = {};

/* Initial histogram value: too large for the 512-byte BPF stack, so it lives in .bss. */
struct nasflow_io_hist zero_hist = {};

static __always_inline void health_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&health, &idx);

	if (v)
		*v += n;
}

static __always_inline int read_rec(void *ctx, struct rec *r)
{
	if (bpf_probe_read_kernel(r, sizeof(*r), ctx)) {
		health_add(NASFLOW_H_READ_FAILED, 1);
		return -1;
	}
	return 0;
}

static __always_inline __u64 current_cgroup(void)
{
	struct task_struct *task;
	struct cgroup_subsys_state *css = NULL;
	struct css_set *cgs;
	int idx;

	if (!cgroup_v1)
		return bpf_get_current_cgroup_id();
	task = (struct task_struct *)bpf_get_current_task();
	cgs = BPF_CORE_READ(task, cgroups);
	idx = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (!cgs || idx < 0 || idx >= 16)
		return root_cgroup;
	if (bpf_core_read(&css, sizeof(css), &cgs->subsys[idx]) || !css)
		return root_cgroup;
	return BPF_CORE_READ(css, cgroup, kn, id);
}

/* PF_KTHREAD from linux/sched.h: a kernel thread (writeback kworkers, rpciod). */
#define PF_KTHREAD 0x00200000

static __always_inline bool current_is_kthread(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, flags) & PF_KTHREAD;
}

/* Adds a latency sample to one key's histogram. */
static __noinline int hist_add(struct nasflow_io_key *key, __u64 latency_ns)
{
	struct nasflow_io_hist *h;
	__u32 slot;

	h = bpf_map_lookup_elem(&io_hist, key);
	if (!h) {
		bpf_map_update_elem(&io_hist, key, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&io_hist, key);
		if (!h) {
			health_add(NASFLOW_H_HIST_FULL, 1);
			return 0;
		}
	}
	slot = latency_slot(latency_ns);
	if (slot < NASFLOW_HIST_SLOTS)
		__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, latency_ns);
	return 0;
}

/* Adds to one key's counters, and a latency sample when has_latency. */
static __noinline int account(struct nasflow_io_key *key, __u64 ops, __u64 bytes,
			      __u64 latency_ns, __u64 has_latency)
{
	struct nasflow_io_counters *c;

	c = bpf_map_lookup_elem(&io_counters, key);
	if (!c) {
		struct nasflow_io_counters zero = {};

		bpf_map_update_elem(&io_counters, key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&io_counters, key);
		if (!c) {
			health_add(NASFLOW_H_COUNTERS_FULL, 1);
			return 0;
		}
	}
	c->ops += ops;
	c->bytes += bytes;
	if (has_latency && want_latency)
		hist_add(key, latency_ns);
	return 0;
}

/*
 * Whether an operation that passed the slow-op threshold fits the per-second budget (else it
 * is counted as over the limit). The budget is read and then raised without a fetching
 * atomic (kernels before 5.12 have none): CPUs racing at its edge may each report one more,
 * and two starting the same new second may both reset it; a few over the limit at most. It
 * only moves forward: an operation that ended in a second already left counts against the
 * current one.
 */
static __noinline int slow_budget_ok(__u64 end_ns)
{
	struct nasflow_slow_budget *b;
	__u32 zero = 0;
	__u64 second = end_ns / 1000000000ULL;

	b = bpf_map_lookup_elem(&slow_budget, &zero);
	if (!b)
		return 0;
	if (second > READ_ONCE(b->second)) {
		b->second = second;
		b->used = 0;
	}
	if (READ_ONCE(b->used) >= slow_ops_per_sec) {
		health_add(NASFLOW_H_SLOW_LIMITED, 1);
		return 0;
	}
	__sync_fetch_and_add(&b->used, 1);
	return 1;
}

/* Puts a slow operation in the ring buffer (or counts it lost when the ring is full). */
static __noinline int emit_slow(const struct nasflow_slow_op *op)
{
	struct nasflow_slow_op *e;

	e = bpf_ringbuf_reserve(&slow_ops, sizeof(*e), 0);
	if (!e) {
		health_add(NASFLOW_H_SLOW_RING_FULL, 1);
		return 0;
	}
	__builtin_memcpy(e, op, sizeof(*e));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * The xid rpc_stats_latency leaves for a data RPC's done event is trusted this long: the two
 * run back to back on one thread (rpc_exit_task); rpc_task_end, before both, clears it.
 */
#define SLOW_RPC_MAX_AGE_NS 5000000ULL

/* A slow READ, WRITE or COMMIT: with the xid and round trip rpc_stats_latency left for this
 * thread, when it was this operation's RPC. */
static __noinline int report_slow_data(struct nasflow_slow_op *op)
{
	struct nasflow_slow_rpc *f;
	__u32 zero = 0;

	if (!slow_budget_ok(op->start_ns + op->duration_ns))
		return 0;
	f = bpf_map_lookup_elem(&slow_rpc, &zero);
	if (f && f->at_ns && f->pid_tgid == bpf_get_current_pid_tgid() && f->op == op->op &&
	    bpf_ktime_get_ns() - f->at_ns < SLOW_RPC_MAX_AGE_NS) {
		op->has_rpc = 1;
		op->xid = f->xid;
		op->rtt_us = f->rtt_us;
	}
	if (f)
		f->at_ns = 0;
	return emit_slow(op);
}

static __always_inline void charge_bytes(__u64 cgroup, __u32 dev, __u16 op, __u64 bytes, __u16 dir)
{
	struct nasflow_io_key key = { .cgroup = cgroup, .dev = dev, .op = op, .dir = dir };

	account(&key, 0, bytes, 0, 0);
}

/* One read() or write() call of an application and the bytes it moved. */
static __always_inline void app_bytes(__u64 cgroup, __u32 dev, __u16 op, __u64 bytes)
{
	struct nasflow_io_key key = { .cgroup = cgroup, .dev = dev, .op = op };

	account(&key, 1, bytes, 0, 0);
}

static __always_inline void start_rpc(__u32 dev, __u16 op, __u64 fileid, __s64 offset,
				      __u64 cgroup, __u64 start_ns, __u16 dir)
{
	struct nasflow_inflight_key key = { .dev = dev, .op = op, .fileid = fileid, .offset = offset };
	struct nasflow_inflight_val val = { .cgroup = cgroup, .start_ns = start_ns, .pending = 1, .dir = dir };
	struct nasflow_inflight_val *cur;

	if (!bpf_map_update_elem(&inflight, &key, &val, BPF_NOEXIST))
		return;
	/* Another RPC with this key is in flight: share its entry. */
	cur = bpf_map_lookup_elem(&inflight, &key);
	if (cur) {
		__sync_fetch_and_add(&cur->pending, 1);
		/*
		 * Its last completion may have seen the count at zero and deleted the entry just
		 * before this share was added: then this RPC starts its own (finish_rpc re-checks
		 * from its side after deleting, so one of the two keeps the entry).
		 */
		if (bpf_map_lookup_elem(&inflight, &key))
			return;
	}
	if (bpf_map_update_elem(&inflight, &key, &val, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&inflight, &key))
		health_add(NASFLOW_H_INFLIGHT_FULL, 1);
}

/*
 * Completes an RPC: one op with its latency and outcome, charged to the cgroup recorded at
 * start. A short transfer that the kernel will resend for the rest keeps an in-flight entry
 * at the next offset, so the resend is charged to the same cgroup.
 */
static __always_inline void finish_rpc(__u32 dev, __u16 op, __u64 fileid, __s64 offset,
				       __s64 error, __u64 bytes, __u64 resend_at)
{
	struct nasflow_inflight_key ikey = { .dev = dev, .op = op, .fileid = fileid, .offset = offset };
	struct nasflow_io_key key = { .dev = dev, .op = op };
	struct nasflow_inflight_val *start, started;
	__u64 now = bpf_ktime_get_ns();

	if (error < 0)
		key.err = (__u16)(-error);
	start = bpf_map_lookup_elem(&inflight, &ikey);
	if (!start) {
		health_add(NASFLOW_H_UNMATCHED_DONE, 1);
		key.cgroup = root_cgroup;
		account(&key, 1, bytes, 0, 0);
		return;
	}
	started = *start;
	/*
	 * Drop this RPC's reference; whoever sees the count at zero afterwards deletes the entry.
	 * Two completions racing on one key (two COMMITs of a file) both decrement, and at least
	 * the second one sees zero: no entry is left behind with nothing in flight. (No fetching
	 * atomics: kernels before 5.12 refuse them.)
	 */
	__sync_fetch_and_add(&start->pending, -1);
	if ((__s32)READ_ONCE(start->pending) <= 0) {
		bpf_map_delete_elem(&inflight, &ikey);
		/*
		 * An RPC of the same key that shared the entry between the read and the delete
		 * (start_rpc re-checks from its side): put the entry back for it.
		 */
		if ((__s32)READ_ONCE(start->pending) > 0) {
			struct nasflow_inflight_val again = started;

			again.pending = READ_ONCE(start->pending);
			bpf_map_update_elem(&inflight, &ikey, &again, BPF_NOEXIST);
		}
	}
	key.cgroup = started.cgroup;
	key.dir = started.dir;
	account(&key, 1, bytes, now - started.start_ns, 1);
	if (slow_op_ns && now - started.start_ns >= slow_op_ns) {
		struct nasflow_slow_op slow = {
			.cgroup = started.cgroup,
			.start_ns = started.start_ns,
			.duration_ns = now - started.start_ns,
			.bytes = bytes,
			.fileid = fileid,
			.offset = offset,
			.dev = dev,
			.op = op,
			.err = key.err,
			.dir = started.dir,
		};

		report_slow_data(&slow);
	}
	if (resend_at)
		start_rpc(dev, op, fileid, offset + resend_at, started.cgroup, now, started.dir);
}

/*
 * Charges a WRITE RPC's payload to the cgroups that dirtied the file, in proportion to what
 * each has pending, and returns the cgroup that carries the op (the largest share).
 */
static __always_inline __u64 charge_write(__u32 dev, __u64 fileid, __u64 count, __u64 current,
					  __u16 dir)
{
	struct dirty_key dkey = { .dev = dev, .ino = fileid };
	__u64 pending[NASFLOW_DIRTY_SLOTS] = {};
	__u64 share[NASFLOW_DIRTY_SLOTS] = {};
	__u64 total = 0, scaled_total = 0, charged = 0, primary = current;
	__u32 shift = 0, largest = 0, chosen = 0, found = 0;
	__s64 best_credit = 0;
	struct dirty_val *dv;
	int i;

	dv = bpf_map_lookup_elem(&dirty, &dkey);
	if (!dv) {
		/* O_DIRECT or flush in the writer's context. Remember the writer: the COMMIT of
		 * a direct write is sent from a workqueue. */
		struct dirty_val first = { .last_cgroup = current, .dir = dir };

		charge_bytes(current, dev, NASFLOW_OP_WRITE, count, dir);
		bpf_map_update_elem(&dirty, &dkey, &first, BPF_NOEXIST);
		return current;
	}
#pragma unroll
	for (i = 0; i < NASFLOW_DIRTY_SLOTS; i++) {
		__s64 p = dv->slot[i].pending;

		if (dv->slot[i].cgroup && p > 0) {
			pending[i] = p;
			total += p;
		}
	}
	dv->dir = dir;
	if (total == 0) {
		charge_bytes(current, dev, NASFLOW_OP_WRITE, count, dir);
		if (current_is_kthread())
			health_add(NASFLOW_H_WRITE_BYTES_UNOWNED, count);
		else
			dv->last_cgroup = current;
		return current;
	}
	if (total <= count) {
		/* Everything pending goes out now; the rest was dirtied unseen. */
#pragma unroll
		for (i = 0; i < NASFLOW_DIRTY_SLOTS; i++)
			share[i] = pending[i];
		charged = total;
	} else {
		/* Keep count * pending below 2^64. */
		if (total >> 31)
			shift = log2_u64(total) - 30;
#pragma unroll
		for (i = 0; i < NASFLOW_DIRTY_SLOTS; i++)
			scaled_total += pending[i] >> shift;
#pragma unroll
		for (i = 0; i < NASFLOW_DIRTY_SLOTS; i++) {
			if (scaled_total)
				share[i] = count * (pending[i] >> shift) / scaled_total;
			charged += share[i];
			if (pending[i] > pending[largest])
				largest = i;
		}
		/* Rounding remainder to the largest dirtier. */
		if (largest < NASFLOW_DIRTY_SLOTS) {
			share[largest] += count - charged;
			charged = count;
		}
	}
	/* Bytes by share; the op to the dirtier with the most round-robin credit. */
#pragma unroll
	for (i = 0; i < NASFLOW_DIRTY_SLOTS; i++) {
		if (!share[i])
			continue;
		charge_bytes(dv->slot[i].cgroup, dev, NASFLOW_OP_WRITE, share[i], dir);
		__sync_fetch_and_add(&dv->slot[i].pending, -(__s64)share[i]);
		dv->slot[i].credit += (__s64)(share[i] * OP_CREDIT / count);
		if (!found || dv->slot[i].credit > best_credit) {
			found = 1;
			best_credit = dv->slot[i].credit;
			chosen = i;
		}
	}
	if (found && chosen < NASFLOW_DIRTY_SLOTS) {
		dv->slot[chosen].credit -= OP_CREDIT;
		primary = dv->slot[chosen].cgroup;
	}
	if (charged < count) {
		charge_bytes(current, dev, NASFLOW_OP_WRITE, count - charged, dir);
		if (current_is_kthread())
			health_add(NASFLOW_H_WRITE_BYTES_UNOWNED, count - charged);
	}
	dv->last_cgroup = primary;
	return primary;
}

/* Remembers that `cgroup` dirtied `bytes` of a file whose size is now `size`. */
static __always_inline void charge_dirty(__u32 dev, __u64 ino, __u64 cgroup, __u64 bytes,
					 __s64 size)
{
	struct dirty_key dkey = { .dev = dev, .ino = ino };
	struct dirty_val *dv;
	struct dirty_slot *slot = NULL;
	int i;

	dv = bpf_map_lookup_elem(&dirty, &dkey);
	if (!dv) {
		struct dirty_val zero = {};

		bpf_map_update_elem(&dirty, &dkey, &zero, BPF_NOEXIST);
		dv = bpf_map_lookup_elem(&dirty, &dkey);
		if (!dv) {
			health_add(NASFLOW_H_DIRTY_FULL, 1);
			return;
		}
	}
#pragma unroll
	for (i = 0; i < NASFLOW_DIRTY_SLOTS; i++) {
		if (!slot && dv->slot[i].cgroup == cgroup)
			slot = &dv->slot[i];
	}
	/* A free slot, or one whose bytes have all been flushed. */
#pragma unroll
	for (i = 0; i < NASFLOW_DIRTY_SLOTS; i++) {
		__u64 owner = dv->slot[i].cgroup;

		if (slot)
			break;
		if (owner == 0 || dv->slot[i].pending <= 0) {
			if (claim_slot(&dv->slot[i].cgroup, owner, cgroup)) {
				slot = &dv->slot[i];
				if (slot->pending < 0)
					slot->pending = 0;
				if (owner != cgroup)
					slot->credit = 0;
			}
		}
	}
	if (!slot) {
		health_add(NASFLOW_H_DIRTY_SLOTS_FULL, 1);
		return;
	}
	__sync_fetch_and_add(&slot->pending, (__s64)bytes);
	/* Rewrites of the same pages cannot leave more pending than the file holds. */
	if (size > 0 && slot->pending > size)
		slot->pending = size;
}

/*
 * Every other NFS RPC, through sunrpc's tracepoints (a task is keyed by client and task id):
 * - rpc_task_begin runs in the context that submits the task, also for async tasks that
 *   rpciod runs later: it records the cgroup, and the mount from the thread's hint.
 * - rpc_request (call_start) names the program and procedure: non-NFS tasks are marked and
 *   ignored; the client's mount is learned from a fresh hint.
 * - rpc_task_end carries the status: one op, its duration and errno, for every procedure
 *   but READ/WRITE/COMMIT, which the nfs tracepoints count with their bytes.
 * - rpc_stats_latency follows it with the round-trip time; xprt_retransmit counts resends.
 */

/* The per-sunrpc-client mount: NFS gives every super block its own RPC client. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} rpc_clients SEC(".maps");

/* RPC tasks from submission to end. An LRU: ended records stay for the rtt event and a
 * restart of the task, and make room for new ones as they age. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct nasflow_rpc_task_key);
	__type(value, struct nasflow_rpc_task);
} rpc_tasks SEC(".maps");

/* Procedure name to operation id. User space preloads READ, READ_PLUS, WRITE and COMMIT. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct nasflow_proc_name);
	__type(value, __u16);
} proc_ids SEC(".maps");

/* Ids handed out so far, past NASFLOW_OP_RPC_BASE. */
__u32 next_proc_id = 0;

/* The mount a thread is about to send an RPC for, and for data RPCs the cgroup charged and
 * the operation plus one (`exact`; 0 for a mount-only hint). */
struct rpc_hint {
	__u64 pid_tgid;
	__u64 cgroup;
	__u64 ts;
	__u32 dev;
	__u16 exact;
	/* The watched directory of an exact hint's operation. */
	__u16 dir;
};

/*
 * One hint per CPU, not per thread: the nfs event and the RPC task it leads to run back to
 * back in one thread, so the CPU's last hint is that thread's. A hint another thread left
 * (ours was preempted or migrated in between) is not used: the task's mount then comes from
 * its client (rpc_clients). An array slot costs no hashing, locking or allocation on the
 * hot path, unlike a per-thread hash.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rpc_hint);
} rpc_hints SEC(".maps");

/* A hint older than this does not name the mount of a task the thread begins. */
#define HINT_NS (10 * 1000 * 1000ULL)

const volatile struct nasflow_rpc_layout rpc_layout = {};

static __always_inline void set_hint(__u32 dev, __u64 cgroup, __u64 now, __u16 exact, __u16 dir)
{
	__u32 zero = 0;
	struct rpc_hint *h = bpf_map_lookup_elem(&rpc_hints, &zero);

	if (!h)
		return;
	h->pid_tgid = bpf_get_current_pid_tgid();
	h->cgroup = cgroup;
	h->ts = now;
	h->dev = dev;
	h->exact = exact;
	h->dir = dir;
}

/* A metadata hint older than this is not used: its call sent no RPC (a cache hit). Data
 * hints are taken by the event in the same call, so they need no age. */
#define DIR_HINT_NS (50 * 1000 * 1000ULL)

/* The directory a kprobe found for the thread's next operation of one slot, taken (used up);
 * 0 if none. */
static __always_inline __u16 take_dir_hint(__u32 slot, __u64 now)
{
	__u32 zero = 0;
	struct dir_hint_set *set;
	struct dir_hint *h;

	if (!want_dirs || slot >= NASFLOW_DS__COUNT)
		return 0;
	if (slot < NASFLOW_DIR_META_SLOTS) {
		__u64 pid = bpf_get_current_pid_tgid();

		set = bpf_map_lookup_elem(&thread_dir_hints, &pid);
	} else {
		set = bpf_map_lookup_elem(&dir_hints, &zero);
	}
	if (!set)
		return 0;
	h = &set->slot[slot];
	if (h->pid_tgid != bpf_get_current_pid_tgid() || !h->ts)
		return 0;
	if (slot < NASFLOW_DIR_META_SLOTS && now - h->ts > DIR_HINT_NS)
		return 0;
	h->ts = 0;
	return h->dir;
}

/* Sets the hint of every slot in `slots` (a bit per enum nasflow_dir_slot). */
static __always_inline void set_dir_hint(__u32 slots, __u16 dir)
{
	__u32 zero = 0;
	struct dir_hint_set *set;
	__u64 pid = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	int i;

	if (slots & ((1U << NASFLOW_DIR_META_SLOTS) - 1)) {
		set = bpf_map_lookup_elem(&thread_dir_hints, &pid);
		if (!set) {
			bpf_map_update_elem(&thread_dir_hints, &pid, &zero_dir_hints, BPF_NOEXIST);
			set = bpf_map_lookup_elem(&thread_dir_hints, &pid);
		}
	} else {
		set = bpf_map_lookup_elem(&dir_hints, &zero);
	}
	if (!set)
		return;
#pragma unroll
	for (i = 0; i < NASFLOW_DS__COUNT; i++) {
		if (!(slots & (1U << i)))
			continue;
		set->slot[i].pid_tgid = pid;
		set->slot[i].ts = now;
		set->slot[i].dir = dir;
	}
}

/* The metadata slot of an operation id, NASFLOW_DS__COUNT if it has none. */
static __always_inline __u32 dir_slot_of(__u16 op)
{
	int i;

#pragma unroll
	for (i = 0; i < NASFLOW_DIR_META_SLOTS; i++) {
		if (dir_slot_ops[i] && dir_slot_ops[i] == op)
			return i;
	}
	return NASFLOW_DS__COUNT;
}

/*
 * The watched directory a dentry is in: the deepest watched one among the dentry itself and
 * its ancestors, up to the root of its super block's tree (a mount's root that lies inside a
 * watched directory is in the map with that directory's id). Devices without watched
 * directories cost one lookup.
 */
static __always_inline __u16 dir_of(struct dentry *d, __u32 dev)
{
	struct nasflow_dir_key key = { .dev = dev };
	struct dentry *parent;
	__u16 *id;
	int i;

	if (!d || !bpf_map_lookup_elem(&watched_devs, &dev))
		return 0;
#pragma clang loop unroll(disable)
	for (i = 0; i < NASFLOW_DIR_DEPTH; i++) {
		key.ino = BPF_CORE_READ(d, d_inode, i_ino);
		id = bpf_map_lookup_elem(&watched_dirs, &key);
		if (id)
			return *id;
		parent = BPF_CORE_READ(d, d_parent);
		if (!parent || parent == d)
			return 0;
		d = parent;
	}
	health_add(NASFLOW_H_DIR_TOO_DEEP, 1);
	return 0;
}

/* The directory an entry is in: its parent's (the entry may have no inode yet). */
static __always_inline void dir_hint_entry(__u32 slots, struct dentry *entry)
{
	struct dentry *parent = BPF_CORE_READ(entry, d_parent);

	set_dir_hint(slots, dir_of(parent, BPF_CORE_READ(parent, d_inode, i_sb, s_dev)));
}

/*
 * The watched directory an inode is in, through one of its names (hard links: any of them),
 * the inode itself included: a watched directory's own attributes count below it (and a
 * GETATTR of the directory made while creating in it, inside nfs_create, keeps the
 * directory of the create).
 */
static __always_inline void dir_hint_inode(__u32 slots, struct inode *inode)
{
	struct hlist_node *alias = BPF_CORE_READ(inode, i_dentry.first);
	struct dentry *d;

	if (!alias) {
		set_dir_hint(slots, 0);
		return;
	}
	d = (struct dentry *)((char *)alias - bpf_core_field_offset(struct dentry, d_u.d_alias));
	set_dir_hint(slots, dir_of(d, BPF_CORE_READ(inode, i_sb, s_dev)));
}

#define FIELD(tp, name) layout.tp.name.offset, layout.tp.name.size
#define RPC_FIELD(name) rpc_layout.name.offset, rpc_layout.name.size

SEC("tracepoint/nfs/nfs_initiate_read")
int nfs_initiate_read(void *ctx)
{
	struct rec r;
	__u32 dev;
	__u16 dir;
	__u64 cgroup, now;

	if (read_rec(ctx, &r))
		return 0;
	dev = field_u(&r, FIELD(read_init, dev));
	cgroup = current_cgroup();
	now = bpf_ktime_get_ns();
	dir = take_dir_hint(NASFLOW_DS_READ, now);
	start_rpc(dev, NASFLOW_OP_READ, field_u(&r, FIELD(read_init, fileid)),
		  field_s(&r, FIELD(read_init, offset)), cgroup, now, dir);
	set_hint(dev, cgroup, now, NASFLOW_OP_READ + 1, dir);
	return 0;
}

SEC("tracepoint/nfs/nfs_readpage_done")
int nfs_readpage_done(void *ctx)
{
	struct rec r;
	__s64 error;
	__u64 res, arg, resend = 0, bytes = 0;

	if (read_rec(ctx, &r))
		return 0;
	error = field_s(&r, FIELD(read_done, error));
	res = field_u(&r, FIELD(read_done, count));
	arg = field_u(&r, FIELD(read_done, arg_count));
	if (error >= 0) {
		bytes = res;
		if (res < arg && !field_u(&r, FIELD(read_done, eof)) && res > 0)
			resend = res;
	}
	finish_rpc(field_u(&r, FIELD(read_done, dev)), NASFLOW_OP_READ,
		   field_u(&r, FIELD(read_done, fileid)), field_s(&r, FIELD(read_done, offset)),
		   error, bytes, resend);
	return 0;
}

SEC("tracepoint/nfs/nfs_initiate_write")
int nfs_initiate_write(void *ctx)
{
	struct rec r;
	__u32 dev;
	__u16 dir;
	__u64 fileid, primary, now;

	if (read_rec(ctx, &r))
		return 0;
	dev = field_u(&r, FIELD(write_init, dev));
	fileid = field_u(&r, FIELD(write_init, fileid));
	now = bpf_ktime_get_ns();
	dir = take_dir_hint(NASFLOW_DS_WRITE, now);
	primary = charge_write(dev, fileid, field_u(&r, FIELD(write_init, count)),
			       current_cgroup(), dir);
	start_rpc(dev, NASFLOW_OP_WRITE, fileid, field_s(&r, FIELD(write_init, offset)), primary, now, dir);
	set_hint(dev, primary, now, NASFLOW_OP_WRITE + 1, dir);
	return 0;
}

SEC("tracepoint/nfs/nfs_writeback_done")
int nfs_writeback_done(void *ctx)
{
	struct rec r;
	__s64 error;
	__u64 res, arg, resend = 0;

	if (read_rec(ctx, &r))
		return 0;
	error = field_s(&r, FIELD(write_done, error));
	res = field_u(&r, FIELD(write_done, count));
	arg = field_u(&r, FIELD(write_done, arg_count));
	if (error >= 0 && res < arg && res > 0)
		resend = res;
	/* WRITE payload bytes were charged when the RPC was sent. */
	finish_rpc(field_u(&r, FIELD(write_done, dev)), NASFLOW_OP_WRITE,
		   field_u(&r, FIELD(write_done, fileid)), field_s(&r, FIELD(write_done, offset)),
		   error, 0, resend);
	return 0;
}

SEC("tracepoint/nfs/nfs_initiate_commit")
int nfs_initiate_commit(void *ctx)
{
	struct dirty_key dkey = {};
	struct dirty_val *dv;
	struct rec r;
	__u64 cgroup = current_cgroup(), now;
	__u16 dir = 0;

	if (read_rec(ctx, &r))
		return 0;
	dkey.dev = field_u(&r, FIELD(commit_init, dev));
	dkey.ino = field_u(&r, FIELD(commit_init, fileid));
	/* A COMMIT makes the last flushed WRITEs durable: charge it to their owner. */
	dv = bpf_map_lookup_elem(&dirty, &dkey);
	if (dv && dv->last_cgroup)
		cgroup = dv->last_cgroup;
	if (dv)
		dir = dv->dir;
	now = bpf_ktime_get_ns();
	start_rpc(dkey.dev, NASFLOW_OP_COMMIT, dkey.ino, field_s(&r, FIELD(commit_init, offset)),
		  cgroup, now, dir);
	set_hint(dkey.dev, cgroup, now, NASFLOW_OP_COMMIT + 1, dir);
	return 0;
}

SEC("tracepoint/nfs/nfs_commit_done")
int nfs_commit_done(void *ctx)
{
	struct rec r;

	if (read_rec(ctx, &r))
		return 0;
	finish_rpc(field_u(&r, FIELD(commit_done, dev)), NASFLOW_OP_COMMIT,
		   field_u(&r, FIELD(commit_done, fileid)), field_s(&r, FIELD(commit_done, offset)),
		   field_s(&r, FIELD(commit_done, error)), 0, 0);
	return 0;
}

/* Remembers, per thread, the inode of an NFS file operation until it returns. */
static __always_inline void stash_call(void *args, struct kiocb *iocb)
{
	struct file *file = BPF_CORE_READ(iocb, ki_filp);
	__u64 id = bpf_get_current_pid_tgid();
	__u64 saved;

	if (!file)
		return;
	saved = (__u64)BPF_CORE_READ(file, f_inode);
	if (bpf_map_update_elem(args, &id, &saved, BPF_ANY))
		health_add(NASFLOW_H_WRITE_ARGS_FULL, 1);
}

/* Takes back what stash_call remembered for this thread: the inode (NULL if none). */
static __always_inline struct inode *take_call(void *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *saved = bpf_map_lookup_elem(args, &id);
	__u64 v;

	if (!saved)
		return NULL;
	v = *saved;
	bpf_map_delete_elem(args, &id);
	return (struct inode *)v;
}

/*
 * A buffered write is charged to its writer at entry, with the bytes it asks to write: no
 * return probe runs on the page-cache path unless application bytes are asked for. A write
 * that copies less (a fault, an error) leaves the difference pending for the file's next
 * flush; the file's size after the write, were it whole, bounds what stays pending.
 */
SEC("kprobe/nfs_file_write")
int BPF_KPROBE(nfs_fwrite_ent, struct kiocb *iocb, struct iov_iter *from)
{
	struct file *file = BPF_CORE_READ(iocb, ki_filp);
	struct inode *inode;
	__u64 count;
	__s64 end, size;
	__u32 flags;

	if (want_app_bytes)
		stash_call(&write_args, iocb);
	if (!file)
		return 0;
	flags = BPF_CORE_READ(file, f_flags);
	/* Direct writes never dirty the page cache: their WRITEs go out in this context. */
	if (flags & o_direct_flag)
		return 0;
	count = BPF_CORE_READ(from, count);
	if (!count)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	size = BPF_CORE_READ(inode, i_size);
	/* The size after the write: an appending write's position is only set later, from the
	 * size; a rewrite inside the file leaves the size as it is. */
	end = (flags & o_append_flag) ? size + (__s64)count : BPF_CORE_READ(iocb, ki_pos) + (__s64)count;
	if (end < size)
		end = size;
	charge_dirty(BPF_CORE_READ(inode, i_sb, s_dev), BPF_CORE_READ(inode, i_ino), current_cgroup(), count, end);
	return 0;
}

/* Only with --app-bytes on: the bytes the call wrote. */
SEC("kretprobe/nfs_file_write")
int BPF_KRETPROBE(nfs_fwrite_ret, long ret)
{
	struct inode *inode = take_call(&write_args);

	if (ret <= 0 || !inode)
		return 0;
	app_bytes(current_cgroup(), BPF_CORE_READ(inode, i_sb, s_dev), NASFLOW_OP_APP_WRITE, (__u64)ret);
	return 0;
}

SEC("kprobe/nfs_file_read")
int BPF_KPROBE(nfs_fread_ent, struct kiocb *iocb)
{
	stash_call(&read_args, iocb);
	return 0;
}

SEC("kretprobe/nfs_file_read")
int BPF_KRETPROBE(nfs_fread_ret, long ret)
{
	struct inode *inode = take_call(&read_args);

	if (ret <= 0 || !inode)
		return 0;
	app_bytes(current_cgroup(), BPF_CORE_READ(inode, i_sb, s_dev), NASFLOW_OP_APP_READ, (__u64)ret);
	return 0;
}

/*
 * Operation id of a procedure name. User space loads every NFS procedure name the kernel
 * uses before attaching; a name it did not know (a newer kernel's) gets the next free id,
 * or, on kernels without fetching atomics (before 5.12), counts as unnamed.
 */
static __always_inline __u16 proc_id(const struct nasflow_proc_name *name)
{
	__u16 *id = bpf_map_lookup_elem(&proc_ids, name);

	if (id)
		return *id;
	if (!count_new_procs)
		return NASFLOW_OP_SKIP;
#ifdef NASFLOW_COMPAT
	health_add(NASFLOW_H_PROC_NAMES_FULL, 1);
	return NASFLOW_OP_RPC_UNNAMED;
#else
	__u32 n = __sync_fetch_and_add(&next_proc_id, 1);
	__u16 fresh;

	if (n >= NASFLOW_OP_SKIP - first_dynamic_proc) {
		health_add(NASFLOW_H_PROC_NAMES_FULL, 1);
		return NASFLOW_OP_RPC_UNNAMED;
	}
	fresh = first_dynamic_proc + n;
	if (!bpf_map_update_elem(&proc_ids, name, &fresh, BPF_NOEXIST))
		return fresh;
	/* Another CPU named it first, or the table is full. */
	id = bpf_map_lookup_elem(&proc_ids, name);
	if (id)
		return *id;
	health_add(NASFLOW_H_PROC_NAMES_FULL, 1);
	return NASFLOW_OP_RPC_UNNAMED;
#endif
}

static __always_inline struct nasflow_rpc_task_key task_key(const struct rec *r, __u16 toff, __u16 tsize,
							    __u16 coff, __u16 csize)
{
	struct nasflow_rpc_task_key key = {
		.client_id = field_u(r, coff, csize),
		.task_id = field_u(r, toff, tsize),
	};

	return key;
}

/* The counter key of a task's operation, with a flag (NASFLOW_OP_RTT, _RETRANS) or 0. */
static __always_inline struct nasflow_io_key task_io_key(const struct nasflow_rpc_task *task, __u16 flag,
							 __u16 err)
{
	struct nasflow_io_key io = {
		.cgroup = task->cgroup,
		.dev = task->dev,
		.op = task->op | flag,
		.err = err,
		.dir = task->dir,
	};

	return io;
}

/* A thread's hint, if fresh; an exact (data RPC) hint is used once: it is aged in place,
 * cheaper than deleting it. */
static __always_inline int take_hint(__u64 now, struct rpc_hint *out)
{
	__u32 zero = 0;
	struct rpc_hint *h = bpf_map_lookup_elem(&rpc_hints, &zero);

	if (!h || h->pid_tgid != bpf_get_current_pid_tgid() || now - h->ts > HINT_NS)
		return 0;
	*out = *h;
	if (out->exact)
		h->ts = 0;
	return 1;
}

SEC("tracepoint/sunrpc/rpc_task_begin")
int rpc_task_begin(void *ctx)
{
	struct nasflow_rpc_task_key key;
	struct nasflow_rpc_task task = { .state = NASFLOW_RPC_BEGUN };
	struct rpc_hint hint;
	struct rec r;

	if (read_rec(ctx, &r))
		return 0;
	key = task_key(&r, RPC_FIELD(begin_task_id), RPC_FIELD(begin_client_id));
	task.start_ns = bpf_ktime_get_ns();
	if (take_hint(task.start_ns, &hint)) {
		task.dev = hint.dev;
		if (hint.exact) {
			/* A READ, WRITE or COMMIT the nfs events count: nothing to name. */
			task.cgroup = hint.cgroup;
			task.op = hint.exact - 1;
			task.dir = hint.dir;
			task.state = NASFLOW_RPC_BEGUN_DATA;
		}
	}
	if (task.state != NASFLOW_RPC_BEGUN_DATA)
		task.cgroup = current_cgroup();
	bpf_map_update_elem(&rpc_tasks, &key, &task, BPF_ANY);
	return 0;
}

/* The mount of a task's client: a fresh hint teaches it (RPC client ids are reused after
 * unmount, so a fresh hint wins), else what the client is known for, else 0 (unknown). */
static __always_inline void client_mount(__u32 client_id, struct nasflow_rpc_task *task)
{
	__u32 *dev = bpf_map_lookup_elem(&rpc_clients, &client_id);

	if (task->dev) {
		if (!dev || *dev != task->dev)
			bpf_map_update_elem(&rpc_clients, &client_id, &task->dev, BPF_ANY);
	} else if (dev) {
		task->dev = *dev;
	}
}

/* What rpc_request's record holds from its program name on: the program name, then the
 * procedure name (both `__string`s, stored one after the other). */
struct req_names {
	__u8 prog[4];
	__u8 proc[NASFLOW_PROC_NAME];
};

/*
 * The operation id of an RPC named in rpc_request's record, or -1 when it is not NFS. One
 * fixed-size copy of the names (no string helpers): an NFS RPC's program name is "nfs", so
 * its procedure name starts 4 bytes later. Bytes from the procedure name's NUL on are
 * cleared (the copy may reach past the record, into the same per-CPU trace buffer).
 */
static __always_inline int name_op(void *ctx, const struct rec *r)
{
	struct nasflow_proc_name name = {};
	struct req_names names;
	__u32 prog = field_u(r, RPC_FIELD(req_progname));
	__u32 proc = field_u(r, RPC_FIELD(req_procname));
	__u32 end = 0;
	int i;

	if ((proc & 0xffff) != (prog & 0xffff) + 4)
		return -1;
	if (bpf_probe_read_kernel(&names, sizeof(names), (const char *)ctx + (prog & 0xffff))) {
		health_add(NASFLOW_H_READ_FAILED, 1);
		return -1;
	}
	if (names.prog[0] != 'n' || names.prog[1] != 'f' || names.prog[2] != 's' || names.prog[3] != 0)
		return -1;
#pragma unroll
	for (i = 0; i < NASFLOW_PROC_NAME - 1; i++) {
		if (names.proc[i] == 0)
			end = 1;
		name.name[i] = end ? 0 : names.proc[i];
	}
	return proc_id(&name);
}

/* Whether rpc_request's record can name the data operation `op`, by its name lengths alone. */
static __always_inline int data_names_fit(const struct rec *r, __u16 op)
{
	__u32 prog = field_u(r, RPC_FIELD(req_progname));
	__u32 len = field_u(r, RPC_FIELD(req_procname)) >> 16;

	if ((prog >> 16) != sizeof("nfs"))
		return 0;
	switch (op) {
	case NASFLOW_OP_READ:
		return len == sizeof("READ") || len == sizeof("READ_PLUS");
	case NASFLOW_OP_WRITE:
		return len == sizeof("WRITE");
	case NASFLOW_OP_COMMIT:
		return len == sizeof("COMMIT");
	default:
		return 0;
	}
}

SEC("tracepoint/sunrpc/rpc_request")
int rpc_request(void *ctx)
{
	struct nasflow_rpc_task_key key;
	struct nasflow_rpc_task *task, fresh = {};
	struct rec r;
	int op;

	if (read_rec(ctx, &r))
		return 0;
	key = task_key(&r, RPC_FIELD(req_task_id), RPC_FIELD(req_client_id));
	task = bpf_map_lookup_elem(&rpc_tasks, &key);
	if (!task) {
		/* Begun before attach: charged to whoever runs it now. */
		fresh.cgroup = current_cgroup();
		fresh.start_ns = bpf_ktime_get_ns();
		fresh.state = NASFLOW_RPC_BEGUN;
		bpf_map_update_elem(&rpc_tasks, &key, &fresh, BPF_ANY);
		task = bpf_map_lookup_elem(&rpc_tasks, &key);
		if (!task)
			return 0;
	}
	switch (task->state) {
	case NASFLOW_RPC_BEGUN_DATA:
		/* The hint may be stale (its thread left this CPU and came back): trust it only if
		 * the record's name lengths fit (program "nfs", procedure READ/READ_PLUS, WRITE or
		 * COMMIT, each stored with its NUL), else name the task as any other. */
		if (data_names_fit(&r, task->op))
			break;
		task->dev = 0;
		/* fall through */
	case NASFLOW_RPC_BEGUN:
		/* The only time a task's names are read: once per RPC, for RPCs other than
		 * READ, WRITE and COMMIT (and for one whose hint did not fit). */
		op = name_op(ctx, &r);
		if (op < 0 || op == NASFLOW_OP_SKIP) {
			task->state = NASFLOW_RPC_OTHER;
			return 0;
		}
		task->op = op;
		/* Named now: the directory a kprobe found for an operation of its kind. */
		task->dir = take_dir_hint(dir_slot_of(op), bpf_ktime_get_ns());
		break;
	case NASFLOW_RPC_ENDED:
		/* Restarted (a short READ resent, a retried OPEN): a new round trip, same op. */
		task->start_ns = bpf_ktime_get_ns();
		break;
	default:
		return 0;
	}
	client_mount(key.client_id, task);
	task->err = 0;
	task->state = NASFLOW_RPC_RUNNING;
	return 0;
}

/* A data RPC ends on this thread: whatever xid the slot holds is not its own (yet). */
static __always_inline void forget_slow_rpc(void)
{
	__u32 zero = 0;
	struct nasflow_slow_rpc *f = bpf_map_lookup_elem(&slow_rpc, &zero);

	if (f)
		f->at_ns = 0;
}

/*
 * The xid and round trip of an RPC that just ended: a slow one waiting in slow_pending is
 * reported with them; for READ, WRITE and COMMIT they are left for the nfs *_done event that
 * follows on this thread.
 */
static __noinline int slow_rpc_facts(struct nasflow_rpc_task_key *key, struct nasflow_rpc_task *task, __u32 xid,
				      __u64 rtt_us)
{
	struct nasflow_slow_op *pending, slow;
	struct nasflow_slow_rpc *f;
	__u32 zero = 0;
	__u32 rtt = rtt_us > 0xffffffffULL ? 0xffffffffU : (__u32)rtt_us;

	if (task->op <= NASFLOW_OP_COMMIT) {
		f = bpf_map_lookup_elem(&slow_rpc, &zero);
		if (f) {
			f->pid_tgid = bpf_get_current_pid_tgid();
			f->at_ns = bpf_ktime_get_ns();
			f->op = task->op;
			f->xid = xid;
			f->rtt_us = rtt;
		}
		return 0;
	}
	if (!task->slow)
		return 0;
	task->slow = 0;
	pending = bpf_map_lookup_elem(&slow_pending, key);
	/* Another RPC's that reused the task id after an RPC that never got here: not ours. */
	if (!pending || pending->start_ns != task->start_ns)
		return 0;
	slow = *pending;
	/* User space may have taken it (an RPC it thought would never see this event). */
	if (bpf_map_delete_elem(&slow_pending, key))
		return 0;
	slow.has_rpc = 1;
	slow.xid = xid;
	slow.rtt_us = rtt;
	return emit_slow(&slow);
}

SEC("tracepoint/sunrpc/rpc_task_end")
int rpc_task_end(void *ctx)
{
	struct nasflow_rpc_task_key key;
	struct nasflow_io_key io;
	struct nasflow_rpc_task *task;
	struct rec r;
	__s64 status;
	__u64 now;

	if (read_rec(ctx, &r))
		return 0;
	key = task_key(&r, RPC_FIELD(end_task_id), RPC_FIELD(end_client_id));
	task = bpf_map_lookup_elem(&rpc_tasks, &key);
	if (!task) {
		health_add(NASFLOW_H_RPC_UNMATCHED, 1);
		return 0;
	}
	if (task->state != NASFLOW_RPC_RUNNING)
		return 0;
	status = field_s(&r, RPC_FIELD(end_status));
	task->err = status < 0 ? (__u16)(-status) : 0;
	task->state = NASFLOW_RPC_ENDED;
	/* READ, WRITE and COMMIT are counted with their bytes by the nfs tracepoints. */
	if (task->op <= NASFLOW_OP_COMMIT) {
		if (slow_op_ns)
			forget_slow_rpc();
		return 0;
	}
	io = task_io_key(task, 0, task->err);
	now = bpf_ktime_get_ns();
	account(&io, 1, 0, now - task->start_ns, 1);
	if (slow_op_ns && now - task->start_ns >= slow_op_ns && slow_budget_ok(now)) {
		struct nasflow_slow_op slow = {
			.cgroup = io.cgroup,
			.start_ns = task->start_ns,
			.duration_ns = now - task->start_ns,
			.dev = io.dev,
			.op = io.op,
			.err = io.err,
			.dir = io.dir,
		};

		/* Reported by rpc_stats_latency with its xid and round trip, or now. */
		if (slow_waits_for_rpc && !bpf_map_update_elem(&slow_pending, &key, &slow, BPF_NOEXIST))
			task->slow = 1;
		else
			emit_slow(&slow);
	}
	return 0;
}

SEC("tracepoint/sunrpc/rpc_stats_latency")
int rpc_stats_lat(void *ctx)
{
	struct nasflow_rpc_task_key key;
	struct nasflow_io_key io;
	struct nasflow_rpc_task *task;
	struct rec r;
	__u64 rtt_us;

	if (read_rec(ctx, &r))
		return 0;
	key = task_key(&r, RPC_FIELD(lat_task_id), RPC_FIELD(lat_client_id));
	task = bpf_map_lookup_elem(&rpc_tasks, &key);
	if (!task || task->state != NASFLOW_RPC_ENDED)
		return 0;
	/* No reply, no round trip (rtt 0): timed out or never sent. */
	rtt_us = field_u(&r, RPC_FIELD(lat_rtt));
	if (slow_op_ns)
		slow_rpc_facts(&key, task, (__u32)field_u(&r, RPC_FIELD(lat_xid)), rtt_us);
	if (!rtt_us)
		return 0;
	io = task_io_key(task, NASFLOW_OP_RTT, task->err);
	hist_add(&io, rtt_us * 1000);
	return 0;
}

SEC("tracepoint/sunrpc/xprt_retransmit")
int xprt_retransmit(void *ctx)
{
	struct nasflow_rpc_task_key key;
	struct nasflow_io_key io;
	struct nasflow_rpc_task *task;
	struct rec r;

	if (read_rec(ctx, &r))
		return 0;
	key = task_key(&r, RPC_FIELD(rtx_task_id), RPC_FIELD(rtx_client_id));
	task = bpf_map_lookup_elem(&rpc_tasks, &key);
	if (!task || task->state != NASFLOW_RPC_RUNNING)
		return 0;
	io = task_io_key(task, NASFLOW_OP_RETRANS, 0);
	account(&io, 1, 0, 0, 0);
	return 0;
}

/* nfs events that name the mount a thread is about to send RPCs for. */
static __always_inline int hint_from(void *ctx, __u32 idx)
{
	struct rec r;
	__u32 dev;

	if (idx >= NASFLOW_HINT_EVENTS || read_rec(ctx, &r))
		return 0;
	dev = field_u(&r, rpc_layout.hint_dev[idx].offset, rpc_layout.hint_dev[idx].size);
	if (dev)
		set_hint(dev, 0, bpf_ktime_get_ns(), 0, 0);
	return 0;
}

SEC("tracepoint/nfs/nfs_getattr_enter")
int hint_getattr(void *ctx) { return hint_from(ctx, 0); }

SEC("tracepoint/nfs/nfs_access_enter")
int hint_access(void *ctx) { return hint_from(ctx, 1); }

SEC("tracepoint/nfs/nfs_lookup_enter")
int hint_lookup(void *ctx) { return hint_from(ctx, 2); }

SEC("tracepoint/nfs/nfs_lookup_revalidate_enter")
int hint_lookup_rv(void *ctx) { return hint_from(ctx, 3); }

SEC("tracepoint/nfs/nfs_revalidate_inode_enter")
int hint_revalidate(void *ctx) { return hint_from(ctx, 4); }

SEC("tracepoint/nfs/nfs_atomic_open_enter")
int hint_open(void *ctx) { return hint_from(ctx, 5); }

/*
 * Directories (--directories): kprobes on the functions that know the file or the parent
 * of an operation find its watched directory just before the operation's RPC starts in the
 * same thread. nfs_pgio_header starts with its inode (5.10 to 6.12), so no module BTF is
 * needed.
 */
SEC("kprobe/nfs_initiate_read")
int BPF_KPROBE(dir_read, void *hdr)
{
	struct inode *inode = NULL;

	bpf_probe_read_kernel(&inode, sizeof(inode), hdr);
	dir_hint_inode(1U << NASFLOW_DS_READ, inode);
	return 0;
}

SEC("kprobe/nfs_initiate_write")
int BPF_KPROBE(dir_write, void *hdr)
{
	struct inode *inode = NULL;

	bpf_probe_read_kernel(&inode, sizeof(inode), hdr);
	dir_hint_inode(1U << NASFLOW_DS_WRITE, inode);
	return 0;
}

/* GETATTR of a file whose cached attributes expired. */
SEC("kprobe/__nfs_revalidate_inode")
int BPF_KPROBE(dir_getattr, void *server, struct inode *inode)
{
	dir_hint_inode(1U << NASFLOW_DS_GETATTR, inode);
	return 0;
}

SEC("kprobe/nfs_lookup")
int BPF_KPROBE(dir_lookup, struct inode *dir, struct dentry *dentry)
{
	dir_hint_entry(1U << NASFLOW_DS_LOOKUP, dentry);
	return 0;
}

SEC("kprobe/nfs_atomic_open")
int BPF_KPROBE(dir_open, struct inode *dir, struct dentry *dentry)
{
	dir_hint_entry(1U << NASFLOW_DS_OPEN | 1U << NASFLOW_DS_CREATE, dentry);
	return 0;
}

/* The CREATE of an NFSv3 file, since 6.0 also made by opens (nfs_atomic_open_v23); before,
 * it is only reached through nfs_create. */
SEC("kprobe/nfs_do_create")
int BPF_KPROBE(dir_docreate, struct inode *dir, struct dentry *dentry)
{
	dir_hint_entry(1U << NASFLOW_DS_CREATE, dentry);
	return 0;
}

SEC("kprobe/nfs_unlink")
int BPF_KPROBE(dir_unlink, struct inode *dir, struct dentry *dentry)
{
	dir_hint_entry(1U << NASFLOW_DS_REMOVE, dentry);
	return 0;
}

SEC("kprobe/nfs_rmdir")
int BPF_KPROBE(dir_rmdir, struct inode *dir, struct dentry *dentry)
{
	dir_hint_entry(1U << NASFLOW_DS_RMDIR | 1U << NASFLOW_DS_REMOVE, dentry);
	return 0;
}

/* nfs_create and nfs_mkdir: the dentry is the second argument before 5.12, the third after. */
static __always_inline struct dentry *create_dentry(struct pt_regs *ctx)
{
	/* Both registers are read at fixed context offsets (volatile keeps the compiler from
	 * turning the choice into a variable offset, which the verifier refuses). */
	volatile unsigned long second = PT_REGS_PARM2(ctx), third = PT_REGS_PARM3(ctx);

	return (struct dentry *)(create_dentry_arg == 2 ? second : third);
}

SEC("kprobe/nfs_create")
int BPF_KPROBE(dir_create)
{
	dir_hint_entry(1U << NASFLOW_DS_CREATE, create_dentry(ctx));
	return 0;
}

SEC("kprobe/nfs_mkdir")
int BPF_KPROBE(dir_mkdir)
{
	dir_hint_entry(1U << NASFLOW_DS_MKDIR | 1U << NASFLOW_DS_CREATE, create_dentry(ctx));
	return 0;
}

/* nfs_setattr: the dentry is the first argument before 5.12, the second after. */
SEC("kprobe/nfs_setattr")
int BPF_KPROBE(dir_setattr)
{
	volatile unsigned long first = PT_REGS_PARM1(ctx), second = PT_REGS_PARM2(ctx);

	dir_hint_entry(1U << NASFLOW_DS_SETATTR, (struct dentry *)(create_dentry_arg == 2 ? first : second));
	return 0;
}

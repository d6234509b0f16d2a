// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * nasflow's NFS server probe: counts what the kernel's nfsd serves per (export, client
 * address, operation, status), with payload bytes and a log2 latency histogram, aggregated
 * in the kernel.
 *
 * An nfsd thread serves one request at a time, so the request's facts are gathered per
 * thread as its events pass:
 * - sunrpc:svc_process starts a request: version, procedure, client address (the NFS
 *   program and its ACL sibling nfsacl; lockd and the v4 callbacks are left out);
 * - a kprobe on fh_verify sees each file handle the request uses: the export is named by
 *   the handle's fsid (as mountd keys exports), not by the tracepoints' fh_hash;
 * - nfsd:nfsd_read_io_done / nfsd_write_io_done give the bytes a READ or WRITE moved
 *   to or from the file system (v2, v3 and v4 alike; READs past the end of the file
 *   move nothing; a failed WRITE, nothing);
 * - nfsd:nfsd_compound_status ends each NFSv4 operation inside a COMPOUND, with its status;
 * - sunrpc:svc_xdr_sendto ends the request: an NFSv2/v3 procedure is counted there with
 *   the status read from the reply's first words.
 * No module BTF is needed: the events' fields come from tracefs layouts, and the file
 * handle (struct knfsd_fh, at the start of struct svc_fh) has had one layout since 2.6.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "nasflow.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field layouts of the server events, from tracefs format files. */
const volatile struct nasflow_svc_layout svc_layout = {};
/* Operation latency histograms (user space also sizes the histogram map down when off). */
const volatile __u8 want_latency = 1;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct nasflow_svc_key);
	__type(value, struct nasflow_svc_counters);
} svc_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct nasflow_svc_key);
	__type(value, struct nasflow_io_hist);
} svc_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NASFLOW_SH__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} svc_health SEC(".maps");

/* NFSv4 operation name to number; user space fills it before attaching. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, struct nasflow_svc_op_name);
	__type(value, __u16);
} svc_op_ids SEC(".maps");

/* The request an nfsd thread is serving. */
struct svc_thread {
	/* svc_process time, and the end of the last v4 operation */
	__u64 start_ns;
	__u64 op_ns;
	/* payload of the current operation (read/write done) */
	__u64 bytes;
	__u32 proc;
	__u32 xid;
	/* 1 while an nfsd request is served */
	__u32 active;
	/* NASFLOW_SVC_OP_ACL for the NFS ACL program, else 0 */
	__u32 program;
	/* the key being built: export, client, version */
	struct nasflow_svc_key key;
};

/* One entry per nfsd thread (a few to a few hundred); a thread's entry is reused for its
 * next request. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct svc_thread);
} svc_threads SEC(".maps");

struct nasflow_io_hist svc_zero_hist = {};
struct svc_thread zero_thread = {};

static __always_inline void svc_health_add(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&svc_health, &idx);

	if (v)
		*v += 1;
}

static __always_inline int svc_read_rec(void *ctx, struct rec *r)
{
	if (bpf_probe_read_kernel(r, sizeof(*r), ctx)) {
		svc_health_add(NASFLOW_SH_READ_FAILED);
		return -1;
	}
	return 0;
}

#define SVC_FIELD(name) svc_layout.name.offset, svc_layout.name.size

static __always_inline struct svc_thread *this_thread(void)
{
	__u32 pid = (__u32)bpf_get_current_pid_tgid();

	return bpf_map_lookup_elem(&svc_threads, &pid);
}

/* Counts one served operation under the thread's key. */
static __noinline int svc_account(struct nasflow_svc_key *key, __u64 bytes, __u64 latency_ns)
{
	struct nasflow_svc_counters *c;
	struct nasflow_io_hist *h;
	__u32 slot;

	c = bpf_map_lookup_elem(&svc_counters, key);
	if (!c) {
		struct nasflow_svc_counters zero = {};

		bpf_map_update_elem(&svc_counters, key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&svc_counters, key);
		if (!c) {
			svc_health_add(NASFLOW_SH_COUNTERS_FULL);
			return 0;
		}
	}
	c->ops += 1;
	c->bytes += bytes;
	if (!want_latency)
		return 0;
	h = bpf_map_lookup_elem(&svc_hist, key);
	if (!h) {
		bpf_map_update_elem(&svc_hist, key, &svc_zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&svc_hist, key);
		if (!h) {
			svc_health_add(NASFLOW_SH_HIST_FULL);
			return 0;
		}
	}
	slot = latency_slot(latency_ns);
	if (slot < NASFLOW_HIST_SLOTS)
		__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, latency_ns);
	return 0;
}

/* Copies a `__data_loc char[]` string of the record at ctx into out (NUL-padded). The copy
 * may reach past the record into the same per-CPU trace buffer; bytes from the NUL on are
 * cleared. */
static __always_inline int copy_string(void *ctx, __u32 loc, __u8 *out, __u32 size)
{
	if (bpf_probe_read_kernel(out, size, (const char *)ctx + (loc & 0xffff)))
		return -1;
	return 0;
}

SEC("tracepoint/sunrpc/svc_process")
int svc_process(void *ctx)
{
	__u32 pid = (__u32)bpf_get_current_pid_tgid();
	struct svc_thread *t;
	struct rec r;
	__u8 service[8] = {};
	__u32 program;
	__u32 cut = NASFLOW_SVC_ADDR, end = 0;
	int i;

	if (svc_read_rec(ctx, &r))
		return 0;
	t = bpf_map_lookup_elem(&svc_threads, &pid);
	if (copy_string(ctx, field_u(&r, SVC_FIELD(proc_service)), service, sizeof(service)))
		service[0] = 0;
	/* "nfsd", or "nfsacl" (ACL calls on the same exports); not lockd or the v4 callbacks */
	if (service[0] == 'n' && service[1] == 'f' && service[2] == 's' && service[3] == 'd' && service[4] == 0) {
		program = 0;
	} else if (service[0] == 'n' && service[1] == 'f' && service[2] == 's' && service[3] == 'a' &&
		   service[4] == 'c' && service[5] == 'l' && service[6] == 0) {
		program = NASFLOW_SVC_OP_ACL;
	} else {
		if (t)
			t->active = 0;
		return 0;
	}
	if (!t) {
		bpf_map_update_elem(&svc_threads, &pid, &zero_thread, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&svc_threads, &pid);
		if (!t) {
			svc_health_add(NASFLOW_SH_THREADS_FULL);
			return 0;
		}
	}
	t->start_ns = bpf_ktime_get_ns();
	t->op_ns = t->start_ns;
	t->bytes = 0;
	t->xid = field_u(&r, SVC_FIELD(proc_xid));
	t->proc = field_u(&r, SVC_FIELD(proc_proc));
	t->program = program;
	t->key.vers = field_u(&r, SVC_FIELD(proc_vers));
	t->key.fsid_type = NASFLOW_FSID_NONE;
	t->key.op = 0;
	t->key.status = 0;
	__builtin_memset(t->key.fsid, 0, sizeof(t->key.fsid));
	if (copy_string(ctx, field_u(&r, SVC_FIELD(proc_addr)), t->key.addr, sizeof(t->key.addr))) {
		svc_health_add(NASFLOW_SH_READ_FAILED);
		__builtin_memset(t->key.addr, 0, sizeof(t->key.addr));
	}
	/* "address:port" (IPv6 as "[address]:port"): cut at the last ':' before the NUL, so
	 * one client's connections share its series. */
#pragma unroll
	for (i = 0; i < NASFLOW_SVC_ADDR; i++) {
		if (t->key.addr[i] == 0)
			end = 1;
		if (!end && t->key.addr[i] == ':')
			cut = i;
	}
#pragma unroll
	for (i = 0; i < NASFLOW_SVC_ADDR; i++) {
		if (i >= cut)
			t->key.addr[i] = 0;
	}
	t->active = 1;
	return 0;
}

/* fsid bytes of each fsid type (the kernel's key_len()). */
static __always_inline __u32 fsid_len(__u8 type)
{
	switch (type) {
	case 0: /* FSID_DEV */
	case 3: /* FSID_ENCODE_DEV */
	case 4: /* FSID_UUID4_INUM */
	case 5: /* FSID_UUID8 */
		return 8;
	case 1: /* FSID_NUM */
		return 4;
	case 2: /* FSID_MAJOR_MINOR */
		return 12;
	case 6: /* FSID_UUID16 */
		return 16;
	case 7: /* FSID_UUID16_INUM */
		return 24;
	default:
		return 0;
	}
}

/* struct knfsd_fh: fh_size, then version 1 handles' version, auth type, fsid type, fileid
 * type and the fsid words. */
struct knfsd_fh_head {
	__u32 size;
	__u8 version;
	__u8 auth_type;
	__u8 fsid_type;
	__u8 fileid_type;
	__u8 fsid[NASFLOW_FSID_BYTES];
};

SEC("kprobe/fh_verify")
int BPF_KPROBE(svc_fh_verify, void *rqstp, void *fhp)
{
	struct knfsd_fh_head fh;
	struct svc_thread *t = this_thread();
	__u32 len;
	int i;

	if (!t || !t->active)
		return 0;
	if (bpf_probe_read_kernel(&fh, sizeof(fh), fhp)) {
		svc_health_add(NASFLOW_SH_READ_FAILED);
		return 0;
	}
	len = fsid_len(fh.fsid_type);
	/* Old-style (version 0) handles and sizes that cannot hold the fsid name no export. */
	if (fh.version != 1 || !len || fh.size < 4 + len)
		return 0;
	t->key.fsid_type = fh.fsid_type;
#pragma unroll
	for (i = 0; i < NASFLOW_FSID_BYTES; i++)
		t->key.fsid[i] = i < len ? fh.fsid[i] : 0;
	return 0;
}

static __always_inline int add_payload(void *ctx, __u16 off, __u16 size)
{
	struct svc_thread *t = this_thread();
	struct rec r;

	if (!t || !t->active || svc_read_rec(ctx, &r))
		return 0;
	t->bytes += field_u(&r, off, size);
	return 0;
}

SEC("tracepoint/nfsd/nfsd_read_io_done")
int svc_read_done(void *ctx) { return add_payload(ctx, SVC_FIELD(read_len)); }

SEC("tracepoint/nfsd/nfsd_write_io_done")
int svc_write_done(void *ctx) { return add_payload(ctx, SVC_FIELD(write_len)); }

SEC("tracepoint/nfsd/nfsd_compound_status")
int svc_op_done(void *ctx)
{
	struct nasflow_svc_op_name name = {};
	struct nasflow_svc_key key;
	struct svc_thread *t = this_thread();
	__u64 now;
	__u16 *id;
	__s32 status;
	struct rec r;
	__u32 end = 0;
	int i;

	if (!t || !t->active || t->key.vers != 4 || svc_read_rec(ctx, &r))
		return 0;
	if (copy_string(ctx, field_u(&r, SVC_FIELD(op_name)), name.name, sizeof(name.name))) {
		svc_health_add(NASFLOW_SH_READ_FAILED);
		return 0;
	}
#pragma unroll
	for (i = 0; i < NASFLOW_SVC_OP_NAME; i++) {
		if (name.name[i] == 0)
			end = 1;
		if (end)
			name.name[i] = 0;
	}
	id = bpf_map_lookup_elem(&svc_op_ids, &name);
	status = field_u(&r, SVC_FIELD(op_status));
	now = bpf_ktime_get_ns();
	t->key.op = id ? *id : NASFLOW_SVC_OP_UNKNOWN;
	t->key.status = status > 0 ? (__u16)status : 0;
	/* The counter key goes to the helpers from the stack (the verifier refuses map values
	 * as a subprogram's pointer argument). */
	key = t->key;
	svc_account(&key, t->bytes, now - t->op_ns);
	t->op_ns = now;
	t->bytes = 0;
	return 0;
}

/* The reply head: xid, REPLY, MSG_ACCEPTED, verifier flavor and length, accept_stat, then
 * the procedure's status (all big-endian). Kernels before 5.11 put the TCP record marker
 * first: the xid says where the reply starts. */
struct reply_head {
	__u32 w[8];
};

SEC("tracepoint/sunrpc/svc_xdr_sendto")
int svc_sendto(void *ctx)
{
	struct svc_thread *t = this_thread();
	struct nasflow_svc_key key;
	struct reply_head h;
	struct rec r;
	const __u8 *head;
	__u32 xid, base, verf, accept, status = 0, at;
	__u64 now;

	if (!t || !t->active || svc_read_rec(ctx, &r))
		return 0;
	t->active = 0;
	/* NFSv4 COMPOUND operations were counted one by one. */
	if (t->key.vers == 4 && t->proc == 1 && !t->program)
		return 0;
	now = bpf_ktime_get_ns();
	xid = field_u(&r, SVC_FIELD(send_xid));
	head = (const __u8 *)field_u(&r, SVC_FIELD(send_head));
	if (head && t->proc != 0 && !bpf_probe_read_kernel(&h, sizeof(h), head)) {
		/* Constant indices only: the verifier refuses arithmetic the compiler may turn a
		 * variable index on the stack into. */
		if (__builtin_bswap32(h.w[0]) == xid && __builtin_bswap32(h.w[1]) == 1)
			base = 0;
		else if (__builtin_bswap32(h.w[1]) == xid && __builtin_bswap32(h.w[2]) == 1)
			base = 1;
		else
			base = 2;
		if (base > 1) {
			svc_health_add(NASFLOW_SH_NO_STATUS);
		} else {
			verf = __builtin_bswap32(base ? h.w[5] : h.w[4]);
			at = (base + 5) * 4 + ((verf + 3) & ~3U);
			if (verf > 400 || bpf_probe_read_kernel(&accept, 4, head + (at & 0x1ff))) {
				svc_health_add(NASFLOW_SH_NO_STATUS);
			} else if ((accept = __builtin_bswap32(accept)) != 0) {
				status = NASFLOW_SVC_RPC_ERROR | (accept & 0xff);
			} else if (!bpf_probe_read_kernel(&status, 4, head + ((at + 4) & 0x3ff))) {
				status = __builtin_bswap32(status) & 0x7fff;
			} else {
				status = 0;
				svc_health_add(NASFLOW_SH_NO_STATUS);
			}
		}
	}
	t->key.op = (t->proc & 0xfff) | t->program;
	t->key.status = status;
	key = t->key;
	svc_account(&key, t->bytes, now - t->start_ns);
	return 0;
}

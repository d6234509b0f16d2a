// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * Empty programs on nasflow's tracepoints: the baseline that BENCHMARKS.md sets each probe
 * program's cost against (kernel.bpf_stats_enabled, same tracepoint, same run).
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Program names stay under 16 bytes so the kernel's (bpftool's) names are distinct. */
#define NOOP(name, event)                    \
	SEC("tracepoint/nfs/" #event)        \
	int name(void *ctx)                  \
	{                                    \
		return 0;                    \
	}

NOOP(noop_rd_init, nfs_initiate_read)
NOOP(noop_rd_done, nfs_readpage_done)
NOOP(noop_wr_init, nfs_initiate_write)
NOOP(noop_wr_done, nfs_writeback_done)
NOOP(noop_cm_init, nfs_initiate_commit)
NOOP(noop_cm_done, nfs_commit_done)

#define NOOP_RPC(name, event)                   \
	SEC("tracepoint/sunrpc/" #event)       \
	int name(void *ctx)                     \
	{                                       \
		return 0;                       \
	}

NOOP_RPC(noop_rpc_begin, rpc_task_begin)
NOOP_RPC(noop_rpc_req, rpc_request)
NOOP_RPC(noop_rpc_end, rpc_task_end)
NOOP_RPC(noop_rpc_lat, rpc_stats_latency)
NOOP_RPC(noop_rpc_rtx, xprt_retransmit)
NOOP(noop_h_getattr, nfs_getattr_enter)
NOOP(noop_h_access, nfs_access_enter)
NOOP(noop_h_lookup, nfs_lookup_enter)
NOOP(noop_h_lkp_rv, nfs_lookup_revalidate_enter)
NOOP(noop_h_reval, nfs_revalidate_inode_enter)
NOOP(noop_h_open, nfs_atomic_open_enter)

SEC("kprobe/nfs_file_write")
int noop_fw_entry(void *ctx)
{
	return 0;
}

SEC("kretprobe/nfs_file_write")
int noop_fw_exit(void *ctx)
{
	return 0;
}

SEC("kprobe/nfs_file_read")
int noop_fr_entry(void *ctx)
{
	return 0;
}

SEC("kretprobe/nfs_file_read")
int noop_fr_exit(void *ctx)
{
	return 0;
}

/* The server probe's hooks (nfsd.bpf.c). */
NOOP_RPC(noop_svc_proc, svc_process)
NOOP_RPC(noop_svc_send, svc_xdr_sendto)

#define NOOP_NFSD(name, event)                 \
	SEC("tracepoint/nfsd/" #event)         \
	int name(void *ctx)                     \
	{                                       \
		return 0;                       \
	}

NOOP_NFSD(noop_svc_read, nfsd_read_io_done)
NOOP_NFSD(noop_svc_write, nfsd_write_io_done)
NOOP_NFSD(noop_svc_op, nfsd_compound_status)

SEC("kprobe/fh_verify")
int noop_svc_fh(void *ctx)
{
	return 0;
}

#define NOOP_KPROBE(name, function)            \
	SEC("kprobe/" #function)               \
	int name(void *ctx)                    \
	{                                      \
		return 0;                      \
	}

NOOP_KPROBE(noop_dir_read, nfs_initiate_read)
NOOP_KPROBE(noop_dir_write, nfs_initiate_write)
NOOP_KPROBE(noop_dir_getattr, __nfs_revalidate_inode)
NOOP_KPROBE(noop_dir_lookup, nfs_lookup)
NOOP_KPROBE(noop_dir_open, nfs_atomic_open)
NOOP_KPROBE(noop_dir_create2, nfs_do_create)
NOOP_KPROBE(noop_dir_unlink, nfs_unlink)
NOOP_KPROBE(noop_dir_rmdir, nfs_rmdir)
NOOP_KPROBE(noop_dir_create, nfs_create)
NOOP_KPROBE(noop_dir_mkdir, nfs_mkdir)
NOOP_KPROBE(noop_dir_setattr, nfs_setattr)

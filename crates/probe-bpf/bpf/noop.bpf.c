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

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * Empty programs on nasflow's tracepoints: the baseline that BENCHMARKS.md sets each probe
 * program's cost against (kernel.bpf_stats_enabled, same tracepoint, same run).
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NOOP(event)                          \
	SEC("tracepoint/nfs/" #event)        \
	int noop_##event(void *ctx)          \
	{                                    \
		return 0;                    \
	}

NOOP(nfs_initiate_read)
NOOP(nfs_readpage_done)
NOOP(nfs_initiate_write)
NOOP(nfs_writeback_done)
NOOP(nfs_initiate_commit)
NOOP(nfs_commit_done)

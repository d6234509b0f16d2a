/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The few kernel types nasflow's BPF programs touch, declared with preserve_access_index so
 * every access is a CO-RE relocation against the running kernel's vmlinux BTF. Only vmlinux
 * types belong here: aya cannot relocate against module BTF (nfs.ko, sunrpc.ko).
 */
#ifndef NASFLOW_KERNEL_TYPES_H
#define NASFLOW_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

/* Marks bpf_tracing.h's register names as the kernel's (di, si, ax, ...). */
#define __VMLINUX_H__ 1

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

struct kernfs_node {
	__u64 id;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
};

struct css_set {
	struct cgroup_subsys_state *subsys[16];
};

struct task_struct {
	unsigned int flags;
	struct css_set *cgroups;
};

struct super_block {
	__u32 s_dev;
};

struct hlist_node {
	struct hlist_node *next;
};

struct hlist_head {
	struct hlist_node *first;
};

struct inode {
	struct super_block *i_sb;
	unsigned long i_ino;
	__s64 i_size;
	struct hlist_head i_dentry;
};

struct dentry {
	struct dentry *d_parent;
	struct inode *d_inode;
	union {
		struct hlist_node d_alias;
	} d_u;
};

struct file {
	struct inode *f_inode;
	unsigned int f_flags;
};

struct kiocb {
	struct file *ki_filp;
	__s64 ki_pos;
};

/* `count` sits in an anonymous union on newer kernels; CO-RE finds it there. */
struct iov_iter {
	unsigned long count;
};

#pragma clang attribute pop

/* The index of the memory controller in css_set.subsys; relocated from the kernel's enum. */
enum cgroup_subsys_id {
	memory_cgrp_id = 4,
};

#endif /* NASFLOW_KERNEL_TYPES_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * What the client and the server probes share: the raw record copy, field reads by tracefs
 * layout, and the latency histogram's slots.
 */
#ifndef NASFLOW_COMMON_BPF_H
#define NASFLOW_COMMON_BPF_H

struct rec {
	__u64 words[NASFLOW_RECORD_BYTES / 8];
};

/* Reads a naturally aligned unsigned field of 1, 2, 4 or 8 bytes; 0 when absent. */
static __always_inline __u64 field_u(const struct rec *r, __u16 off, __u16 size)
{
	const __u8 *base = (const __u8 *)r->words;

	if (off > NASFLOW_RECORD_BYTES - 8)
		return 0;
	switch (size) {
	case 8:
		return *(const __u64 *)(base + off);
	case 4:
		return *(const __u32 *)(base + off);
	case 2:
		return *(const __u16 *)(base + off);
	case 1:
		return *(const __u8 *)(base + off);
	default:
		return 0;
	}
}

/* Reads a signed field (the done events' error), sign-extended. */
static __always_inline __s64 field_s(const struct rec *r, __u16 off, __u16 size)
{
	__u64 v = field_u(r, off, size);

	switch (size) {
	case 4:
		return (__s32)v;
	case 2:
		return (__s16)v;
	case 1:
		return (__s8)v;
	default:
		return (__s64)v;
	}
}

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xFFFFFFFFULL) << 5;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFFFF) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

/* The histogram slot of a latency: units of 2^-30 s, bucket (2^(s-1), 2^s] units. */
static __always_inline __u32 latency_slot(__u64 ns)
{
	__u64 units;
	__u32 slot;

	/* ns * 2^30 / 10^9 without overflow for latencies up to 2^37 ns (137 s). */
	if (ns > (1ULL << 37))
		ns = 1ULL << 37;
	units = ns + ns * 73741824ULL / 1000000000ULL;
	if (units <= 1)
		return 0;
	slot = log2_u64(units - 1) + 1;
	return slot < NASFLOW_HIST_SLOTS ? slot : NASFLOW_HIST_SLOTS - 1;
}

#endif /* NASFLOW_COMMON_BPF_H */

// SPDX-License-Identifier: MIT
/*
 * spin_counter: 64 increments per packet of a counter in a BPF_MAP_TYPE_ARRAY value guarded by
 * its struct bpf_spin_lock, each one lock / add / unlock: the pattern of statistics shared by all
 * CPUs.
 *
 * Increment i adds (saddr >> (i & 31)) & 0xff to total and 1 to hits. The verdict is XDP_PASS, or
 * XDP_ABORTED if the array's element is missing. Frames that are not IPv4 pass untouched, frames
 * too short for the IPv4 header are dropped (xdp_source.h).
 */
#include "xdp_source.h"

#define INCREMENTS 64

struct locked_counter {
	struct bpf_spin_lock lock;
	__u32 hits;
	__u64 total;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct locked_counter);
} counter SEC(".maps");

XDP_BENCH(spin_counter)
{
	__u32 saddr, zero = 0;
	int verdict = ipv4_source(ctx, &saddr);

	if (verdict != SOURCE_FOUND)
		return verdict;
	struct locked_counter *c = bpf_map_lookup_elem(&counter, &zero);
	if (!c)
		return XDP_ABORTED;
	for (__u32 i = 0; i < INCREMENTS; i++) {
		bpf_spin_lock(&c->lock);
		c->hits++;
		c->total += (saddr >> (i & 31)) & 0xff;
		bpf_spin_unlock(&c->lock);
	}
	return XDP_PASS;
}

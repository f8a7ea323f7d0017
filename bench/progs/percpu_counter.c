// SPDX-License-Identifier: MIT
/*
 * percpu_counter: 64 per-CPU counters bumped per packet, each looked up in a
 * BPF_MAP_TYPE_PERCPU_ARRAY and incremented without atomics (the CPU's own copy): how
 * per-reason or per-bucket statistics are kept at line rate.
 *
 * Bump i adds 1 to packets and the frame's length to bytes of slot (saddr + i * i) % 64 (some
 * slots are bumped several times per packet, some never). The verdict is XDP_PASS, or
 * XDP_ABORTED if a lookup fails. Frames that are not IPv4 pass untouched, frames too short for
 * the IPv4 header are dropped (xdp_source.h).
 */
#include "xdp_source.h"

#define SLOTS 64

struct slot_stats {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct slot_stats);
} slot_counts SEC(".maps");

XDP_BENCH(percpu_counter)
{
	__u32 saddr;
	int verdict = ipv4_source(ctx, &saddr);
	__u64 length = ctx->data_end - ctx->data;

	if (verdict != SOURCE_FOUND)
		return verdict;
	for (__u32 i = 0; i < SLOTS; i++) {
		__u32 slot = (saddr + i * i) % SLOTS;
		struct slot_stats *stats = bpf_map_lookup_elem(&slot_counts, &slot);

		if (!stats)
			return XDP_ABORTED;
		stats->packets++;
		stats->bytes += length;
	}
	return XDP_PASS;
}

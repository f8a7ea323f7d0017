// SPDX-License-Identifier: MIT
/*
 * lru_churn: 64 flows per packet written into a BPF_MAP_TYPE_LRU_HASH of 32 entries and read
 * back, so that every insert past the first 32 evicts the least recently used flow: a flow cache
 * under more flows than it holds.
 *
 * Flow i's key is saddr ^ (i * 0x01000193), its value the key times 3 (64-bit); each update is
 * BPF_ANY. The values read back are added to lru_sum. A failed call ends the run with
 * XDP_ABORTED (one path through the loop for the verifier, as in hash_churn.c); otherwise the
 * verdict is XDP_PASS. Frames that are not IPv4 pass untouched, frames too short for the IPv4
 * header are dropped (xdp_source.h).
 */
#include "xdp_source.h"

#define FLOWS 64

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32);
	__type(key, __u32);
	__type(value, __u64);
} flow_cache SEC(".maps");

__u64 lru_sum;

XDP_BENCH(lru_churn)
{
	__u32 saddr;
	int verdict = ipv4_source(ctx, &saddr);
	__u64 sum = 0;

	if (verdict != SOURCE_FOUND)
		return verdict;
	for (__u32 i = 0; i < FLOWS; i++) {
		__u32 key = saddr ^ (i * 0x01000193u);
		__u64 value = (__u64)key * 3;

		if (bpf_map_update_elem(&flow_cache, &key, &value, BPF_ANY))
			return XDP_ABORTED;
		__u64 *stored = bpf_map_lookup_elem(&flow_cache, &key);
		if (!stored)
			return XDP_ABORTED;
		sum += *stored;
	}
	lru_sum += sum;
	return XDP_PASS;
}

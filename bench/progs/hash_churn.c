// SPDX-License-Identifier: MIT
/*
 * hash_churn: 64 short-lived entries per packet in a BPF_MAP_TYPE_HASH, each inserted
 * (BPF_NOEXIST), read back and deleted: the map traffic of connection tracking or of a
 * per-packet scratch table.
 *
 * Entry i's key is saddr + i * 0x9e3779b9 (32-bit), its value key * key (64-bit). The values read
 * back are added to churn_sum. A failed call ends the run with XDP_ABORTED (so the verifier
 * follows one path through the loop: a per-iteration error count would give it a state per
 * count, and the kernel's gives up); otherwise the verdict is XDP_PASS. Frames that are not IPv4
 * pass untouched, frames too short for the IPv4 header are dropped (xdp_source.h).
 */
#include "xdp_source.h"

#define CHURN_ENTRIES 64

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} churn SEC(".maps");

__u64 churn_sum;

XDP_BENCH(hash_churn)
{
	__u32 saddr;
	int verdict = ipv4_source(ctx, &saddr);
	__u64 sum = 0;

	if (verdict != SOURCE_FOUND)
		return verdict;
	for (__u32 i = 0; i < CHURN_ENTRIES; i++) {
		__u32 key = saddr + i * 0x9e3779b9u;
		__u64 value = (__u64)key * key;

		if (bpf_map_update_elem(&churn, &key, &value, BPF_NOEXIST))
			return XDP_ABORTED;
		__u64 *stored = bpf_map_lookup_elem(&churn, &key);
		if (!stored)
			return XDP_ABORTED;
		sum += *stored;
		if (bpf_map_delete_elem(&churn, &key))
			return XDP_ABORTED;
	}
	churn_sum += sum;
	return XDP_PASS;
}

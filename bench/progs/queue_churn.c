// SPDX-License-Identifier: MIT
/*
 * queue_churn: 16 values per packet pushed onto a BPF_MAP_TYPE_QUEUE, then popped back: a work
 * queue handed between programs, here filled and drained by one.
 *
 * Value i is saddr * (i + 1) (64-bit). The pops must come back in push order (FIFO): they are
 * folded in that order into queue_sum (sum = sum * 31 + value, over all runs). A failed call ends
 * the run with XDP_ABORTED (one path through the loops for the verifier, as in hash_churn.c);
 * otherwise the verdict is XDP_PASS. Frames that are not IPv4 pass untouched, frames too short
 * for the IPv4 header are dropped (xdp_source.h).
 */
#include "xdp_source.h"

#define VALUES 16

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, VALUES);
	__type(value, __u64);
} work SEC(".maps");

__u64 queue_sum;

XDP_BENCH(queue_churn)
{
	__u32 saddr;
	int verdict = ipv4_source(ctx, &saddr);
	__u64 sum = queue_sum;

	if (verdict != SOURCE_FOUND)
		return verdict;
	for (__u64 i = 0; i < VALUES; i++) {
		__u64 value = (__u64)saddr * (i + 1);

		if (bpf_map_push_elem(&work, &value, 0))
			return XDP_ABORTED;
	}
	for (int i = 0; i < VALUES; i++) {
		__u64 value;

		if (bpf_map_pop_elem(&work, &value))
			return XDP_ABORTED;
		sum = sum * 31 + value;
	}
	queue_sum = sum;
	return XDP_PASS;
}

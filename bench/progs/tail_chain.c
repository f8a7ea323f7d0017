// SPDX-License-Identifier: MIT
/*
 * tail_chain: a packet pipeline of 8 stages chained by bpf_tail_call, as parsers that handle one
 * header per tail call do: the program tail-calls itself through slot 0 of a
 * BPF_MAP_TYPE_PROG_ARRAY, and chain_stage (.bss) says which stage runs. Each stage reads the
 * frame's IPv4 source again and folds a byte of it into a .bss counter.
 *
 * Stage n sets chain_sum to chain_sum * 31 + ((saddr >> 4n) & 0xff) + n and adds 1 to
 * chain_hops; stage 7 returns XDP_PASS, a stage whose tail call fails XDP_ABORTED (both leave
 * chain_stage 0 for the next packet). Frames that are not IPv4 pass untouched, frames too short
 * for the IPv4 header are dropped (xdp_source.h), by stage 0.
 */
#include "xdp_source.h"

#define STAGES 8

__u64 chain_sum;
__u32 chain_hops;
__u32 chain_stage;

int tail_chain(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__array(values, int (struct xdp_md *));
} stages SEC(".maps") = {
	.values = { [0] = (void *)&tail_chain },
};

XDP_BENCH(tail_chain)
{
	__u32 saddr, n = chain_stage & (STAGES - 1);
	int verdict = ipv4_source(ctx, &saddr);

	if (verdict != SOURCE_FOUND)
		return verdict;
	chain_sum = chain_sum * 31 + ((saddr >> (4 * n)) & 0xff) + n;
	chain_hops++;
	if (n == STAGES - 1) {
		chain_stage = 0;
		return XDP_PASS;
	}
	chain_stage = n + 1;
	bpf_tail_call(ctx, &stages, 0);
	chain_stage = 0;
	return XDP_ABORTED;
}

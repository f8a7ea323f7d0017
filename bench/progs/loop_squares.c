// SPDX-License-Identifier: MIT
/*
 * loop_squares: bpf_loop(1000, ...) summing the squares of saddr + i for i < 1000 (64-bit,
 * wrapping): the helper the kernel offers for loops its verifier cannot bound.
 *
 * The sum of the last run is left in squares_sum, and bpf_loop's result (the iterations run) in
 * squares_loops. The verdict is XDP_PASS when all 1000 iterations ran, else XDP_ABORTED. Frames
 * that are not IPv4 pass untouched, frames too short for the IPv4 header are dropped
 * (xdp_source.h).
 */
#include "xdp_source.h"

#define ITERATIONS 1000

struct squares {
	__u64 base;
	__u64 sum;
};

__u64 squares_sum;
__u64 squares_loops;

static long add_square(__u64 index, void *data)
{
	struct squares *s = data;
	__u64 x = s->base + index;

	s->sum += x * x;
	return 0;
}

XDP_BENCH(loop_squares)
{
	__u32 saddr;
	int verdict = ipv4_source(ctx, &saddr);

	if (verdict != SOURCE_FOUND)
		return verdict;
	struct squares s = {.base = saddr, .sum = 0};
	long loops = bpf_loop(ITERATIONS, add_square, &s, 0);
	squares_sum = s.sum;
	squares_loops = loops;
	return loops == ITERATIONS ? XDP_PASS : XDP_ABORTED;
}

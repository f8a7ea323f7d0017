// SPDX-License-Identifier: MIT
/*
 * bpf_spin_lock in a map value and in a private global-data section, for tests/test_threads.py.
 *
 *   bump   takes the lock of counters[0], reads count, does `hold` (.data) iterations of busy
 *          work on it (widening the window between the load and the store), stores count + 1
 *          and releases the lock; then the same with glock/gcount in .bss.A. The counts are
 *          exact only if the locks exclude each other across threads.
 *   busy   a loop of `loops` (.data) iterations of an LCG with no helper calls: long native runs
 *          during which another Python thread must keep running (the GIL is released).
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define private(name) SEC(".bss." #name) __hidden __attribute__((aligned(8)))

struct locked {
	struct bpf_spin_lock lock;
	__u64 count;
	__u64 scratch;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct locked);
} counters SEC(".maps");

private(A) struct bpf_spin_lock glock;
private(A) __u64 gcount;
private(A) __u64 gscratch;

__u32 hold = 64;	/* .data: iterations of busy work while a lock is held */
__u32 loops = 1000;	/* .data */
__u64 busy_result;	/* .bss */

SEC("xdp")
int bump(struct xdp_md *ctx)
{
	__u32 zero = 0, n, i;
	__u64 c, acc;
	struct locked *v = bpf_map_lookup_elem(&counters, &zero);

	if (!v)
		return XDP_ABORTED;
	n = hold;
	bpf_spin_lock(&v->lock);
	c = v->count;
	for (i = 0, acc = c; i < n && i < 64; i++)
		acc = acc * 6364136223846793005ULL + i;
	v->scratch = acc;
	v->count = c + 1;
	bpf_spin_unlock(&v->lock);

	bpf_spin_lock(&glock);
	c = gcount;
	for (i = 0, acc = c; i < n && i < 64; i++)
		acc = acc * 6364136223846793005ULL + i;
	gscratch = acc;
	gcount = c + 1;
	bpf_spin_unlock(&glock);
	return XDP_PASS;
}

SEC("xdp")
int busy(struct xdp_md *ctx)
{
	__u64 acc = ctx->data_end - ctx->data;
	__u32 n = loops;
	__u32 i;

	for (i = 0; i < n && i < 512; i++)
		acc = acc * 6364136223846793005ULL + i;
	busy_result = acc;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

// SPDX-License-Identifier: MIT
/*
 * Two bpf_spin_locks in one private section, `.bss.pair`: the section is one map value, and a
 * value holds at most one lock, so the object does not load (tests/test_lock_sections.py).
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define private(name) SEC(".bss." #name) __hidden __attribute__((aligned(8)))

private(pair) struct bpf_spin_lock first_lock;
private(pair) struct bpf_spin_lock second_lock;
private(pair) __u64 hits;

SEC("xdp")
int count(struct xdp_md *ctx)
{
	bpf_spin_lock(&first_lock);
	hits++;
	bpf_spin_unlock(&first_lock);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

// SPDX-License-Identifier: MIT
/*
 * A private zeroed section, `.bss.counts`, that holds a bpf_spin_lock: a count of runs, and
 * busy work between reading the count and storing it back (a window in which a second thread
 * let in by a cleared lock would lose an update): `hold` iterations (at most 64, a setting
 * Python writes while traffic runs), each adding one to `spins`.
 * tests/test_lock_sections.py runs `count` from several threads.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define private(name) SEC(".bss." #name) __hidden __attribute__((aligned(8)))

private(counts) struct bpf_spin_lock counts_lock;
private(counts) __u64 hits;
private(counts) __u64 spins;
private(counts) __u32 hold;

SEC("xdp")
int count(struct xdp_md *ctx)
{
	__u32 n = *(volatile __u32 *)&hold, i;
	__u64 c;

	bpf_spin_lock(&counts_lock);
	c = hits;
	for (i = 0; i < n && i < 64; i++)
		*(volatile __u64 *)&spins += 1;
	hits = c + 1;
	bpf_spin_unlock(&counts_lock);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

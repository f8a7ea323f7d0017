// SPDX-License-Identifier: MIT
/* Program flags (bpfjit.load(program_flags=...), libbpf's bpf_program__set_flags): programs in the
 * sections whose libbpf definition carries a BPF_PROG_LOAD flag (xdp.frags: BPF_F_XDP_HAS_FRAGS;
 * syscall and uprobe.s: BPF_F_SLEEPABLE), one in a section that carries none, and one in a section
 * libbpf cannot type, which the tests type and flag before load. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct route_key {
	__u32 prefixlen;
	__u32 addr;
};

/* A map type sleepable programs may not use (the kernel's check_map_prog_compatibility). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct route_key);
	__type(value, __u32);
} routes SEC(".maps");

/* One a sleepable program may use. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

static __u64 count_call(void)
{
	__u32 zero = 0;
	__u64 *count = bpf_map_lookup_elem(&calls, &zero);

	if (!count)
		return 0;
	return __sync_add_and_fetch(count, 1);
}

/* The frame's whole length, its frags included: a frame past 3,520 bytes has frags in a test
 * run whether or not the program says it handles them. */
SEC("xdp.frags")
int frags(struct xdp_md *ctx)
{
	return bpf_xdp_get_buff_len(ctx);
}

SEC("xdp")
int linear(struct xdp_md *ctx)
{
	return bpf_xdp_get_buff_len(ctx);
}

/* How many times a program of this object counted. */
SEC("syscall")
int sys(void *ctx)
{
	return count_call();
}

SEC("uprobe.s")
int sleepy(void *ctx)
{
	return count_call();
}

/* Whether 10.0.0.1 has a route: typed (and flagged) by the loader. */
SEC("?untyped")
int route(void *ctx)
{
	struct route_key key = { .prefixlen = 32, .addr = 0x0100000a };

	return bpf_map_lookup_elem(&routes, &key) != 0;
}

char LICENSE[] SEC("license") = "GPL";

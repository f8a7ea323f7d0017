// SPDX-License-Identifier: MIT
/*
 * A prefix firewall on an LPM trie; tests/test_lpm_trie.py runs it on every engine with results
 * worked out by hand from kernel/bpf/lpm_trie.c.
 *
 *   firewall  the action stored for the longest prefix covering the IPv4 source address, or
 *             XDP_PASS when none does (or the frame is not IPv4).
 *   learn     adds the source's /24 with XDP_DROP (BPF_NOEXIST); returns the update's -errno
 *             negated (0, or EEXIST = 17 the second time).
 *   forget    deletes the source's /24; returns the delete's -errno negated (0, or ENOENT = 2).
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct v4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v4_key);
	__type(value, __u32);
} rules SEC(".maps");

/* The IPv4 source address (network order) in *addr; -1 for a frame that is not IPv4. */
static __always_inline int source(struct xdp_md *ctx, __u32 *addr)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	*addr = ip->saddr;
	return 0;
}

SEC("xdp")
int firewall(struct xdp_md *ctx)
{
	struct v4_key key = { .prefixlen = 32 };
	__u32 *action;

	if (source(ctx, &key.addr))
		return XDP_PASS;
	action = bpf_map_lookup_elem(&rules, &key);
	return action ? *action : XDP_PASS;
}

SEC("xdp")
int learn(struct xdp_md *ctx)
{
	struct v4_key key = { .prefixlen = 24 };
	__u32 drop = XDP_DROP;

	if (source(ctx, &key.addr))
		return XDP_PASS;
	return -bpf_map_update_elem(&rules, &key, &drop, BPF_NOEXIST);
}

SEC("xdp")
int forget(struct xdp_md *ctx)
{
	struct v4_key key = { .prefixlen = 24 };

	if (source(ctx, &key.addr))
		return XDP_PASS;
	return -bpf_map_delete_elem(&rules, &key);
}

char _license[] SEC("license") = "GPL";

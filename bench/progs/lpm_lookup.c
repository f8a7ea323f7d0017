// SPDX-License-Identifier: MIT
/*
 * lpm_lookup: a prefix router's or firewall's first step, the IPv4 destination looked up in a
 * BPF_MAP_TYPE_LPM_TRIE of up to 10,000 prefixes (the bench fills it before timing, from Python
 * and, for the kernel's column, through the kernel engine's map updates).
 *
 * The value of a prefix is the XDP action for the packets it covers.
 *
 * Verdicts: a frame shorter than a header it announces, IPv4 ihl < 5: XDP_DROP; a frame that is
 * not IPv4: XDP_PASS; an IPv4 destination: the action of the longest prefix covering it, or
 * XDP_DROP when none does (no route).
 *
 * Built by progs/build.sh with bpf_xdp.h (clang -target bpf).
 */
struct lpm_v4_key {
	__u32 prefixlen;	/* host order, as struct bpf_lpm_trie_key_hdr */
	__be32 addr;		/* network order: the most significant bit first */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 10000);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
} routes SEC(".maps");

XDP_BENCH(lpm_lookup)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct lpm_v4_key key = { .prefixlen = 32 };

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return XDP_DROP;

	key.addr = ip->daddr;
	__u32 *action = bpf_map_lookup_elem(&routes, &key);
	return action ? *action : XDP_DROP;
}

// SPDX-License-Identifier: MIT
/*
 * hash_counter: per-flow packet and byte counters in a BPF_MAP_TYPE_HASH, the bread and butter of
 * XDP monitoring.
 *
 * The key is the IPv4 5-tuple (addresses and ports in network byte order; ports 0 for protocols
 * without them); the value counts packets and bytes (the whole frame). A known flow is counted
 * with atomic adds; a new one is inserted with BPF_NOEXIST (if another CPU inserted it first, the
 * insert fails and this packet is not counted, as in most such programs).
 *
 * Verdicts: a frame shorter than a header it announces, IPv4 ihl < 5: XDP_DROP (not counted);
 * everything else XDP_PASS (non-IPv4 frames are not counted).
 *
 * One source for both builds: bpf_xdp.h (clang -target bpf) or native_xdp.h (the host).
 */
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flow_counts SEC(".maps");

XDP_BENCH(hash_counter)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct flow_key key;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return XDP_DROP;

	__builtin_memset(&key, 0, sizeof(key));	/* the padding is part of the key */
	key.saddr = ip->saddr;
	key.daddr = ip->daddr;
	key.proto = ip->protocol;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		/* The ports are the first 4 bytes of both headers. */
		__be16 *ports = (void *)ip + ip->ihl * 4;
		if ((void *)(ports + 2) > data_end)
			return XDP_DROP;
		key.sport = ports[0];
		key.dport = ports[1];
	}

	__u64 bytes = data_end - data;
	struct flow_stats *stats = bpf_map_lookup_elem(&flow_counts, &key);
	if (stats) {
		__sync_fetch_and_add(&stats->packets, 1);
		__sync_fetch_and_add(&stats->bytes, bytes);
	} else {
		struct flow_stats first = {.packets = 1, .bytes = bytes};
		bpf_map_update_elem(&flow_counts, &key, &first, BPF_NOEXIST);
	}
	return XDP_PASS;
}

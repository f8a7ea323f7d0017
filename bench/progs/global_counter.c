// SPDX-License-Identifier: MIT
/*
 * global_counter: interface statistics in global variables (.bss), the simplest XDP accounting:
 * every frame counts in rx_packets and rx_bytes, and in one of rx_ipv4 / rx_ipv6 / rx_other by
 * its EtherType (after one optional 802.1Q / 802.1ad tag). Counts are atomic adds, since the same
 * program runs on every CPU. Verdict: XDP_PASS (a frame without a whole Ethernet header, or a
 * tag: XDP_DROP, counted in rx_packets and rx_bytes only).
 *
 * One source for both builds: bpf_xdp.h (clang -target bpf) or native_xdp.h (the host).
 */
__u64 rx_packets;
__u64 rx_bytes;
__u64 rx_ipv4;
__u64 rx_ipv6;
__u64 rx_other;

XDP_BENCH(global_counter)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	__sync_fetch_and_add(&rx_packets, 1);
	__sync_fetch_and_add(&rx_bytes, data_end - data);
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__be16 proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		__be16 *inner = (void *)(eth + 1) + 2;	/* TCI, then the encapsulated EtherType */
		if ((void *)(inner + 1) > data_end)
			return XDP_DROP;
		proto = *inner;
	}
	if (proto == bpf_htons(ETH_P_IP))
		__sync_fetch_and_add(&rx_ipv4, 1);
	else if (proto == bpf_htons(ETH_P_IPV6))
		__sync_fetch_and_add(&rx_ipv6, 1);
	else
		__sync_fetch_and_add(&rx_other, 1);
	return XDP_PASS;
}

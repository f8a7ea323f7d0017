// SPDX-License-Identifier: MIT
/*
 * tc_dnat: destination NAT in a tc classifier, the way tc programs rewrite addresses: the
 * IPv4 destination of a TCP or UDP packet for the service address is rewritten to a backend's
 * (and a packet for the backend back to the service's), the layer-4 checksum updated with
 * bpf_l4_csum_replace (the address is in its pseudo-header; UDP's "no checksum" left alone),
 * the IPv4 header checksum with bpf_l3_csum_replace, and the address written with
 * bpf_skb_store_bytes.
 *
 * A test run repeated N times runs on the same packet, so the runs alternate between the two
 * rewrites.
 *
 * Verdicts: TC_ACT_OK for every packet, TC_ACT_SHOT for one a helper refuses.
 */
#include <linux/pkt_cls.h>
#include <stddef.h>

#define SERVICE_ADDR 0x0a000001		/* 10.0.0.1 */
#define BACKEND_ADDR 0x0a000164		/* 10.0.1.100 */
#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define IP_DST_OFF (IP_OFF + offsetof(struct iphdr, daddr))
#define L4_OFF (IP_OFF + sizeof(struct iphdr))

SEC("tc") int tc_dnat(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5)
		return TC_ACT_OK;
	__u32 l4_csum_off, flags = BPF_F_PSEUDO_HDR | sizeof(__be32);
	if (ip->protocol == IPPROTO_TCP) {
		l4_csum_off = L4_OFF + offsetof(struct tcphdr, check);
	} else if (ip->protocol == IPPROTO_UDP) {
		l4_csum_off = L4_OFF + offsetof(struct udphdr, check);
		flags |= BPF_F_MARK_MANGLED_0;
	} else {
		return TC_ACT_OK;
	}
	__be32 old_addr = ip->daddr, new_addr;
	if (old_addr == bpf_htonl(SERVICE_ADDR))
		new_addr = bpf_htonl(BACKEND_ADDR);
	else if (old_addr == bpf_htonl(BACKEND_ADDR))
		new_addr = bpf_htonl(SERVICE_ADDR);
	else
		return TC_ACT_OK;
	if (bpf_l4_csum_replace(skb, l4_csum_off, old_addr, new_addr, flags))
		return TC_ACT_SHOT;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, sizeof(new_addr)))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, IP_DST_OFF, &new_addr, sizeof(new_addr), 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

// SPDX-License-Identifier: MIT
/*
 * xdp_ipip_encap: the forwarding half of an XDP layer-4 load balancer. An IPv4 packet for the
 * service gets an outer IPv4 header (IPIP, protocol 4) addressed to a backend, pushed in front
 * with bpf_xdp_adjust_head, its header checksum computed with bpf_csum_diff, and goes back out
 * (XDP_TX). An IPIP packet (the backend's side of the tunnel) is decapsulated: the outer header
 * is taken off with bpf_xdp_adjust_head and the inner packet passes to the stack.
 *
 * A test run repeated N times runs on the same packet (as the kernel's BPF_PROG_TEST_RUN does),
 * so the runs alternate: encapsulate, decapsulate, encapsulate, ...
 *
 * Verdicts:
 *   - not IPv4, or a frame shorter than its headers:            XDP_PASS / XDP_DROP
 *   - IPIP: decapsulated                                        XDP_PASS
 *   - any other IPv4 packet: encapsulated to the backend        XDP_TX
 *   - the headroom cannot take the outer header                 XDP_DROP
 */
#define LB_ADDR 0x0a000001		/* 10.0.0.1: the balancer, the tunnel's source */
#define BACKEND_ADDR 0x0a000164		/* 10.0.1.100: the backend, the tunnel's end */

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline int decapsulate(struct xdp_md *ctx, struct ethhdr *eth)
{
	struct ethhdr saved = *eth;

	if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct iphdr)))
		return XDP_DROP;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	*eth = saved;
	return XDP_PASS;
}

static __always_inline int encapsulate(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *inner)
{
	struct ethhdr saved = *eth;
	__u16 inner_len = bpf_ntohs(inner->tot_len);

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return XDP_DROP;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	eth = data;
	struct iphdr *outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end)
		return XDP_DROP;
	/* Back out of the port it came in on: the MAC addresses swap. */
	__builtin_memcpy(eth->h_dest, saved.h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, saved.h_dest, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = 0;
	outer->tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
	outer->id = 0;
	outer->frag_off = 0;
	outer->ttl = 64;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = bpf_htonl(LB_ADDR);
	outer->daddr = bpf_htonl(BACKEND_ADDR);
	outer->check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)outer, sizeof(*outer), 0));
	return XDP_TX;
}

XDP_BENCH(xdp_ipip_encap)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;
	if (ip->protocol == IPPROTO_IPIP)
		return decapsulate(ctx, eth);
	return encapsulate(ctx, eth, ip);
}

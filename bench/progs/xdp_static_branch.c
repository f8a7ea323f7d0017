// SPDX-License-Identifier: MIT
/*
 * xdp_static_branch: the forwarding step of an XDP layer-4 load balancer, with debug statistics
 * behind a static key (bpfjit/include/bpfjit/static_keys.h) that is off in the benchmark.
 *
 * Ethernet, an optional 802.1Q / 802.1ad tag, IPv4 or IPv6, then the TCP or UDP ports; the flow
 * hash is the kernel's jhash_3words(src, dst, ports, proto) with IPv6 addresses folded to 32 bits
 * by xor (every word read in the host's byte order, as the packet lays them out). The hash picks
 * one of 4 backends: backend 3 is this host (XDP_PASS); for the others the frame is sent back out
 * (XDP_TX) with its destination MAC set to the backend's (02:00:00:00:01:0N, N = backend) and its
 * source MAC set to the old destination.
 *
 * Verdicts: a frame shorter than a header it announces, IPv4 ihl < 5: XDP_DROP; not IPv4/IPv6,
 * not TCP/UDP, or an IPv4 fragment other than the first: XDP_PASS; else by the backend, as above.
 *
 * Debug sites, bpf_static_branch_unlikely(&lb_debug): count parsed flows per IP version, the
 * backends picked, and the frames passed without a flow; with the key off (the default), every
 * site is a nop and the counters stay 0. The native build has no static keys: its prelude makes
 * every site the constant 0 (and its guard keeps the header from being included).
 *
 * One source for both builds: bpf_xdp.h (clang -target bpf) or native_xdp.h (the host).
 */
#ifndef BPFJIT_STATIC_KEYS_H
#include "../../bpfjit/include/bpfjit/static_keys.h"
#endif

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

#define NBACKENDS 4
#define LOCAL_BACKEND 3
#define JHASH_INITVAL 0xdeadbeef

static const __u8 backend_macs[NBACKENDS][ETH_ALEN] = {
	{0x02, 0, 0, 0, 0x01, 0x00},
	{0x02, 0, 0, 0, 0x01, 0x01},
	{0x02, 0, 0, 0, 0x01, 0x02},
	{0x02, 0, 0, 0, 0x01, 0x03},
};

DEFINE_STATIC_KEY(lb_debug);
__u64 lb_debug_ipv4;			/* flows parsed, per IP version */
__u64 lb_debug_ipv6;
__u64 lb_debug_backend[NBACKENDS];	/* flows per backend picked */
__u64 lb_debug_no_flow;			/* frames passed without a TCP/UDP flow */

static __always_inline __u32 rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> (32 - shift));
}

/* linux/jhash.h: jhash_3words(a, b, c, initval). */
static __always_inline __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += JHASH_INITVAL + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

static __always_inline int no_flow(void)
{
	if (bpf_static_branch_unlikely(&lb_debug))
		__sync_fetch_and_add(&lb_debug_no_flow, 1);
	return XDP_PASS;
}

XDP_BENCH(xdp_static_branch)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 src, dst;
	__u8 proto;
	void *l4;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__be16 ethertype = eth->h_proto;
	void *l3 = eth + 1;
	if (ethertype == bpf_htons(ETH_P_8021Q) || ethertype == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = l3;

		if ((void *)(vlan + 1) > data_end)
			return XDP_DROP;
		ethertype = vlan->encapsulated_proto;
		l3 = vlan + 1;
	}
	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			return XDP_DROP;
		if (ip->frag_off & bpf_htons(0x1fff))	/* no ports in this fragment */
			return no_flow();
		src = ip->saddr;
		dst = ip->daddr;
		proto = ip->protocol;
		l4 = l3 + ip->ihl * 4;
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end)
			return XDP_DROP;
		src = ip6->saddr.in6_u.u6_addr32[0] ^ ip6->saddr.in6_u.u6_addr32[1] ^
		      ip6->saddr.in6_u.u6_addr32[2] ^ ip6->saddr.in6_u.u6_addr32[3];
		dst = ip6->daddr.in6_u.u6_addr32[0] ^ ip6->daddr.in6_u.u6_addr32[1] ^
		      ip6->daddr.in6_u.u6_addr32[2] ^ ip6->daddr.in6_u.u6_addr32[3];
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
	} else {
		return no_flow();
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return no_flow();
	__u32 *ports = l4;			/* source and destination port, as they lie */
	if ((void *)(ports + 1) > data_end)
		return XDP_DROP;

	__u32 backend = jhash_3words(src, dst, *ports, proto) % NBACKENDS;
	if (bpf_static_branch_unlikely(&lb_debug)) {
		__sync_fetch_and_add(ethertype == bpf_htons(ETH_P_IP) ? &lb_debug_ipv4 : &lb_debug_ipv6, 1);
		__sync_fetch_and_add(&lb_debug_backend[backend], 1);
	}
	if (backend == LOCAL_BACKEND)
		return XDP_PASS;
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, backend_macs[backend], ETH_ALEN);
	return XDP_TX;
}

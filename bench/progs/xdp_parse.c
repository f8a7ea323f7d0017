// SPDX-License-Identifier: MIT
/*
 * xdp_parse: the parsing front end of an XDP filter, and a small rule set on what it finds.
 *
 * Ethernet, an optional 802.1Q / 802.1ad VLAN tag, then IPv4 (options skipped by ihl) or IPv6 (up
 * to 4 hop-by-hop / routing / destination-options / fragment extension headers), then the ICMP,
 * ICMPv6, UDP or TCP header, every access bounds-checked against data_end as the verifier wants.
 *
 * Verdicts, in this order:
 *   - a frame shorter than a header it announces, IPv4 with version != 4 or ihl < 5:     XDP_DROP
 *   - neither IPv4 nor IPv6 (ARP, ...), or a non-first fragment (no L4 header):            XDP_PASS
 *   - ICMP echo request (IPv4 type 8, ICMPv6 type 128): answered from here:                  XDP_TX
 *   - UDP to port 53 from 198.51.100.0/24 or from 2001:db8:bad::/48 (blocked resolvers):    XDP_DROP
 *   - TCP to port 23 (telnet), over either IP version:                                      XDP_DROP
 *   - everything else:                                                                      XDP_PASS
 *
 * One source for both builds: bpf_xdp.h (clang -target bpf) or native_xdp.h (the host).
 */
struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct icmp_hdr {		/* ICMP and ICMPv6 share the first 4 bytes */
	__u8 type;
	__u8 code;
	__sum16 checksum;
};

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;	/* offset << 3 | M */
	__be32 identification;
};

#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#define DNS_PORT 53
#define TELNET_PORT 23
#define BLOCKED_NET4 0xc6336400	/* 198.51.100.0/24 */
#define BLOCKED_NET6 0x20010db80badULL	/* 2001:db8:bad::/48 */
#define MAX_EXT_HEADERS 4

/* The L4 rules, for either IP version: l4 points at the transport header, proto says what it is,
 * icmp_proto / echo_request are the version's ICMP, blocked says whether the source is. */
static __always_inline int l4_verdict(void *l4, void *data_end, __u8 proto, __u8 icmp_proto,
				      __u8 echo_request, int blocked)
{
	if (proto == icmp_proto) {
		struct icmp_hdr *icmp = l4;

		if ((void *)(icmp + 1) > data_end)
			return XDP_DROP;
		return icmp->type == echo_request ? XDP_TX : XDP_PASS;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return XDP_DROP;
		if (blocked && udp->dest == bpf_htons(DNS_PORT))
			return XDP_DROP;
		return XDP_PASS;
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return XDP_DROP;
		if (tcp->dest == bpf_htons(TELNET_PORT))
			return XDP_DROP;
	}
	return XDP_PASS;
}

static __always_inline int parse_ipv4(struct iphdr *ip, void *data_end)
{
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;
	if (ip->version != 4 || ip->ihl < 5)
		return XDP_DROP;
	void *l4 = (void *)ip + ip->ihl * 4;
	if (l4 > data_end)
		return XDP_DROP;
	if (ip->frag_off & bpf_htons(0x1fff))	/* not the first fragment */
		return XDP_PASS;
	int blocked = (bpf_ntohl(ip->saddr) & 0xffffff00) == BLOCKED_NET4;
	return l4_verdict(l4, data_end, ip->protocol, IPPROTO_ICMP, ICMP_ECHO, blocked);
}

static __always_inline int parse_ipv6(struct ipv6hdr *ip6, void *data_end)
{
	if ((void *)(ip6 + 1) > data_end)
		return XDP_DROP;
	void *l4 = ip6 + 1;
	__u8 proto = ip6->nexthdr;

	for (int i = 0; i < MAX_EXT_HEADERS; i++) {
		if (proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING || proto == IPPROTO_DSTOPTS) {
			struct ipv6_opt_hdr *opt = l4;	/* uapi: hdrlen in 8-byte units, less 1 */

			if ((void *)(opt + 1) > data_end)
				return XDP_DROP;
			proto = opt->nexthdr;
			l4 += (opt->hdrlen + 1) * 8;
		} else if (proto == IPPROTO_FRAGMENT) {
			struct ipv6_frag_hdr *frag = l4;

			if ((void *)(frag + 1) > data_end)
				return XDP_DROP;
			if (frag->frag_off & bpf_htons(0xfff8))	/* not the first fragment */
				return XDP_PASS;
			proto = frag->nexthdr;
			l4 = frag + 1;
		} else {
			break;
		}
	}
	__u64 prefix = ((__u64)bpf_ntohl(ip6->saddr.in6_u.u6_addr32[0]) << 16) |
		       (bpf_ntohl(ip6->saddr.in6_u.u6_addr32[1]) >> 16);
	return l4_verdict(l4, data_end, proto, IPPROTO_ICMPV6, ICMPV6_ECHO_REQUEST, prefix == BLOCKED_NET6);
}

XDP_BENCH(xdp_parse)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = l3;

		if ((void *)(vlan + 1) > data_end)
			return XDP_DROP;
		proto = vlan->encapsulated_proto;
		l3 = vlan + 1;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(l3, data_end);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(l3, data_end);
	return XDP_PASS;
}

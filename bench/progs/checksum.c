// SPDX-License-Identifier: MIT
/*
 * checksum: verify the IPv4 header checksum and the UDP checksum, as an XDP filter that drops
 * corrupted datagrams before the stack sees them.
 *
 * Both checksums are RFC 1071 ones-complement sums, added up here in the host's byte order (the
 * ones-complement sum is byte-order independent) in bounded loops over 16-bit words, each access
 * bounds-checked against data_end: the IPv4 header (ihl * 2 words, options included), then the
 * UDP pseudo-header (source, destination, protocol, UDP length), header and payload (up to
 * MAX_UDP_LEN bytes, an odd last byte padded with zero). A valid sum folds to 0xffff.
 *
 * Verdicts:
 *   - not IPv4 (ARP, IPv6, ...):                                                        XDP_PASS
 *   - a frame shorter than a header it announces, IPv4 version != 4 or ihl < 5,
 *     a UDP length < 8 or beyond the IPv4 total length:                                 XDP_DROP
 *   - a bad IPv4 header checksum:                                                       XDP_DROP
 *   - not UDP, UDP without a checksum (0), or a UDP datagram longer than MAX_UDP_LEN
 *     (left to the stack) with a good IPv4 header:                                      XDP_PASS
 *   - UDP: a good checksum XDP_PASS, a bad one (or a datagram longer than the frame)    XDP_DROP
 *
 * One source for both builds: bpf_xdp.h (clang -target bpf) or native_xdp.h (the host).
 */
#define MAX_UDP_LEN 1480	/* a 1500-byte MTU less the IPv4 header */
#define MAX_IP_WORDS 30		/* ihl <= 15: 60 bytes */

static __always_inline __u32 fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (sum & 0xffff) + (sum >> 16);
}

XDP_BENCH(checksum)
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
	if (ip->version != 4 || ip->ihl < 5)
		return XDP_DROP;

	/* The IPv4 header, checksum field included. */
	__u32 words = ip->ihl * 2;
	__u16 *w = (void *)ip;
	__u64 sum = 0;
	for (__u32 i = 0; i < MAX_IP_WORDS && i < words; i++, w++) {
		barrier_var(w);	/* keep the bounds check in the loop (see below) */
		if ((void *)(w + 1) > data_end)
			return XDP_DROP;
		sum += *w;
	}
	if (fold(sum) != 0xffff)
		return XDP_DROP;
	if (ip->protocol != IPPROTO_UDP)
		return XDP_PASS;

	struct udphdr *udp = (void *)ip + words * 2;
	if ((void *)(udp + 1) > data_end)
		return XDP_DROP;
	__u32 len = bpf_ntohs(udp->len);
	if (len < sizeof(*udp) || words * 2 + len > bpf_ntohs(ip->tot_len))
		return XDP_DROP;
	if (udp->check == 0)
		return XDP_PASS;
	if (len > MAX_UDP_LEN)
		return XDP_PASS;

	/* Pseudo-header (32-bit words fold to the same sum), then the datagram, checksum included. */
	sum = (__u64)ip->saddr + ip->daddr + bpf_htons(IPPROTO_UDP) + udp->len;
	__u16 *p = (void *)udp;
	for (__u32 i = 0; i < MAX_UDP_LEN / 2 && i < len / 2; i++, p++) {
		/* Without the barrier clang hoists the bounds checks out of the loop as one test
		 * on data_end - p, pointer arithmetic the verifier rejects. */
		barrier_var(p);
		if ((void *)(p + 1) > data_end)
			return XDP_DROP;
		sum += *p;
	}
	if (len & 1) {
		__u8 *last = (void *)udp + len - 1;
		if ((void *)(last + 1) > data_end)
			return XDP_DROP;
		sum += *last;	/* the network-order word (last, 0) read little-endian */
	}
	return fold(sum) == 0xffff ? XDP_PASS : XDP_DROP;
}

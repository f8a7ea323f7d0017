// SPDX-License-Identifier: MIT
/*
 * XDP packet parser: Ethernet -> IPv4 -> UDP, with the bounds checks the kernel verifier demands.
 *
 * Drops frames too short for the headers they announce, IPv4 packets whose header checksum is
 * wrong, and UDP datagrams to the discard port (9); passes everything else.
 *
 * Test-suite shape (tests/test_progs.py): no maps, no global variables (not even a license
 * string) and no helper calls, but a bpf-to-bpf call to a .text subprogram and a loop with a
 * back-jump.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IPV4_MAX_HDR_WORDS 30 /* ihl <= 15 words of 4 bytes = 30 16-bit words */
#define UDP_PORT_DISCARD 9

/* True when the one's-complement sum over the IPv4 header (checksum field included) is 0xffff. */
static __noinline int ipv4_csum_ok(struct iphdr *ip, void *data_end)
{
	__u16 *word = (__u16 *)ip;
	__u32 words = ip->ihl * 2;
	__u32 sum = 0;

#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < IPV4_MAX_HDR_WORDS; i++) {
		if (i >= words)
			break;
		if ((void *)(word + i + 1) > data_end)
			return 0;
		sum += word[i];
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

SEC("xdp")
int prog(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;
	if (ip->version != 4 || ip->ihl < 5)
		return XDP_DROP;
	if (!ipv4_csum_ok(ip, data_end))
		return XDP_DROP;
	if (ip->protocol != IPPROTO_UDP)
		return XDP_PASS;

	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return XDP_DROP;
	if (bpf_ntohs(udp->len) < sizeof(*udp))
		return XDP_DROP;
	if (udp->dest == bpf_htons(UDP_PORT_DISCARD))
		return XDP_DROP;
	return XDP_PASS;
}

// SPDX-License-Identifier: MIT
/*
 * bpfjit's bundled default program: a small XDP firewall (`bpfjit run` without arguments runs it
 * over packets.hex on both engines).
 *
 * Verdicts, per frame:
 *   - shorter than the headers it announces (Ethernet, IPv4, IPv4 options, UDP/TCP/ICMP header),
 *     IPv4 version != 4 or ihl < 5, or a TCP segment with both SYN and FIN set:  XDP_DROP
 *   - UDP to blocked_port (a `const volatile` .rodata knob, default 9, the discard port):  XDP_DROP
 *   - ICMP echo request: turned into an echo reply in place (MACs and IPv4 addresses swapped, type
 *     8 -> 0, ICMP checksum updated incrementally) and sent back:  XDP_TX
 *   - everything else (other IPv4 traffic, IPv6, ARP, ...):  XDP_PASS
 *
 * State:
 *   verdicts      ARRAY [5] of __u64: frames per XDP action (index = the verdict returned)
 *   sources       HASH  __u32 -> __u64: frames per IPv4 source address (network byte order)
 *   total_packets .bss  __u64: every frame seen
 *
 * Rebuild with bpfjit/data/build.sh (clang-19 -O2 -g -target bpf).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5); /* XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT */
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* IPv4 source address, network byte order */
	__type(value, __u64);
} sources SEC(".maps");

/* The ICMP header (linux/icmp.h would pull in libc's socket headers). */
struct icmp_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

const volatile __u16 blocked_port = 9; /* UDP destination port to drop (host byte order) */
__u64 total_packets;                   /* .bss */

static __always_inline int verdict(__u32 action)
{
	__u64 *count = bpf_map_lookup_elem(&verdicts, &action);

	if (count)
		__sync_fetch_and_add(count, 1);
	return action;
}

static __always_inline void count_source(__u32 saddr)
{
	__u64 *count = bpf_map_lookup_elem(&sources, &saddr);
	__u64 one = 1;

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&sources, &saddr, &one, BPF_NOEXIST);
}

/* Echo request -> echo reply, in place: the frame goes back out of the port it came in on. */
static __always_inline int icmp_echo_reply(struct ethhdr *eth, struct iphdr *ip, struct icmp_hdr *icmp)
{
	unsigned char mac[ETH_ALEN];
	__u32 addr;
	__u32 sum;

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr; /* the IPv4 header checksum does not change: same words, other order */

	/* RFC 1624: the type byte goes from 8 to 0, so the checksum grows by 0x0800 (one's complement). */
	icmp->type = ICMP_ECHOREPLY;
	sum = icmp->checksum + bpf_htons(ICMP_ECHO << 8);
	icmp->checksum = (sum & 0xffff) + (sum >> 16);
	return verdict(XDP_TX);
}

SEC("xdp")
int firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	void *l4;

	total_packets++;
	if ((void *)(eth + 1) > data_end)
		return verdict(XDP_DROP);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return verdict(XDP_PASS);

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return verdict(XDP_DROP);
	if (ip->version != 4 || ip->ihl < 5)
		return verdict(XDP_DROP);
	l4 = (void *)ip + ip->ihl * 4;
	if (l4 > data_end)
		return verdict(XDP_DROP);
	count_source(ip->saddr);

	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return verdict(XDP_DROP);
		if (udp->dest == bpf_htons(blocked_port))
			return verdict(XDP_DROP);
	} else if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return verdict(XDP_DROP);
		if (tcp->syn && tcp->fin)
			return verdict(XDP_DROP);
	} else if (ip->protocol == IPPROTO_ICMP) {
		struct icmp_hdr *icmp = l4;

		if ((void *)(icmp + 1) > data_end)
			return verdict(XDP_DROP);
		if (icmp->type == ICMP_ECHO && icmp->code == 0)
			return icmp_echo_reply(eth, ip, icmp);
	}
	return verdict(XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

// SPDX-License-Identifier: MIT
/*
 * sockfilter: a socket filter as capture tools attach them to a socket. It keeps IPv4 TCP and
 * UDP packets to port 53 (DNS) or 443 (HTTPS), cut to their first 96 bytes, drops everything
 * else (a return of 0), and counts what it keeps per IP protocol. A socket filter sees the packet
 * from its network header on, and reads it with bpf_skb_load_bytes, as most socket filters do.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define SNAP_LEN 96

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} kept SEC(".maps");

SEC("socket")
int dns_and_https(struct __sk_buff *skb)
{
	struct iphdr ip;
	__u16 ports[2];

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
		return 0;
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, ip.ihl * 4, ports, sizeof(ports)) < 0)
		return 0;
	if (ports[1] != bpf_htons(53) && ports[1] != bpf_htons(443))
		return 0;

	__u32 key = ip.protocol;
	__u64 *count = bpf_map_lookup_elem(&kept, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	return SNAP_LEN;
}

char _license[] SEC("license") = "GPL";

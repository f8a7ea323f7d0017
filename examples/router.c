// SPDX-License-Identifier: MIT
/*
 * router: an XDP forwarder. An IPv4 frame goes out of the port its destination's last three bits
 * pick, through the DEVMAP tx_ports (port -> ifindex, filled by the user); a port with no device
 * drops the frame (the flags of bpf_redirect_map). Other frames go up the stack.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

SEC("xdp")
int route(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	return bpf_redirect_map(&tx_ports, bpf_ntohl(ip->daddr) & 7, XDP_DROP);
}

char _license[] SEC("license") = "GPL";

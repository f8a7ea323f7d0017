// SPDX-License-Identifier: MIT
/*
 * lb: a layer-4 load balancer's choice of backend, in the style of programs whose loader sizes
 * their tables at load time: the backends array is declared with max_entries 0 and sized with
 * bpf_map__set_max_entries, and the program's section (a custom name libbpf cannot type) is
 * typed with bpf_program__set_type. A flow's backend is its source port modulo the number of
 * backends (the .rodata constant nr_backends, set before load); the frame is marked with the
 * backend's id in its first destination-MAC byte and sent back out (XDP_TX).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct backend {
	__u32 id;
	__u32 packets;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 0);	/* sized by the loader */
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

const volatile __u32 nr_backends = 1;

SEC("lb/balance")
int balance(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || nr_backends == 0)
		return XDP_PASS;
	__u32 slot = bpf_ntohs(udp->source) % nr_backends;
	struct backend *backend = bpf_map_lookup_elem(&backends, &slot);

	if (!backend)
		return XDP_ABORTED;
	__sync_fetch_and_add(&backend->packets, 1);
	eth->h_dest[0] = backend->id;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";

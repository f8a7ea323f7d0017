// SPDX-License-Identifier: MIT
/*
 * xdp_redirect: an XDP forwarder's last step. An IPv4 frame goes out of the port that the low
 * three bits of its destination pick, through the BPF_MAP_TYPE_DEVMAP tx_ports (port -> ifindex,
 * which the bench fills before timing: every port on ifindex 1, the loopback device the kernel's
 * column needs to exist); a port with no device drops the frame (bpf_redirect_map's flags).
 *
 * Verdicts: a frame shorter than a header it announces, IPv4 ihl < 5: XDP_DROP; a frame that is
 * not IPv4: XDP_PASS; an IPv4 frame: XDP_REDIRECT to its port, or XDP_DROP when the port is empty.
 *
 * Built by progs/build.sh with bpf_xdp.h (clang -target bpf).
 */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

XDP_BENCH(xdp_redirect)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return XDP_DROP;
	return bpf_redirect_map(&tx_ports, bpf_ntohl(ip->daddr) & 7, XDP_DROP);
}

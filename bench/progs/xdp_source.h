/* The input of the helper benchmarks (hash_churn, ringbuf_*, spin_counter, loop_squares,
 * percpu_counter, lru_churn, queue_churn): the frame's IPv4 source address, which seeds their
 * keys and values, so each run's work depends on its packet as in a real program.
 *
 * ipv4_source() returns XDP_PASS for a frame that is not IPv4 (the program lets it through
 * untouched), XDP_DROP for one too short for its headers, and -1 with *saddr (host order) set
 * for an IPv4 frame, which the program then works on. */
#define SOURCE_FOUND (-1)

static __always_inline int ipv4_source(struct xdp_md *ctx, __u32 *saddr)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;
	*saddr = bpf_ntohl(ip->saddr);
	return SOURCE_FOUND;
}

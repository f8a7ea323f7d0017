// SPDX-License-Identifier: MIT
/*
 * A bloom filter and a perf event array from packet programs; tests/test_bloom_perf.py runs them
 * on every engine with results worked out by hand from kernel/bpf/bloom_filter.c,
 * kernel/trace/bpf_trace.c and net/core/filter.c.
 *
 *   bloom_add    pushes the packet's first u32 into the filter; returns the -errno negated.
 *   bloom_check  XDP_PASS when bpf_map_peek_elem says the packet's first u32 may be in the
 *                filter, XDP_DROP when it certainly is not.
 *   trace        bpf_perf_event_output of {packet length, 0xfeedbeef} with the flags in the
 *                packet's first u64 (an index, and the packet bytes to append in bits 32-51);
 *                returns the -errno negated.
 *   tc_trace     the same from tc.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 16);
	__uint(map_extra, 3);
	__uint(map_flags, BPF_F_ZERO_SEED);
	__type(value, __u32);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

struct sample {
	__u32 len;
	__u32 magic;
};

static __always_inline int first_u32(void *data, void *data_end, __u32 *value)
{
	if (data + sizeof(__u64) > data_end)
		return -1;
	*value = *(__u32 *)data;
	return 0;
}

SEC("xdp")
int bloom_add(struct xdp_md *ctx)
{
	__u32 value;

	if (first_u32((void *)(long)ctx->data, (void *)(long)ctx->data_end, &value))
		return XDP_ABORTED;
	return -bpf_map_push_elem(&seen, &value, BPF_ANY);
}

SEC("xdp")
int bloom_check(struct xdp_md *ctx)
{
	__u32 value;

	if (first_u32((void *)(long)ctx->data, (void *)(long)ctx->data_end, &value))
		return XDP_ABORTED;
	return bpf_map_peek_elem(&seen, &value) ? XDP_DROP : XDP_PASS;
}

static __always_inline int output(void *ctx, void *data, void *data_end)
{
	struct sample s = { .len = data_end - data, .magic = 0xfeedbeef };

	if (data + sizeof(__u64) > data_end)
		return -1;
	return -bpf_perf_event_output(ctx, &events, *(__u64 *)data, &s, sizeof(s));
}

SEC("xdp")
int trace(struct xdp_md *ctx)
{
	return output(ctx, (void *)(long)ctx->data, (void *)(long)ctx->data_end);
}

SEC("tc")
int tc_trace(struct __sk_buff *skb)
{
	return output(skb, (void *)(long)skb->data, (void *)(long)skb->data_end);
}

char _license[] SEC("license") = "GPL";

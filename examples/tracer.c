// SPDX-License-Identifier: MIT
/*
 * tracer: reports every frame to user space through a PERF_EVENT_ARRAY: a small header (the
 * frame's length) followed by the frame's first 32 bytes, which bpf_perf_event_output appends
 * from the packet itself (the length in the upper 32 bits of its flags).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define SAMPLED 32

struct event {
	__u32 length;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

SEC("xdp")
int trace(struct xdp_md *ctx)
{
	struct event event = {.length = ctx->data_end - ctx->data};
	__u64 sampled = event.length < SAMPLED ? event.length : SAMPLED;

	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU | sampled << 32, &event, sizeof(event));
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

// SPDX-License-Identifier: MIT
/*
 * ringbuf_events: 16 events per packet through a BPF_MAP_TYPE_RINGBUF, each reserved and filled,
 * then submitted (ringbuf_submit) or thrown away (ringbuf_discard, as a program does when a later
 * check says the event is not wanted). Both programs share the ring.
 *
 * Event i holds the source address, i, and the packet's length. Commits ask for no wakeup
 * (BPF_RB_NO_WAKEUP), as a high-rate producer whose consumer polls on a timer does. A discarded
 * record keeps its space until the consumer passes it, as a submitted one does. A reserve that
 * finds the ring full is counted in rb_full and ends the run with XDP_DROP (one path through the
 * loop for the verifier: a count of failures kept across iterations gives it a state per count);
 * else the verdict is XDP_PASS. Frames that are not IPv4 pass untouched, frames too short for the IPv4 header are
 * dropped (xdp_source.h).
 */
#include "xdp_source.h"

#define EVENTS_PER_PACKET 16

struct event {
	__u32 saddr;
	__u16 index;
	__u16 length;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

__u64 rb_full;

static __always_inline int produce(struct xdp_md *ctx, int discard)
{
	__u32 saddr;
	int verdict = ipv4_source(ctx, &saddr);

	if (verdict != SOURCE_FOUND)
		return verdict;
	for (__u16 i = 0; i < EVENTS_PER_PACKET; i++) {
		struct event *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);

		if (!event) {
			rb_full++;
			return XDP_DROP;
		}
		event->saddr = saddr;
		event->index = i;
		event->length = ctx->data_end - ctx->data;
		if (discard)
			bpf_ringbuf_discard(event, BPF_RB_NO_WAKEUP);
		else
			bpf_ringbuf_submit(event, BPF_RB_NO_WAKEUP);
	}
	return XDP_PASS;
}

XDP_BENCH(ringbuf_submit)
{
	return produce(ctx, 0);
}

XDP_BENCH(ringbuf_discard)
{
	return produce(ctx, 1);
}

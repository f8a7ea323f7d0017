// SPDX-License-Identifier: MIT
/* Loops as users write them, for the verifier's widened loops (verifier/widen.py) and their
 * termination proof (verifier/termination.py): each accepted one is checked once for all its
 * trips instead of trip by trip, and must still run to the interpreter's result. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#define MAX_WORDS 740

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[32]);
} table SEC(".maps");

/* The sum of the packet's 16-bit words, as far as the packet goes (at most MAX_WORDS): a
 * pointer walking the packet, checked against data_end on every trip, and a counter. */
SEC("xdp")
int sum_words(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 *w = data;
	__u64 sum = 0;

	for (__u32 i = 0; i < MAX_WORDS; i++, w++) {
		asm volatile("" : "+r"(w));
		if ((void *)(w + 1) > data_end)
			break;
		sum += *w;
	}
	return sum & 0xffff;
}

/* A nested loop over a map value: every row's prefix sums. */
SEC("xdp")
int prefix_sums(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *row = bpf_map_lookup_elem(&table, &key);
	__u64 total = 0;

	if (!row)
		return 0;
	for (int round = 0; round < 4; round++) {
		for (int i = 1; i < 32; i++)
			row[i] += row[i - 1] + round;
		total += row[31];
	}
	return total & 0xff;
}

/* A loop whose bound lives in the packet (a length field, at most 64), copying into a stack buffer. */
SEC("xdp")
int copy_counted(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 buf[64] = {};
	__u8 *p = data;
	__u32 n, result = 0;

	if ((void *)(p + 1) > data_end)
		return 0;
	n = p[0] & 63;
	for (__u32 i = 0; i < n; i++) {
		if ((void *)(p + i + 2) > data_end)
			break;
		buf[i] = p[i + 1];
	}
	for (int i = 0; i < 64; i++)
		result += buf[i];
	return result & 0xffff;
}

/* The same copy one byte past the buffer on its last trip: the kernel rejects it, and so must
 * the widened loop (or the walk after it). */
SEC("xdp")
int copy_overrun(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 buf[64] = {};
	__u8 *p = data;
	__u32 n, result = 0;

	if ((void *)(p + 1) > data_end)
		return 0;
	n = p[0] & 127;
	for (__u32 i = 0; i <= n && i <= 64; i++) {
		if ((void *)(p + i + 2) > data_end)
			break;
		asm volatile("" : "+r"(i));
		buf[i] = p[i + 1];
	}
	for (int i = 0; i < 64; i++)
		result += buf[i];
	return result & 0xffff;
}

char LICENSE[] SEC("license") = "GPL";

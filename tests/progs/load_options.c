// SPDX-License-Identifier: MIT
/* Load options (bpfjit.load(maps=..., program_types=...), libbpf's set-before-load calls): a map
 * whose size the object leaves to its loader, and a program in a section libbpf cannot type. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 0);	/* sized by the loader */
	__type(key, __u32);
	__type(value, __u64);
} lengths SEC(".maps");

/* Counts packets by length. */
SEC("xdp")
int count_lengths(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	__u64 one = 1, *seen = bpf_map_lookup_elem(&lengths, &len);

	if (seen)
		__sync_fetch_and_add(seen, 1);
	else
		bpf_map_update_elem(&lengths, &len, &one, BPF_NOEXIST);
	return XDP_PASS;
}

/* The first byte of the packet, or 0 for an empty one: an XDP program in a section name that
 * says nothing (loaded as a raw program, it is rejected). */
SEC("untyped")
int first_byte(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	return data + 1 > end ? 0 : data[0];
}

char LICENSE[] SEC("license") = "GPL";

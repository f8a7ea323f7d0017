// SPDX-License-Identifier: MIT
/*
 * Hash-map lookups whose key comes from the packet, for tests/test_hash_lookup.py: the JIT walks a
 * hash map's native chains itself (runtime/hash_index.py), so these check it against the
 * interpreter, which asks the map from Python, while the test inserts, deletes and clears keys.
 *
 * Key sizes 3, 13 and 24 read as 2+1, 8+4+1 and 8+8+8 byte chunks; max_entries 4 and 8 give
 * chains of several elements (the test picks keys that collide), 4096 single-element chains.
 * Each program returns the u64 value stored for the key at the start of the packet, or -1 when
 * the key is absent (or the packet is shorter than the key). lookup_twice looks one key up in
 * two maps whose key sizes differ, to check both inlined walks in one function.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct key13 {
	__u8 bytes[13];
};

struct key24 {
	__u64 words[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__uint(key_size, 3);
	__type(value, __u64);
} small SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, struct key13);
	__type(value, __u64);
} odd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct key24);
	__type(value, __u64);
} wide SEC(".maps");

#define LOOKUP(name, map, size)                                          \
SEC("xdp") int name(struct xdp_md *ctx)                                  \
{                                                                        \
	void *data = (void *)(long)ctx->data;                            \
	if (data + (size) > (void *)(long)ctx->data_end)                 \
		return -1;                                               \
	__u64 *value = bpf_map_lookup_elem(&map, data);                  \
	return value ? *value : -1;                                      \
}

LOOKUP(lookup_small, small, 3)
LOOKUP(lookup_odd, odd, 13)
LOOKUP(lookup_wide, wide, 24)

SEC("xdp") int lookup_twice(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	if (data + 24 > (void *)(long)ctx->data_end)
		return -1;
	__u64 *a = bpf_map_lookup_elem(&odd, data);
	__u64 *b = bpf_map_lookup_elem(&wide, data);
	return (a ? *a : 1000) + (b ? *b : 2000);
}

char LICENSE[] SEC("license") = "GPL";

// SPDX-License-Identifier: MIT
/*
 * bpf_kptr_xchg on the map types beyond the hash map of kptr_stash.c: a per-CPU array, an LRU
 * hash and a per-CPU hash map, each value a slot whose referenced kptr owns a `struct conn`
 * (tests/test_kptrs.py runs them); and an untrusted kptr dereferenced without a NULL check,
 * which the verifier rejects.
 *
 *   stash_percpu_array, stash_lru, stash_percpu_hash
 *                   make a conn with id id_in and exchange it into key_in's slot of the map
 *                   (made first in the hash maps), dropping the conn it replaces; prev_out is
 *                   that conn's id (0: the slot was empty).
 *   untrusted_unchecked  (not autoloaded) reads a field through an untrusted kptr it never
 *                   checked for NULL.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kptr_kfuncs.h"

struct conn {
	__u64 packets;
	__u32 id;
};

struct slot {
	struct conn __kptr *conn;
};

struct peek_slot {
	struct conn __kptr_untrusted *conn;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct slot);
} percpu_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct slot);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct slot);
} percpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct peek_slot);
} peeks SEC(".maps");

__u32 key_in;
__u32 id_in;
__u32 prev_out;

static __always_inline int put(struct slot *s)
{
	struct conn *c, *old;

	if (!s)
		return XDP_ABORTED;
	c = bpf_obj_new(struct conn);
	if (!c)
		return XDP_ABORTED;
	c->id = id_in;
	old = bpf_kptr_xchg(&s->conn, c);
	prev_out = 0;
	if (old) {
		prev_out = old->id;
		bpf_obj_drop(old);
	}
	return XDP_PASS;
}

SEC("xdp")
int stash_percpu_array(struct xdp_md *ctx)
{
	__u32 key = key_in;

	return put(bpf_map_lookup_elem(&percpu_array, &key));
}

/* A hash map's slot for key, made empty first if it is not there. */
static __always_inline struct slot *slot_of(void *map, __u32 key)
{
	struct slot empty = {};

	bpf_map_update_elem(map, &key, &empty, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, &key);
}

SEC("xdp")
int stash_lru(struct xdp_md *ctx)
{
	return put(slot_of(&lru, key_in));
}

SEC("xdp")
int stash_percpu_hash(struct xdp_md *ctx)
{
	return put(slot_of(&percpu_hash, key_in));
}

SEC("?xdp")
int untrusted_unchecked(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct peek_slot *s = bpf_map_lookup_elem(&peeks, &key);

	if (!s)
		return XDP_DROP;
	return s->conn->id;
}

char _license[] SEC("license") = "GPL";

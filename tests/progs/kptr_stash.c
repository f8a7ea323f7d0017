// SPDX-License-Identifier: MIT
/*
 * A connection-tracking stash of objects: each key of `conns` (a hash map) holds a slot whose
 * referenced kptr owns a `struct conn` made by bpf_obj_new. tests/test_kptrs.py runs it.
 *
 *   track    takes the key's conn out of its slot (bpf_kptr_xchg with NULL), or makes a new
 *            one; counts the packet and its bytes in it; publishes the count in packets_out and
 *            puts the conn back, dropping whatever another run put there meanwhile.
 *   forget   takes the key's conn out and drops it (the slot stays, empty).
 *   peek     reads the key's conn through an untrusted load of the slot (no reference taken)
 *            and publishes its byte count in bytes_out (0: no conn).
 *   swap     makes a new conn and exchanges it into the key's slot, dropping the old one.
 *   reset    overwrites the key's slot with an empty one (bpf_map_update_elem).
 *   remove   deletes the key's slot (bpf_map_delete_elem).
 *   churn    swap or forget, on the key the packet names (for many threads at once).
 *
 * The key is key_in (.bss). Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kptr_kfuncs.h"

struct conn {
	__u64 packets;
	__u64 bytes;
	__u32 id;
};

struct slot {
	__u64 seen;
	struct conn __kptr *conn;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct slot);
} conns SEC(".maps");

__u32 key_in;
__u64 packets_out;
__u64 bytes_out;

static struct slot *slot_of(__u32 *key)
{
	struct slot zero = {}, *s;

	s = bpf_map_lookup_elem(&conns, key);
	if (s)
		return s;
	bpf_map_update_elem(&conns, key, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&conns, key);
}

SEC("xdp")
int track(struct xdp_md *ctx)
{
	__u32 key = key_in;
	struct conn *c, *old;
	struct slot *s;

	s = slot_of(&key);
	if (!s)
		return XDP_ABORTED;
	s->seen++;
	c = bpf_kptr_xchg(&s->conn, NULL);
	if (!c) {
		c = bpf_obj_new(struct conn);
		if (!c)
			return XDP_ABORTED;
		c->id = key;
	}
	c->packets++;
	c->bytes += ctx->data_end - ctx->data;
	packets_out = c->packets;
	old = bpf_kptr_xchg(&s->conn, c);
	if (old)
		bpf_obj_drop(old);
	return XDP_PASS;
}

/* Takes the key's conn out and drops it: XDP_PASS, or XDP_DROP when there was none. */
static int drop_conn(__u32 key)
{
	struct conn *c;
	struct slot *s;

	s = bpf_map_lookup_elem(&conns, &key);
	if (!s)
		return XDP_DROP;
	c = bpf_kptr_xchg(&s->conn, NULL);
	if (!c)
		return XDP_DROP;
	bpf_obj_drop(c);
	return XDP_PASS;
}

/* Puts a new conn into the key's slot and drops the one it replaces. */
static int stash_new(__u32 key)
{
	struct conn *c;
	struct slot *s;

	s = slot_of(&key);
	if (!s)
		return XDP_ABORTED;
	c = bpf_obj_new(struct conn);
	if (!c)
		return XDP_ABORTED;
	c->id = key;
	c = bpf_kptr_xchg(&s->conn, c);
	if (c)
		bpf_obj_drop(c);
	return XDP_PASS;
}

SEC("xdp")
int forget(struct xdp_md *ctx)
{
	return drop_conn(key_in);
}

SEC("xdp")
int peek(struct xdp_md *ctx)
{
	__u32 key = key_in;
	struct conn *c;
	struct slot *s;

	bytes_out = 0;
	s = bpf_map_lookup_elem(&conns, &key);
	if (!s)
		return XDP_DROP;
	c = s->conn;
	if (!c)
		return XDP_DROP;
	bytes_out = c->bytes;
	return XDP_PASS;
}

SEC("xdp")
int swap(struct xdp_md *ctx)
{
	return stash_new(key_in);
}

/* Overwrites the key's slot with an empty one: the conn it held is released. */
SEC("xdp")
int reset(struct xdp_md *ctx)
{
	__u32 key = key_in;
	struct slot zero = {};

	return bpf_map_update_elem(&conns, &key, &zero, BPF_ANY) ? XDP_DROP : XDP_PASS;
}

/* Deletes the key's slot: the conn it held is released. */
SEC("xdp")
int remove(struct xdp_md *ctx)
{
	__u32 key = key_in;

	return bpf_map_delete_elem(&conns, &key) ? XDP_DROP : XDP_PASS;
}

/* For many threads at once: the key is the packet's first byte (mod 16); its second byte
 * chooses stash_new (even) or drop_conn (odd). */
SEC("xdp")
int churn(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;

	if (data + 2 > end)
		return XDP_ABORTED;
	if (data[1] & 1)
		return drop_conn(data[0] & 15);
	return stash_new(data[0] & 15);
}

char _license[] SEC("license") = "GPL";

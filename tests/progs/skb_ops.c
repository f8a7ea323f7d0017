/* The skb helpers that resize a packet, read its headers or keep its tunnel, driven by the packet:
 * its last 96 bytes are four operations (helper, two arguments, flags), read before any runs, so
 * that one object tries any sequence with any arguments. tests/test_skb_ops.py runs it on random
 * operations and packets on every engine and, with -m kernel, in the Linux kernel.
 *
 * r0 is each operation's result's low byte (the first operation's lowest); cb[] holds the
 * sk_buff's state afterwards (protocol, VLAN tag, length) and the words read back (a tunnel key,
 * header bytes), which ctx_out shows. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct op {
	__u32 helper;
	__u32 a;
	__u64 b;
	__u64 flags;
};

#define OPS 4

enum { ADJUST_ROOM, CHANGE_HEAD, CHANGE_TAIL, VLAN_PUSH, VLAN_POP, LOAD_RELATIVE, SET_TUNNEL, GET_TUNNEL };

static __always_inline long run_op(struct __sk_buff *skb, struct op *op, struct bpf_tunnel_key *key, __u64 *read)
{
	switch (op->helper) {
	case ADJUST_ROOM:
		return bpf_skb_adjust_room(skb, (__s32)op->a, (__u32)op->b, op->flags);
	case CHANGE_HEAD:
		return bpf_skb_change_head(skb, op->a, op->flags);
	case CHANGE_TAIL:
		return bpf_skb_change_tail(skb, op->a, op->flags);
	case VLAN_PUSH:
		return bpf_skb_vlan_push(skb, (__be16)op->a, (__u16)op->b);
	case VLAN_POP:
		return bpf_skb_vlan_pop(skb);
	case LOAD_RELATIVE:
		return bpf_skb_load_bytes_relative(skb, op->a, read, sizeof(*read), (__u32)op->b);
	case SET_TUNNEL:
		key->tunnel_id = op->a;
		key->remote_ipv4 = (__u32)op->b;
		key->tunnel_ttl = 64;
		return bpf_skb_set_tunnel_key(skb, key, sizeof(*key), op->flags);
	case GET_TUNNEL:
		return bpf_skb_get_tunnel_key(skb, key, sizeof(*key), op->flags);
	}
	return 0;
}

SEC("tc")
int skb_ops(struct __sk_buff *skb)
{
	struct op ops[OPS];
	struct bpf_tunnel_key key = {};
	__u64 read = 0;
	__u32 result = 0;

	if (bpf_skb_load_bytes(skb, skb->len - sizeof(ops), ops, sizeof(ops)))
		return 0xff;
#pragma unroll
	for (int i = 0; i < OPS; i++)
		result |= (run_op(skb, &ops[i], &key, &read) & 0xff) << (8 * i);
	skb->cb[0] = skb->protocol | skb->vlan_present << 16;
	skb->cb[1] = skb->vlan_tci | skb->vlan_proto << 16;
	skb->cb[2] = skb->len;
	skb->cb[3] = key.tunnel_id ^ key.remote_ipv4 ^ key.tunnel_ttl;
	skb->cb[4] = (__u32)read ^ (__u32)(read >> 32);
	return result;
}

char _license[] SEC("license") = "GPL";

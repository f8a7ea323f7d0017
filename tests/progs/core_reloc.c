// SPDX-License-Identifier: MIT
/* CO-RE relocations (bpfjit.load(btf=...)): programs whose field offsets, sizes, bitfields, type
 * and enum facts are relocated against a target BTF. Each program stores what it read and the
 * relocated constants in out[], so a test can check every relocation on every engine.
 *
 * The local types are what this object was built with; tests/progs/core_target.c declares the
 * same names laid out differently, to load this object against. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct inner {
	unsigned int x;
	unsigned int y;
} __attribute__((preserve_access_index));

struct sample {
	int a;
	unsigned short b;
	unsigned char c;
	long long d;
	unsigned int lo: 4;
	int sgn: 6;
	unsigned int arr[4];
	struct inner in;
	short narrow;
} __attribute__((preserve_access_index));

/* A flavour of struct sample: its field was renamed in some versions of the type. */
struct sample___v1 {
	int renamed;
} __attribute__((preserve_access_index));

struct only_here {
	int x;
};

struct pair {
	int first;
	int second;
};

enum color { RED = 1, GREEN = 2, BLUE = 4, VIOLET = 8 };
enum wide { HUGE = 0x100000000ULL };

/* The context as this program sees it: a flavour of __sk_buff with its fields in another order. */
struct __sk_buff___mine {
	__u32 priority;
	__u32 mark;
	__u32 len;
} __attribute__((preserve_access_index));

__u64 out[16];

/* Fields of the struct the packet holds, read through relocated offsets, and field facts. */
SEC("xdp")
int fields(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct sample *s = data;

	if (data + 64 > end)
		return XDP_ABORTED;
	out[0] = s->a;
	out[1] = s->b;
	out[2] = bpf_core_field_exists(s->c) ? s->c : 0xcc;
	out[3] = s->d;
	out[4] = BPF_CORE_READ_BITFIELD(s, lo);
	out[5] = BPF_CORE_READ_BITFIELD(s, sgn);
	out[6] = s->arr[2];
	out[7] = s->in.y;
	out[8] = bpf_core_field_size(s->b);
	out[9] = bpf_core_field_offset(s->d);
	out[10] = bpf_core_field_exists(s->c);
	out[11] = __CORE_RELO(s, sgn, SIGNED);
	if (bpf_core_field_exists(((struct sample___v1 *)s)->renamed))
		out[12] = ((struct sample___v1 *)s)->renamed;
	else
		out[12] = 0xdead;
	bpf_core_read(&out[13], sizeof(unsigned int), &s->in.x);
	return XDP_PASS;
}

/* Type and enum facts. */
SEC("xdp")
int types(struct xdp_md *ctx)
{
	out[0] = bpf_core_type_exists(struct only_here);
	out[1] = bpf_core_type_exists(struct sample);
	out[2] = bpf_core_type_size(struct sample);
	out[3] = bpf_core_type_matches(struct inner);
	out[4] = bpf_core_type_matches(struct pair);
	out[5] = bpf_core_type_id_local(struct sample);
	out[6] = bpf_core_type_id_kernel(struct sample);
	out[7] = bpf_core_enum_value_exists(enum color, GREEN);
	out[8] = bpf_core_enum_value(enum color, BLUE);
	out[9] = bpf_core_enum_value_exists(enum color, VIOLET);
	out[10] = bpf_core_enum_value_exists(enum color, VIOLET) ? bpf_core_enum_value(enum color, VIOLET) : 0x77;
	out[11] = bpf_core_enum_value(enum wide, HUGE);
	out[12] = bpf_core_type_size(struct inner);
	return XDP_PASS;
}

/* The context through a reordered flavour of __sk_buff: the fields, and all three in the return
 * value, which the kernel engine reports too. */
SEC("tc")
int skb_fields(struct __sk_buff *skb)
{
	struct __sk_buff___mine *mine = (void *)skb;
	__u32 len = mine->len, mark = mine->mark, priority = mine->priority;

	out[0] = len;
	out[1] = mark;
	out[2] = priority;
	return (priority & 0xff) << 16 | (mark & 0xff) << 8 | (len & 0xff);
}

/* A renamed field read with no existence check: refused where the target lacks it. */
SEC("?xdp")
int unguarded(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	if (data + 64 > end)
		return XDP_ABORTED;
	return ((struct sample___v1 *)data)->renamed;
}

/* A signed field whose size differs in the target: no load size reads it right. */
SEC("?xdp")
int resized_signed(struct xdp_md *ctx)
{
	struct sample *s = (void *)(long)ctx->data;

	return (void *)(s + 1) > (void *)(long)ctx->data_end ? XDP_ABORTED : s->narrow;
}

char LICENSE[] SEC("license") = "GPL";

// SPDX-License-Identifier: MIT
/*
 * Programs that break a rule of kptrs, one per `?xdp` section (each loads only when named):
 * tests/test_kptr_rules.py expects each rejected at load with the kernel's message, and the
 * `fine_*` ones accepted. Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kptr_kfuncs.h"

struct conn {
	__u64 packets;
	__u64 bytes;
	__u32 id;
};

struct other {
	__u64 x;
};

struct value {
	char buf[8];
	struct conn __kptr_untrusted *unref;	/* offset 8 */
	struct conn __kptr *ref;		/* offset 16 */
	struct other __kptr_ref *ref_other;	/* offset 24: the tag's name before 2023 */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct value);
} values SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct value);
} values_copy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} plain SEC(".maps");

/* A kptr in global data: a private section, as the kernel's selftests keep them. */
#define private(name) SEC(".bss." #name) __hidden __attribute__((aligned(8)))
private(STASH) struct conn __kptr *global_conn;

static struct value *value(void)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&values, &key);
}

SEC("?xdp")
int size_not_dw(struct xdp_md *ctx)
{
	struct value *v = value();

	if (!v)
		return 0;
	*(__u32 *)&v->unref = 0;
	return 0;
}

SEC("?xdp")
int variable_offset(struct xdp_md *ctx)
{
	struct value *v = value();
	__u64 i = bpf_get_prandom_u32() & 8;

	if (!v)
		return 0;
	*(__u64 *)((char *)&v->unref + i) = 0;
	return 0;
}

SEC("?xdp")
int misaligned(struct xdp_md *ctx)
{
	struct value *v = value();

	if (!v)
		return 0;
	return *(__u64 *)((char *)&v->unref + 1) != 0;
}

SEC("?xdp")
int atomic_access(struct xdp_md *ctx)
{
	struct value *v = value();

	if (!v)
		return 0;
	__sync_fetch_and_add((__u64 *)&v->unref, 0);
	return 0;
}

SEC("?xdp")
int store_to_referenced(struct xdp_md *ctx)
{
	struct value *v = value();
	struct conn *p;

	if (!v)
		return 0;
	p = v->unref;
	if (!p)
		return 0;
	v->ref = p;
	return 0;
}

SEC("?xdp")
int store_wrong_type(struct xdp_md *ctx)
{
	struct value *v = value();
	struct other *p;

	if (!v)
		return 0;
	p = v->ref_other;
	if (!p)
		return 0;
	v->unref = (struct conn *)p;
	return 0;
}

SEC("?xdp")
int store_scalar(struct xdp_md *ctx)
{
	struct value *v = value();
	__u64 number = bpf_get_prandom_u32();

	if (!v)
		return 0;
	*(volatile __u64 *)&v->unref = number;
	return 0;
}

SEC("?xdp")
int store_immediate(struct xdp_md *ctx)
{
	struct value *v = value();

	if (!v)
		return 0;
	/* clang stores a constant through a register: BPF_ST only from assembly */
	asm volatile("*(u64 *)(%[v] + 8) = 1" :: [v] "r"(v) : "memory");
	return 0;
}

SEC("?xdp")
int store_owned_into_untrusted(struct xdp_md *ctx)
{
	struct value *v = value();
	struct conn *c;

	if (!v)
		return 0;
	c = bpf_obj_new(struct conn);
	if (!c)
		return 0;
	v->unref = c;
	bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int xchg_untrusted_field(struct xdp_md *ctx)
{
	struct value *v = value();
	struct conn *c;

	if (!v)
		return 0;
	c = bpf_kptr_xchg(&v->unref, NULL);
	if (c)
		bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int xchg_not_a_kptr(struct xdp_md *ctx)
{
	struct value *v = value();
	struct conn *c;

	if (!v)
		return 0;
	c = bpf_kptr_xchg((struct conn **)v->buf, NULL);
	if (c)
		bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int xchg_map_without_kptrs(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct conn **p = bpf_map_lookup_elem(&plain, &key);
	struct conn *c;

	if (!p)
		return 0;
	c = bpf_kptr_xchg(p, NULL);
	if (c)
		bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int xchg_variable_offset(struct xdp_md *ctx)
{
	struct value *v = value();
	__u64 i = bpf_get_prandom_u32() & 8;
	struct conn *c;

	if (!v)
		return 0;
	c = bpf_kptr_xchg((struct conn **)((char *)&v->ref + i), NULL);
	if (c)
		bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int xchg_untrusted_pointer(struct xdp_md *ctx)
{
	struct value *v = value();
	struct conn *p;

	if (!v)
		return 0;
	p = v->unref;
	if (!p)
		return 0;
	p = bpf_kptr_xchg(&v->ref, p);
	if (p)
		bpf_obj_drop(p);
	return 0;
}

SEC("?xdp")
int xchg_wrong_type(struct xdp_md *ctx)
{
	struct value *v = value();
	struct other *o;
	struct conn *c;

	if (!v)
		return 0;
	o = bpf_obj_new(struct other);
	if (!o)
		return 0;
	c = bpf_kptr_xchg(&v->ref, (struct conn *)o);
	if (c)
		bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int unreleased_object(struct xdp_md *ctx)
{
	struct conn *c = bpf_obj_new(struct conn);

	if (!c)
		return 0;
	c->id = 1;
	return 1;
}

SEC("?xdp")
int unreleased_xchg_result(struct xdp_md *ctx)
{
	struct value *v = value();
	struct conn *c;

	if (!v)
		return 0;
	c = bpf_kptr_xchg(&v->ref, NULL);
	return c != NULL;
}

SEC("?xdp")
int drop_untrusted(struct xdp_md *ctx)
{
	struct value *v = value();
	struct conn *p;

	if (!v)
		return 0;
	p = v->unref;
	if (p)
		bpf_obj_drop(p);
	return 0;
}

SEC("?xdp")
int drop_twice(struct xdp_md *ctx)
{
	struct conn *c = bpf_obj_new(struct conn);

	if (!c)
		return 0;
	bpf_obj_drop(c);
	bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int use_after_drop(struct xdp_md *ctx)
{
	struct conn *c = bpf_obj_new(struct conn);

	if (!c)
		return 0;
	bpf_obj_drop(c);
	return c->id;
}

SEC("?xdp")
int use_after_drop_of_a_spilled_copy(struct xdp_md *ctx)
{
	struct conn *volatile kept;	/* volatile: the copy lives on the stack */
	struct conn *c = bpf_obj_new(struct conn);

	if (!c)
		return 0;
	kept = c;
	bpf_obj_drop(c);
	c = kept;
	return c->id;
}

SEC("?xdp")
int no_null_check(struct xdp_md *ctx)
{
	struct conn *c = bpf_obj_new(struct conn);

	c->id = 1;
	bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int beyond_struct(struct xdp_md *ctx)
{
	struct conn *c = bpf_obj_new(struct conn);
	int r;

	if (!c)
		return 0;
	r = *(volatile __u32 *)((char *)c + 24);
	bpf_obj_drop(c);
	return r;
}

SEC("?xdp")
int write_untrusted(struct xdp_md *ctx)
{
	struct value *v = value();
	struct conn *p;

	if (!v)
		return 0;
	p = v->unref;
	if (p)
		p->packets = 1;
	return 0;
}

SEC("?xdp")
int new_of_variable_type(struct xdp_md *ctx)
{
	struct conn *c = bpf_obj_new_impl(bpf_get_prandom_u32(), NULL);

	if (c)
		bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int new_of_non_struct(struct xdp_md *ctx)
{
	__u64 *c = bpf_obj_new_impl(bpf_core_type_id_local(__u64), NULL);

	if (c)
		bpf_obj_drop(c);
	return 0;
}

SEC("?xdp")
int helper_reads_kptr(struct xdp_md *ctx)
{
	struct value *v = value();
	__u32 key = 0;

	if (!v)
		return 0;
	bpf_map_update_elem(&values_copy, &key, v, 0);
	return 0;
}

/* Accepted: the untrusted field takes NULL and a pointer loaded from a field of its type. */
SEC("?xdp")
int fine_untrusted_copy(struct xdp_md *ctx)
{
	struct value *v = value();
	struct conn *p;

	if (!v)
		return 0;
	p = v->ref;
	v->unref = p;
	if (p)
		return p->id;
	v->unref = NULL;
	return 0;
}

/* Accepted: an object stashed in global data; returns 1 when the stash was empty, else 2. */
SEC("?xdp")
int fine_global_stash(struct xdp_md *ctx)
{
	struct conn *c = bpf_obj_new(struct conn);

	if (!c)
		return 0;
	c->id = 42;
	c = bpf_kptr_xchg(&global_conn, c);
	if (!c)
		return 1;
	bpf_obj_drop(c);
	return 2;
}

char _license[] SEC("license") = "GPL";

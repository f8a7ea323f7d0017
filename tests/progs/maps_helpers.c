// SPDX-License-Identifier: MIT
/*
 * Map types and standard helpers, one small program each; tests/test_maps_helpers.py runs every
 * program on both engines and checks the results it worked out by hand from this source.
 *
 *   hash_ops     HASH with a struct value: BPF_NOEXIST twice (-EEXIST), BPF_EXIST on a missing
 *                key (-ENOENT), BPF_EXIST on a present key, delete twice (0, -ENOENT), and a
 *                value Python inserted read, copied (doubled) to key 3 and updated in place.
 *   lru_ops      LRU_HASH (4 entries): keys 0..3, a lookup of 0 (a use), then keys 4 and 5
 *                evict 1 and 2, the least recently used.
 *   percpu_ops   PERCPU_ARRAY: value 0 += value 1 + 5 on this CPU; records the CPU.
 *   qs_push      QUEUE (4) gets 1..4, 5 (-E2BIG: full), 6 with BPF_EXIST (drops the oldest);
 *                STACK (4) gets 10, 20, 30 and is peeked.
 *   qs_pop       pops the queue 5 times and the stack 3 times, the last of each on an empty map.
 *   rb_produce   RINGBUF: reserve+submit (seq 1), reserve+discard (seq 2), output (seq 3),
 *                reserve+submit with BPF_RB_NO_WAKEUP (seq 4), then bpf_ringbuf_query.
 *   misc         ktime_get_ns twice around four prandom_u32 calls; smp_processor_id.
 *   probe        probe_read_kernel / probe_read_kernel_str of a .rodata string.
 *   printk       bpf_printk with %d %u %x %llx %ld %c %s %5d %-4d %04x %X %%.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct pair {
	__u32 a;
	__u32 b;
	__u64 c;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct pair);
} hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__type(value, __u32);
} queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4);
	__type(value, __u32);
} stack SEC(".maps");

struct event {
	__u32 seq;
	__u32 kind;
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

/* .rodata */
const char greeting[] = "hello, bpf";

/* .data: printk arguments the compiler cannot fold */
int neg_int = -42;
unsigned int big_uint = 3000000000u;
long neg_long = -5000000000L;
__u64 wide = 0x123456789abcdefULL;

/* .bss: results */
__s64 hash_res[8];
__s64 lru_res[4];
__u32 cpu_seen;
__s64 qs_res[3];
__u32 peeked;
__s64 pop_ret[8];
__u32 pop_val[8];
__s64 rb_res[5];
__u64 t1, t2;
__u32 rnd[4];
__u32 cpu_id;
__s64 probe_res[3];
char buf_out[16];
char str_out[16];
char trunc_out[8];
__s64 printk_ret[4];

SEC("xdp")
int hash_ops(struct xdp_md *ctx)
{
	__u32 k = 1, missing = 7, five = 5, three = 3;
	struct pair v = { .a = 10, .b = 20, .c = 30 };
	struct pair *p;

	hash_res[0] = bpf_map_update_elem(&hash, &k, &v, BPF_NOEXIST);		/* 0 */
	v.a = 11;
	hash_res[1] = bpf_map_update_elem(&hash, &k, &v, BPF_NOEXIST);		/* -EEXIST */
	hash_res[2] = bpf_map_update_elem(&hash, &missing, &v, BPF_EXIST);	/* -ENOENT */
	v.c = 99;
	hash_res[3] = bpf_map_update_elem(&hash, &k, &v, BPF_EXIST);		/* 0: {11, 20, 99} */
	p = bpf_map_lookup_elem(&hash, &k);
	hash_res[4] = p ? (__s64)(p->a + p->b + p->c) : -1;			/* 130 */
	hash_res[5] = bpf_map_delete_elem(&hash, &k);				/* 0 */
	hash_res[6] = bpf_map_delete_elem(&hash, &k);				/* -ENOENT */
	hash_res[7] = bpf_map_lookup_elem(&hash, &k) != 0;			/* 0 */

	/* key 5 comes from Python: copy it doubled to key 3, then bump its c in place */
	p = bpf_map_lookup_elem(&hash, &five);
	if (p) {
		struct pair w = { .a = p->a * 2, .b = p->b * 2, .c = p->c * 2 };

		bpf_map_update_elem(&hash, &three, &w, BPF_ANY);
		p->c += 1000;
	}
	return XDP_PASS;
}

SEC("xdp")
int lru_ops(struct xdp_md *ctx)
{
	__u64 *p;
	__u32 k;
	__u64 v;

	for (__u32 i = 0; i < 4; i++) {	/* the counter in a register: the kernel bounds the loop */
		k = i;
		v = i * 10;
		bpf_map_update_elem(&lru, &k, &v, BPF_ANY);
	}
	k = 0;
	bpf_map_lookup_elem(&lru, &k);	/* 0 becomes the most recently used */
	k = 4;
	v = 40;
	bpf_map_update_elem(&lru, &k, &v, BPF_ANY);	/* evicts 1 */
	k = 5;
	v = 50;
	bpf_map_update_elem(&lru, &k, &v, BPF_ANY);	/* evicts 2 */

	k = 1;
	lru_res[0] = bpf_map_lookup_elem(&lru, &k) != 0;	/* 0 */
	k = 2;
	lru_res[1] = bpf_map_lookup_elem(&lru, &k) != 0;	/* 0 */
	k = 0;
	p = bpf_map_lookup_elem(&lru, &k);
	lru_res[2] = p ? (__s64)*p : -1;			/* 0 */
	k = 5;
	p = bpf_map_lookup_elem(&lru, &k);
	lru_res[3] = p ? (__s64)*p : -1;			/* 50 */
	return XDP_PASS;
}

SEC("socket")
int percpu_ops(struct __sk_buff *skb)
{
	__u32 k0 = 0, k1 = 1;
	__u64 *v0 = bpf_map_lookup_elem(&pcpu, &k0);
	__u64 *v1 = bpf_map_lookup_elem(&pcpu, &k1);

	if (!v0 || !v1)
		return 0;
	*v0 += *v1 + 5;
	cpu_seen = bpf_get_smp_processor_id();
	return 1;
}

SEC("xdp")
int qs_push(struct xdp_md *ctx)
{
	__u32 v;

	for (__u32 i = 1; i <= 4; i++) {	/* the counter in a register: the kernel bounds the loop */
		v = i;
		bpf_map_push_elem(&queue, &v, 0);
	}
	v = 5;
	qs_res[0] = bpf_map_push_elem(&queue, &v, 0);		/* -E2BIG: full */
	v = 6;
	qs_res[1] = bpf_map_push_elem(&queue, &v, BPF_EXIST);	/* 0: 1 dropped */

	v = 10;
	bpf_map_push_elem(&stack, &v, 0);
	v = 20;
	bpf_map_push_elem(&stack, &v, 0);
	v = 30;
	bpf_map_push_elem(&stack, &v, 0);
	v = 0;
	qs_res[2] = bpf_map_peek_elem(&stack, &v);		/* 0 */
	peeked = v;						/* 30 */
	return XDP_PASS;
}

SEC("xdp")
int qs_pop(struct xdp_md *ctx)
{
	__u32 v;
	int i;

	for (i = 0; i < 5; i++) {
		v = 0xffffffff;
		pop_ret[i] = bpf_map_pop_elem(&queue, &v);
		pop_val[i] = v;
	}
	for (i = 5; i < 8; i++) {
		v = 0xffffffff;
		pop_ret[i] = bpf_map_pop_elem(&stack, &v);
		pop_val[i] = v;
	}
	return XDP_PASS;
}

SEC("xdp")
int rb_produce(struct xdp_md *ctx)
{
	struct event local = { .seq = 3, .kind = 300, .value = 0x3333 };
	struct event *e;

	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return XDP_ABORTED;
	e->seq = 1;
	e->kind = 100;
	e->value = 0x1111;
	bpf_ringbuf_submit(e, 0);

	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return XDP_ABORTED;
	e->seq = 2;
	e->kind = 200;
	e->value = 0x2222;
	bpf_ringbuf_discard(e, 0);

	rb_res[0] = bpf_ringbuf_output(&rb, &local, sizeof(local), 0);

	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return XDP_ABORTED;
	e->seq = 4;
	e->kind = 400;
	e->value = 0x4444;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);

	rb_res[1] = bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA);
	rb_res[2] = bpf_ringbuf_query(&rb, BPF_RB_RING_SIZE);
	rb_res[3] = bpf_ringbuf_query(&rb, BPF_RB_CONS_POS);
	rb_res[4] = bpf_ringbuf_query(&rb, BPF_RB_PROD_POS);
	return XDP_PASS;
}

SEC("tc")
int misc(struct __sk_buff *skb)
{
	t1 = bpf_ktime_get_ns();
	rnd[0] = bpf_get_prandom_u32();
	rnd[1] = bpf_get_prandom_u32();
	rnd[2] = bpf_get_prandom_u32();
	rnd[3] = bpf_get_prandom_u32();
	t2 = bpf_ktime_get_ns();
	cpu_id = bpf_get_smp_processor_id();
	return t2 >= t1;
}

SEC("xdp")
int probe(struct xdp_md *ctx)
{
	char buf[16] = {};
	char s[16] = {};
	char t[8] = {};

	probe_res[0] = bpf_probe_read_kernel(buf, 11, greeting);		/* 0 */
	probe_res[1] = bpf_probe_read_kernel_str(s, sizeof(s), greeting);	/* 11 */
	probe_res[2] = bpf_probe_read_kernel_str(t, 6, greeting);		/* 6: "hello" */
	__builtin_memcpy(buf_out, buf, sizeof(buf));
	__builtin_memcpy(str_out, s, sizeof(s));
	__builtin_memcpy(trunc_out, t, sizeof(t));
	return XDP_PASS;
}

SEC("xdp")
int printk(struct xdp_md *ctx)
{
	printk_ret[0] = bpf_printk("d=%d u=%u x=%x", neg_int, big_uint, 0xbeef);
	printk_ret[1] = bpf_printk("llx=%llx ld=%ld c=%c", wide, neg_long, 'Z');
	printk_ret[2] = bpf_printk("s=%s w=[%5d] %%", greeting, 42);
	printk_ret[3] = bpf_printk("[%-4d|%04x|%X]", 7, 0xab, 0xabcd);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

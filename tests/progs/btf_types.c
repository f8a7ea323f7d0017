// SPDX-License-Identifier: MIT
/*
 * BTF test object: the types, global data and BTF-defined maps that tests/test_btf.py checks the
 * BTF / BTF.ext parser against. The expected layouts in the tests are written by hand from the C
 * layout rules, so keep the comments with byte offsets below in sync when editing a type.
 *
 * Covers: a struct with bitfields (kind_flag encoding), a union, a signed enum and a 64-bit enum
 * (ENUM64), a typedef chain with a volatile in it, nested and 2-D arrays, float/double/_Bool/char
 * members, const volatile globals (.rodata), globals in .data, .bss and a custom .data.custom
 * (one global, one static), and the map definitions libbpf understands: __type / __uint key and
 * value, map-in-map with __array(values, struct inner), a prog array with __array(values, fn),
 * a ring buffer, a bloom filter with __ulong(map_extra, ...), pinning, and a map value holding a
 * bpf_spin_lock, a bpf_timer and kptrs (also inside a nested struct array).
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* libbpf >= 1.2 defines __ulong; the installed headers may be older. */
#ifndef __ulong
#define __btf_concat_(a, b) a##b
#define __btf_concat(a, b) __btf_concat_(a, b)
#define __ulong(name, val) enum { __btf_concat(__unique_value, __COUNTER__) = val } name
#endif

/* Spelled out instead of relying on the header's (older) __kptr meaning. */
#define __tag_kptr __attribute__((btf_type_tag("kptr")))
#define __tag_kptr_untrusted __attribute__((btf_type_tag("kptr_untrusted")))
#define __tag_percpu_kptr __attribute__((btf_type_tag("percpu_kptr")))

enum color {
	COLOR_RED = 0,
	COLOR_GREEN = 1,
	COLOR_BLUE = 7,
	COLOR_NONE = -3, /* makes the enum signed */
};

enum wide {
	WIDE_SMALL = 1,
	WIDE_BIG = 0x100000000ULL,
	WIDE_TOP = 0xfedcba9876543210ULL,
};

/* Bitfields: size 12, alignment 4. Bit offsets in the comments. */
struct hdr_bits {
	__u32 version : 4; /* bit 0 */
	__u32 ihl : 4;     /* bit 4 */
	__u32 tos : 8;     /* bit 8 */
	__u32 len : 16;    /* bit 16 */
	__s32 delta : 5;   /* bit 32 (second __u32 unit), signed */
	__u32 spare : 27;  /* bit 37 */
	__u16 port;        /* byte 8 */
	__u8 tiny : 1;     /* bit 80 */
	__u8 tag : 7;      /* bit 81 */
};

/* size 4 */
union word {
	__u32 u32;      /* byte 0 */
	__s16 s16[2];   /* byte 0 */
	__u8 bytes[4];  /* byte 0 */
	struct {
		__u16 lo; /* byte 0 */
		__u16 hi; /* byte 2 */
	} halves;       /* byte 0 */
};

/* Typedef chain: vcounter_t -> volatile -> pkt_counter_t -> counter_t -> __u32 -> unsigned int. */
typedef __u32 counter_t;
typedef counter_t pkt_counter_t;
typedef volatile pkt_counter_t vcounter_t;

/* size 104, alignment 8 */
struct pkt_stats {
	__u64 packets;           /* 0 */
	__u64 bytes;             /* 8 */
	struct hdr_bits hdr;     /* 16, size 12 */
	union word w;            /* 28, size 4 */
	pkt_counter_t counts[4]; /* 32, size 16 */
	__u16 grid[2][3];        /* 48, size 12 */
	float ratio;             /* 60 */
	double avg;              /* 64 */
	enum color color;        /* 72 */
	char name[6];            /* 76 */
	_Bool seen;              /* 82 */
	__s8 delta;              /* 83 */
	__s64 balance;           /* 88 */
	enum wide wide;          /* 96 */
};

/* A program-local object type for the kptrs (allocated with bpf_obj_new in a real program). */
struct node_data {
	__u64 key;
	__u64 val;
};

/* size 16 */
struct kptr_pair {
	struct node_data __tag_kptr *slot[2]; /* 0, 8 */
};

/* Map value with special fields. size 72, alignment 8 */
struct locked_val {
	__u64 counter;                                 /* 0 */
	struct bpf_spin_lock lock;                     /* 8, size 4 */
	__u32 pad;                                     /* 12 */
	struct bpf_timer timer;                        /* 16, size 16 */
	struct node_data __tag_kptr *owned;            /* 32 */
	struct node_data __tag_kptr_untrusted *peek;   /* 40 */
	struct node_data __tag_percpu_kptr *pcpu;      /* 48 */
	struct kptr_pair pair;                         /* 56, kptrs at 56 and 64 */
};

/* ---- global data ---- */

const volatile __u32 cfg_threshold = 100;                         /* .rodata */
const volatile __u8 cfg_mode = 2;                                 /* .rodata */
__u64 data_counter = 5;                                           /* .data */
vcounter_t data_hits = 3;                                         /* .data */
__u32 bss_counter;                                                /* .bss */
struct pkt_stats last_stats;                                      /* .bss */
__u32 custom_val SEC(".data.custom") = 42;                        /* .data.custom, global */
static __u64 custom_static SEC(".data.custom") = 7;               /* .data.custom, static */

/* ---- maps ---- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct pkt_stats);
} stats_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__uint(key_size, 8);
	__uint(value_size, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sized_hash SEC(".maps");

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { &inner_a, &inner_b },
};

int tail_target(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jmp_table SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 64);
	__type(value, __u32);
	__ulong(map_extra, 3);
} seen_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct locked_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lock_map SEC(".maps");

/* ---- programs ---- */

SEC("xdp")
int xdp_btf(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct pkt_stats *st = bpf_map_lookup_elem(&stats_map, &key);

	if (!st)
		return XDP_ABORTED;
	st->packets++;
	st->bytes += ctx->data_end - ctx->data;
	st->hdr.ihl = cfg_mode;
	st->counts[1] += data_hits;
	last_stats.packets = st->packets;

	__u64 hkey = st->packets;
	if (!bpf_map_lookup_elem(&sized_hash, &hkey)) {
		__u8 zero[16] = {};
		bpf_map_update_elem(&sized_hash, &hkey, zero, BPF_ANY);
	}

	struct locked_val *lv = bpf_map_lookup_elem(&lock_map, &key);
	if (lv) {
		bpf_spin_lock(&lv->lock);
		lv->counter += cfg_threshold;
		bpf_spin_unlock(&lv->lock);
	}

	void *inner = bpf_map_lookup_elem(&outer, &key);
	if (inner) {
		__u64 *slot = bpf_map_lookup_elem(inner, &key);
		if (slot)
			(*slot)++;
	}

	__u32 ev = bss_counter++;
	bpf_ringbuf_output(&events, &ev, sizeof(ev), 0);
	if (bpf_map_peek_elem(&seen_filter, &ev) != 0)
		bpf_map_push_elem(&seen_filter, &ev, BPF_ANY);

	data_counter += custom_val + custom_static;
	if (cfg_threshold && bss_counter > cfg_threshold)
		bpf_tail_call(ctx, &jmp_table, 1);
	return XDP_PASS;
}

SEC("xdp")
int tail_target(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";

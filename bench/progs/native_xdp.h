/* Prelude of the packet programs' native build (cc -O2 -include native_xdp.h NAME.c): just enough
 * of what bpf_xdp.h gives the BPF build for the same source to compile for the host.
 *
 *   - the uapi packet headers (linux/if_ether.h, linux/ip.h, ...: plain C, host-usable) and
 *     host-side definitions of what linux/bpf.h and libbpf's bpf_helpers.h / bpf_endian.h would
 *     give (those two cannot be used for the host);
 *   - struct xdp_md with pointer-wide data/data_end, so `(void *)(long)ctx->data` is the packet;
 *   - libbpf-style map definitions (__uint/__type/__array; SEC(x) is nothing) and
 *     bpf_map_lookup_elem / bpf_map_update_elem for HASH maps: an open-addressing hash table
 *     (linear probing, at least 2 * max_entries slots, hashing the key bytes), allocated by the
 *     first update, with the kernel's BPF_ANY / BPF_NOEXIST / BPF_EXIST and E2BIG rules (no
 *     delete: the programs never delete);
 *   - static keys: the header's guard is defined, every key is off, so bpf_static_branch_*() is
 *     the constant 0 and the compiler removes the guarded code;
 *   - XDP_BENCH(name): `static int name_prog(struct xdp_md *ctx)` (the program), exported
 *     `uint64_t name(void *mem, uint64_t len)` running it on the packet [mem, mem + len), and
 *     `uint64_t repeat_name(mem, len, n)` (native_repeat.h).
 *
 * Every prelude definition is static: each source is its own translation unit, all linked into one
 * shared object. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "native_repeat.h"
#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

/* --- linux/bpf.h ------------------------------------------------------------------------------ */
enum xdp_action { XDP_ABORTED = 0, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };

struct xdp_md {
    __u64 data;             /* pointers, not the uapi's __u32 offsets */
    __u64 data_end;
    __u64 data_meta;
    __u32 ingress_ifindex;
    __u32 rx_queue_index;
    __u32 egress_ifindex;
};

enum { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_ARRAY = 2 };
enum { BPF_ANY = 0, BPF_NOEXIST = 1, BPF_EXIST = 2 };

/* --- bpf_helpers.h / bpf_endian.h ------------------------------------------------------------- */
#define SEC(name)
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define __noinline __attribute__((noinline))
#define __weak __attribute__((weak))
#define barrier_var(var) __asm__ __volatile__("" : "+r"(var))

#define bpf_htons(x) ((__u16)__builtin_bswap16((__u16)(x)))
#define bpf_ntohs(x) ((__u16)__builtin_bswap16((__u16)(x)))
#define bpf_htonl(x) ((__u32)__builtin_bswap32((__u32)(x)))
#define bpf_ntohl(x) ((__u32)__builtin_bswap32((__u32)(x)))
#define bpf_cpu_to_be64(x) ((__u64)__builtin_bswap64((__u64)(x)))
#define bpf_be64_to_cpu(x) ((__u64)__builtin_bswap64((__u64)(x)))

/* Map definitions as libbpf writes them: the numbers live in the member types (int (*)[N]), so
 * sizeof recovers them at compile time. Each __uint(name, ...) also adds a pointer member; the
 * one next to `type` holds the map's storage. */
#define __uint(name, val) int (*name)[val]; void *__native_##name
#define __type(name, val) __typeof__(val) *name
#define __array(name, val) __typeof__(val) *name[]

#define __native_map_uint(map, field) (sizeof(*(map)->field) / sizeof(int))

struct __native_hash {
    __u32 mask;             /* slots - 1 (a power of two) */
    __u32 count;            /* elements stored */
    __u8 *used;             /* one byte per slot */
    __u8 *keys;             /* slots * key_size */
    __u8 *values;           /* slots * value_stride (8-aligned values, as the kernel gives) */
};

static __always_inline __u64 __native_hash_bytes(const void *key, size_t size)
{
    const __u8 *p = key;
    __u64 h = 0x9e3779b97f4a7c15ULL ^ size, w;
    size_t i = 0;

    for (; i + 8 <= size; i += 8) {
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    if (i < size) {
        w = 0;
        memcpy(&w, p + i, size - i);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
    }
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 29);
}

static __attribute__((noinline, cold)) struct __native_hash *
__native_hash_create(void **slot, size_t max_entries, size_t key_size, size_t value_stride)
{
    size_t slots = 8;
    struct __native_hash *h = calloc(1, sizeof(*h));

    while (slots < 2 * max_entries)     /* load factor <= 1/2 */
        slots <<= 1;
    if (!h || !(h->used = calloc(slots, 1)) || !(h->keys = calloc(slots, key_size)) ||
        !(h->values = calloc(slots, value_stride)))
        abort();
    h->mask = (__u32)(slots - 1);
    *slot = h;
    return h;
}

/* The slot holding key, or the empty slot where it would go. */
static __always_inline size_t __native_hash_find(const struct __native_hash *h, const void *key,
                                                 size_t key_size)
{
    size_t i = __native_hash_bytes(key, key_size) & h->mask;

    while (h->used[i] && memcmp(h->keys + i * key_size, key, key_size) != 0)
        i = (i + 1) & h->mask;
    return i;
}

static __always_inline void *__native_map_lookup(void **storage, const void *key, size_t key_size,
                                                 size_t value_size)
{
    struct __native_hash *h = *storage;
    size_t stride = (value_size + 7) & ~(size_t)7;

    if (!h)
        return NULL;
    size_t i = __native_hash_find(h, key, key_size);
    return h->used[i] ? h->values + i * stride : NULL;
}

static __always_inline long __native_map_update(void **storage, size_t max_entries, const void *key,
                                                size_t key_size, const void *value, size_t value_size,
                                                __u64 flags)
{
    size_t stride = (value_size + 7) & ~(size_t)7;
    struct __native_hash *h = *storage;

    if (flags > BPF_EXIST)
        return -22;                                     /* -EINVAL */
    if (!h)
        h = __native_hash_create(storage, max_entries, key_size, stride);
    size_t i = __native_hash_find(h, key, key_size);
    if (h->used[i]) {
        if (flags == BPF_NOEXIST)
            return -17;                                 /* -EEXIST */
    } else {
        if (flags == BPF_EXIST)
            return -2;                                  /* -ENOENT */
        if (h->count >= max_entries)
            return -7;                                  /* -E2BIG */
        h->used[i] = 1;
        h->count++;
        memcpy(h->keys + i * key_size, key, key_size);
    }
    memcpy(h->values + i * stride, value, value_size);
    return 0;
}

/* Only HASH maps are implemented: using another map type is a compile-time error. */
#define __native_hash_map(map)                                                                 \
    (&(map)->__native_type + 0 * sizeof(char[__native_map_uint(map, type) == BPF_MAP_TYPE_HASH ? 1 : -1]))
#define bpf_map_lookup_elem(m, k)                                                              \
    __native_map_lookup(__native_hash_map(m), (k), sizeof(*(m)->key), sizeof(*(m)->value))
#define bpf_map_update_elem(m, k, v, flags)                                                    \
    __native_map_update(__native_hash_map(m), __native_map_uint(m, max_entries), (k),           \
                        sizeof(*(m)->key), (v), sizeof(*(m)->value), (flags))

/* --- bpfjit/static_keys.h: every key off -------------------------------------------------------- */
#define BPFJIT_STATIC_KEYS_H
#define DEFINE_STATIC_KEY(name) static __attribute__((unused)) __u32 name
#define bpf_static_branch_unlikely(key) 0
#define bpf_static_branch_likely(key) 0

/* --- the harness ------------------------------------------------------------------------------ */
#define XDP_BENCH(name)                                                                        \
    static int name##_prog(struct xdp_md *ctx);                                                \
    uint64_t name(void *mem, uint64_t len)                                                     \
    {                                                                                          \
        struct xdp_md ctx = {.data = (__u64)(uintptr_t)mem,                                    \
                             .data_end = (__u64)(uintptr_t)mem + len,                          \
                             .data_meta = (__u64)(uintptr_t)mem};                              \
        return (__u32)name##_prog(&ctx);                                                       \
    }                                                                                          \
    BENCH_REPEAT(name)                                                                         \
    static int name##_prog(struct xdp_md *ctx)

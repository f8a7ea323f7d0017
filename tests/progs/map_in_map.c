// An ARRAY_OF_MAPS initialised in .maps with two inner arrays: the program looks up the inner
// map by index, then counts into it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u64);
};

struct inner inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 2);
    __type(key, __u32);
    __array(values, struct inner);
} outer SEC(".maps") = {
    .values = { &inner_a, &inner_b },
};

SEC("xdp")
int count(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
    __u32 which, slot = 1;
    if (data + 1 > data_end)
        return XDP_ABORTED;
    which = *(__u8 *)data & 1; /* the first byte's low bit picks the inner map */
    void *inner = bpf_map_lookup_elem(&outer, &which);
    if (!inner)
        return XDP_DROP;
    __u64 *value = bpf_map_lookup_elem(inner, &slot);
    if (!value)
        return XDP_DROP;
    *value += 10 + which;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

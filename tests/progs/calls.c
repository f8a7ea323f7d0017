// Helpers that run BPF code: bpf_tail_call through a prog array initialised in .maps,
// bpf_loop and bpf_for_each_map_elem callbacks (functions passed by address).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} values SEC(".maps");

__u64 loop_sum;
__u64 visited_sum;
__u32 tail_hops;
__u32 chain_runs;

SEC("socket")
int leaf(struct __sk_buff *skb)
{
    tail_hops++;
    return 40 + tail_hops;
}

SEC("socket")
int chain(struct __sk_buff *skb);

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 4);
    __uint(key_size, sizeof(__u32));
    __array(values, int (void *));
} jumps SEC(".maps") = {
    .values = { [1] = (void *)&leaf, [2] = (void *)&chain },
};

/* Tail-calls itself until the limit of 33 tail calls makes the call fall through. */
SEC("socket")
int chain(struct __sk_buff *skb)
{
    chain_runs++;
    bpf_tail_call(skb, &jumps, 2);
    return chain_runs;
}

SEC("socket")
int entry(struct __sk_buff *skb)
{
    bpf_tail_call(skb, &jumps, 3); /* empty slot: falls through */
    bpf_tail_call(skb, &jumps, 1); /* never returns */
    return 7;
}

static long add_index(__u64 index, void *ctx)
{
    __u64 *sum = ctx;
    *sum += index;
    return index == 9 ? 1 : 0; /* stop after index 9 */
}

static long visit(void *map, __u32 *key, __u64 *value, void *ctx)
{
    visited_sum += *key * 100 + *value;
    *value += 1;
    return 0;
}

SEC("socket")
int callbacks(struct __sk_buff *skb)
{
    __u64 sum = 0;
    long loops = bpf_loop(100, add_index, &sum, 0);
    loop_sum = sum;
    long seen = bpf_for_each_map_elem(&values, visit, 0, 0);
    return loops * 1000 + seen;
}

char LICENSE[] SEC("license") = "GPL";

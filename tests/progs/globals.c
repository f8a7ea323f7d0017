// Global data in .data/.rodata/.bss/.data.custom, a .text subprogram shared by two programs,
// a table of function pointers in .data called through callx, a BTF-defined array map and bpf_printk.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

const volatile __u32 factor = 3;
__u64 total = 10;
__u32 hits;
static __u32 secret SEC(".data.custom") = 7;

typedef __u64 (*op_t)(__u64);
static __noinline __u64 twice(__u64 x) { return x * 2 + secret; }
static __noinline __u64 thrice(__u64 x) { return x * factor; }
op_t ops[2] = { twice, thrice };

static __noinline __u64 helper_sum(__u64 a, __u64 b) { return a + b + hits; }

SEC("xdp")
int prog_a(struct xdp_md *ctx)
{
    __u32 key = 1;
    __u64 *v = bpf_map_lookup_elem(&counts, &key);
    if (v)
        *v += 1;
    hits++;
    total = helper_sum(total, ops[hits & 1](hits));
    return 2;
}

SEC("socket")
int prog_b(void *ctx)
{
    return helper_sum(factor, 1) + bpf_printk("hi %d", hits);
}
char LICENSE[] SEC("license") = "GPL";

/* A function pointer table in global data holding a function that reads through its argument:
 * a callx may reach it with a number, so the program is rejected at the dereference. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef __u64 (*op_t)(__u64);

static __noinline __u64 add_one(__u64 x) { return x + 1; }
static __noinline __u64 deref(__u64 x) { return *(volatile __u64 *)(long)x; }

op_t mixed_ops[2] = { add_one, deref };
__u64 result;

SEC("xdp")
int unsafe_calls(struct xdp_md *ctx)
{
    __u64 x = ctx->data_end - ctx->data;
    result = mixed_ops[x & 1](x);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

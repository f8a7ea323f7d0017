/* Function pointers in global data, called through callx: every function whose address the
 * object takes is a possible target, so each must be safe with the arguments of the call. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef __u64 (*op_t)(__u64);

static __noinline __u64 add_one(__u64 x) { return x + 1; }
static __noinline __u64 square(__u64 x) { return x * x; }

op_t safe_ops[2] = { add_one, square };
__u64 result;

SEC("xdp")
int safe_calls(struct xdp_md *ctx)
{
    __u64 x = ctx->data_end - ctx->data;
    result = safe_ops[x & 1](x);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

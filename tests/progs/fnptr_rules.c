/* Programs that break a rule of function pointers in global data, one per `?xdp` section (each
 * loads only when named): tests/test_function_pointers.py expects each rejected at load with
 * its message. Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef int (*tracer_t)(struct xdp_md *ctx);

static __noinline int trace_length(struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data;
}

/* One argument too many for tracer_t. */
static __noinline int trace_pair(struct xdp_md *ctx, int extra)
{
	return extra;
}

/* Returns nothing where tracer_t returns an int. */
static __noinline void trace_nothing(struct xdp_md *ctx)
{
}

/* Takes a struct other than the one tracer_t takes. */
static __noinline int trace_sock(struct __sk_buff *skb)
{
	return 0;
}

const void *all[4] = { trace_length, trace_pair, trace_nothing, trace_sock };
tracer_t hook;

SEC("?xdp")
int no_null_check(struct xdp_md *ctx)
{
	return hook(ctx);
}

SEC("?xdp")
int store_more_args(struct xdp_md *ctx)
{
	hook = (tracer_t)trace_pair;
	return XDP_PASS;
}

SEC("?xdp")
int store_void_return(struct xdp_md *ctx)
{
	hook = (tracer_t)trace_nothing;
	return XDP_PASS;
}

SEC("?xdp")
int store_other_struct(struct xdp_md *ctx)
{
	hook = (tracer_t)trace_sock;
	return XDP_PASS;
}

SEC("?xdp")
int store_number(struct xdp_md *ctx)
{
	hook = (tracer_t)0x1234;
	return XDP_PASS;
}

SEC("?xdp")
int store_half(struct xdp_md *ctx)
{
	*(volatile __u32 *)&hook = 0;
	return XDP_PASS;
}

SEC("?xdp")
int helper_write(struct xdp_md *ctx)
{
	bpf_probe_read_kernel(&hook, sizeof(hook), (void *)0);
	return XDP_PASS;
}

SEC("?xdp")
int checked_call(struct xdp_md *ctx)
{
	tracer_t h = hook;

	return h ? h(ctx) : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

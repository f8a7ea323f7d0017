/* A function pointer in .data initialised with a function of another prototype (through a
 * cast): the object is refused at load. Rebuild with tests/progs/build.sh. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef int (*tracer_t)(struct xdp_md *ctx);

static __noinline int trace_pair(struct xdp_md *ctx, int extra)
{
	return extra;
}

tracer_t hook = (tracer_t)trace_pair;

SEC("xdp")
int debug_point(struct xdp_md *ctx)
{
	tracer_t h = hook;

	return h ? h(ctx) : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

/* A debug point, as a tracing tool builds one: `hook` (.bss, NULL: tracing off) is called on
 * every packet once a Python tool points it at one of the tracers, and switched between them
 * while traffic runs (tests/test_function_pointers.py).
 *
 *   trace_length      returns the packet's length (reads ctx->data and ctx->data_end)
 *   trace_first_byte  returns the packet's first byte, -1 for an empty packet
 *   trace_count       counts the packets it saw in `seen` and returns the count
 *
 * `scale` is a second function pointer of another prototype: the callx through `hook` reaches
 * only the functions that fit `hook`'s, so read_word, which dereferences its argument, is never
 * called with the ctx. Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef int (*tracer_t)(struct xdp_md *ctx);
typedef __u64 (*reader_t)(__u64 *word);

static __noinline int trace_length(struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data;
}

static __noinline int trace_first_byte(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	if (data + 1 > end)
		return -1;
	return *(__u8 *)data;
}

__u64 seen;

static __noinline int trace_count(struct xdp_md *ctx)
{
	return ++seen;
}

static __noinline __u64 read_word(__u64 *word)
{
	return *word;
}

/* The tracers a tool may pick from (their addresses taken, so every program can call them). */
const tracer_t tracers[3] = { trace_length, trace_first_byte, trace_count };

tracer_t hook;
reader_t reader = read_word;
__u64 traced, last, word = 42, read_back;

SEC("xdp")
int debug_point(struct xdp_md *ctx)
{
	tracer_t h = hook;
	reader_t r = reader;

	if (h) {
		last = h(ctx);
		traced++;
	}
	if (r)
		read_back = r(&word);
	return XDP_PASS;
}

/* A program that turns its own debug point on: a store of a function that fits the slot. */
SEC("xdp")
int arm_length(struct xdp_md *ctx)
{
	hook = trace_length;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

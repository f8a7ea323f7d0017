// SPDX-License-Identifier: MIT
/*
 * Counters in every kind of storage the kernel engine reads back: global data (.bss, .data,
 * .rodata) and maps (ARRAY, HASH, PERCPU_ARRAY). tests/test_kernel_engine.py runs it with
 * BPF_PROG_TEST_RUN (repeat = N) and checks the contents after the N runs.
 *
 * Each run, for a frame of len bytes:
 *   runs += 1; bytes_seen += len; last_len = len; total += 1 (starts at 100, in .data);
 *   counters[len & 3] += 1; by_len[len] += 1 (created at 1); per_cpu_runs[0] += 1 (this CPU's slot);
 * returns XDP_DROP when len == drop_len (a .rodata knob, set before load), else XDP_PASS.
 *
 * Straight-line code and map helpers only (no loops). Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} by_len SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} per_cpu_runs SEC(".maps");

__u64 runs;			/* .bss */
__u64 bytes_seen;		/* .bss */
__u32 last_len;			/* .bss */
__u64 total = 100;		/* .data */
const volatile __u32 drop_len;	/* .rodata: 0 = never drop */

SEC("xdp")
int count(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	__u32 slot = len & 3;
	__u32 zero = 0;
	__u64 one = 1;
	__u64 *value;

	runs += 1;
	bytes_seen += len;
	last_len = len;
	total += 1;

	value = bpf_map_lookup_elem(&counters, &slot);
	if (value)
		*value += 1;
	value = bpf_map_lookup_elem(&by_len, &len);
	if (value)
		*value += 1;
	else
		bpf_map_update_elem(&by_len, &len, &one, BPF_NOEXIST);
	value = bpf_map_lookup_elem(&per_cpu_runs, &zero);
	if (value)
		*value += 1;

	if (drop_len && len == drop_len)
		return XDP_DROP;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

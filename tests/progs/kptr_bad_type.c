// SPDX-License-Identifier: MIT
/*
 * A kptr tag on a pointer to a number: the kernel accepts kptrs only to structs, so the map
 * cannot be created and the object does not load (tests/test_kptr_rules.py). Rebuild with
 * tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct value {
	__u64 __kptr *count;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct value);
} values SEC(".maps");

SEC("xdp")
int count(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

// SPDX-License-Identifier: MIT
/*
 * An object with a map of a type bpfjit does not implement (CGROUP_ARRAY) and two programs:
 * tests/test_redirect_maps.py checks that only the program using that map is refused.
 *
 *   uses_cgroups  bpf_skb_under_cgroup on the CGROUP_ARRAY.
 *   plain         counts its runs in an ARRAY and returns the count.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} runs SEC(".maps");

SEC("tc")
int uses_cgroups(struct __sk_buff *skb)
{
	return bpf_skb_under_cgroup(skb, &cgroups, 0);
}

SEC("tc")
int plain(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *count = bpf_map_lookup_elem(&runs, &key);

	if (!count)
		return 0;
	return ++*count;
}

char _license[] SEC("license") = "GPL";

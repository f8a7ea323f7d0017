// SPDX-License-Identifier: MIT
/*
 * Programs the verifier rejects, so that tests/test_source_lines.py can check that its errors
 * name the C line of the rejected instruction (from .BTF.ext line info). The lines the tests
 * expect carry a marker comment ("REJECTED: <program>"); the tests find them by that marker.
 *
 *   unchecked_lookup      dereferences a map lookup's result without testing it for NULL.
 *   unchecked_in_subprog  calls two .text functions; the second (placed after the first in
 *                         .text, so its line records are relocated) makes the same mistake.
 *   accepted              calls the correct .text function: verified, for the level-2 log.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __attribute__((noinline)) int bump(__u32 key)
{
	__u64 *value = bpf_map_lookup_elem(&counts, &key);

	if (value)
		*value += 1;
	return 0;
}

static __attribute__((noinline)) int bump_unchecked(__u32 key)
{
	__u64 *value = bpf_map_lookup_elem(&counts, &key);

	*value += 2; /* REJECTED: unchecked_in_subprog */
	return 1;
}

SEC("socket")
int unchecked_lookup(struct __sk_buff *skb)
{
	__u32 key = skb->len;
	__u64 *value = bpf_map_lookup_elem(&counts, &key);

	return *value; /* REJECTED: unchecked_lookup */
}

SEC("socket")
int unchecked_in_subprog(struct __sk_buff *skb)
{
	bump(skb->len);
	return bump_unchecked(skb->protocol);
}

SEC("socket")
int accepted(struct __sk_buff *skb)
{
	return bump(skb->len);
}

char LICENSE[] SEC("license") = "GPL";

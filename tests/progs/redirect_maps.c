// SPDX-License-Identifier: MIT
/*
 * Redirects from XDP and tc, one small program each; tests/test_redirect_maps.py runs them on
 * every engine with the results worked out by hand from net/core/filter.c, kernel/bpf/devmap.c,
 * cpumap.c and xskmap.c (what BPF_PROG_TEST_RUN returns, and where the packet would go).
 *
 *   to_port      bpf_redirect_map(&ports, key, flags), key and flags from the packet's first
 *                two u32s: XDP_REDIRECT when the DEVMAP holds the key, else the flags' low bits.
 *   to_port_hash the same on a DEVMAP_HASH.
 *   to_cpu       the same on a CPUMAP.
 *   to_xsk       the same on an XSKMAP (always empty in bpfjit).
 *   to_ifindex   bpf_redirect(ifindex, flags) from XDP, both from the packet.
 *   tc_to_ifindex  bpf_redirect(ifindex, flags) from tc.
 *   port_ifindex the ifindex a DEVMAP lookup finds for the key in the packet's first u32, or
 *                XDP_PASS when there is none (programs read DEVMAP values).
 *   redirect_then_pass  redirects, then returns XDP_PASS: no redirect is reported.
 *   ifindex_then_port  bpf_redirect(7, 0), then to_port's bpf_redirect_map, then XDP_REDIRECT:
 *                the last helper's record counts (a miss clears the first one's).
 *   port_then_ifindex  to_port's bpf_redirect_map, then bpf_redirect(7, 0), then XDP_REDIRECT.
 *
 * Rebuild with tests/progs/build.sh.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} ports_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} cpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} sockets SEC(".maps");

/* The packet's first two u32s, or -1 when it is too short. */
static __always_inline int args(void *data, void *data_end, __u32 *key, __u64 *flags)
{
	__u32 *words = data;

	if ((void *)(words + 2) > data_end)
		return -1;
	*key = words[0];
	*flags = words[1];
	return 0;
}

/* bpf_redirect_map(map, key, flags) with the key and flags from the packet (map NULL:
 * bpf_redirect(key, flags)); `fail` for a short packet. */
static __always_inline int redirect_by(void *map, void *data, void *data_end, int fail)
{
	__u32 key;
	__u64 flags;

	if (args(data, data_end, &key, &flags))
		return fail;
	return map ? bpf_redirect_map(map, key, flags) : bpf_redirect(key, flags);
}

#define XDP_REDIRECTOR(name, map) \
	SEC("xdp") int name(struct xdp_md *ctx) \
	{ \
		return redirect_by(map, (void *)(long)ctx->data, (void *)(long)ctx->data_end, XDP_DROP); \
	}

XDP_REDIRECTOR(to_port, &ports)
XDP_REDIRECTOR(to_port_hash, &ports_hash)
XDP_REDIRECTOR(to_cpu, &cpus)
XDP_REDIRECTOR(to_xsk, &sockets)
XDP_REDIRECTOR(to_ifindex, NULL)

SEC("tc")
int tc_to_ifindex(struct __sk_buff *skb)
{
	return redirect_by(NULL, (void *)(long)skb->data, (void *)(long)skb->data_end, TC_ACT_SHOT);
}

SEC("xdp")
int port_ifindex(struct xdp_md *ctx)
{
	__u32 key;
	__u64 flags;
	struct bpf_devmap_val *val;

	if (args((void *)(long)ctx->data, (void *)(long)ctx->data_end, &key, &flags))
		return XDP_DROP;
	val = bpf_map_lookup_elem(&ports, &key);
	return val ? val->ifindex : XDP_PASS;
}

SEC("xdp")
int redirect_then_pass(struct xdp_md *ctx)
{
	bpf_redirect(7, 0);
	return XDP_PASS;
}

SEC("xdp")
int ifindex_then_port(struct xdp_md *ctx)
{
	bpf_redirect(7, 0);
	redirect_by(&ports, (void *)(long)ctx->data, (void *)(long)ctx->data_end, XDP_DROP);
	return XDP_REDIRECT;
}

SEC("xdp")
int port_then_ifindex(struct xdp_md *ctx)
{
	redirect_by(&ports, (void *)(long)ctx->data, (void *)(long)ctx->data_end, XDP_DROP);
	bpf_redirect(7, 0);
	return XDP_REDIRECT;
}

char _license[] SEC("license") = "GPL";

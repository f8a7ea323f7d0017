/* Prelude of the packet programs' BPF build (clang -target bpf -include bpf_xdp.h NAME.c): the
 * kernel's uapi headers and libbpf's helpers; each XDP_BENCH(name) is an XDP program. The host
 * build uses native_xdp.h instead (same names, host definitions). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#define XDP_BENCH(name) SEC("xdp") int name(struct xdp_md *ctx)
char LICENSE[] SEC("license") = "GPL";

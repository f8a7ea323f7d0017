/* One program calls a kfunc (bpfjit has none), its neighbour does not: as with libbpf, only the
 * program that calls it fails to load. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

SEC("tc")
int uses_kfunc(struct __sk_buff *ctx)
{
    return bpf_cast_to_kern_ctx(ctx) != 0;
}

SEC("xdp")
int plain(struct xdp_md *ctx)
{
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

// Calls bpf_get_current_pid_tgid, which bpfjit does not implement: users register it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 seen;

SEC("xdp")
int pid(struct xdp_md *ctx)
{
    seen = bpf_get_current_pid_tgid();
    return (seen >> 32) == 1234 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";

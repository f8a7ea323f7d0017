// Sections bpfjit runs as raw programs (r1 = the data, r2 = its length): a tracepoint and a
// kprobe. The tracepoint copies a string literal, which clang puts in .rodata.str1.1.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 kprobe_hits;

SEC("tracepoint/syscalls/sys_enter_openat")
int tp(__u64 *ctx)
{
    char buf[8];
    long copied = bpf_probe_read_kernel_str(buf, sizeof(buf), "hello, tracepoint");
    return copied * 1000 + (ctx[0] & 0xff) + buf[4];
}

SEC("kprobe/do_sys_openat2")
int kp(void *ctx)
{
    kprobe_hits++;
    return 7;
}

char LICENSE[] SEC("license") = "GPL";

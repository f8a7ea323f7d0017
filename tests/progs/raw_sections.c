// Tracing sections: a tracepoint and a kprobe, which bpfjit runs on the ctx a user gives (the
// kernel cannot test-run them). The tracepoint copies a string literal, which clang puts in
// .rodata.str1.1, and reads the first field past the record's 8-byte common header.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 kprobe_hits;

SEC("tracepoint/syscalls/sys_enter_openat")
int tp(__u64 *ctx)
{
    char buf[8];
    long copied = bpf_probe_read_kernel_str(buf, sizeof(buf), "hello, tracepoint");
    return copied * 1000 + (ctx[1] & 0xff) + buf[4];
}

SEC("kprobe/do_sys_openat2")
int kp(void *ctx)
{
    kprobe_hits++;
    return 7;
}

char LICENSE[] SEC("license") = "GPL";

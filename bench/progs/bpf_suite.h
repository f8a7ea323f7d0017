/* Prelude of the suite's BPF build (clang -target bpf -include bpf_suite.h NAME.c): each
 * BENCH(name) is a raw program, r1 = memory, r2 = its length. */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#define BENCH(name) SEC("bench") __u64 name(void *mem, __u64 len)
char LICENSE[] SEC("license") = "GPL";

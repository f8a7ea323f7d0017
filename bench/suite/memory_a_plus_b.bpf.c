#include "bpf_suite.h"
/* Sum of the two u64 at the start of memory. */
SEC("bench") __u64 memory_a_plus_b(void *mem, __u64 len)
{
    __u64 *p = mem;
    return p[0] + p[1];
}
char LICENSE[] SEC("license") = "GPL";

#include "bpf_suite.h"
/* Return a constant: the cost of one invocation. */
SEC("bench") __u64 simple(void *mem, __u64 len)
{
    return 0;
}
char LICENSE[] SEC("license") = "GPL";

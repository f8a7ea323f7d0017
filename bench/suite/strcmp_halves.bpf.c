#include "bpf_suite.h"
/* Byte compare of the two halves of memory: index of the first difference, or the half length. */
SEC("bench") __u64 strcmp_halves(void *mem, __u64 len)
{
    const unsigned char *a = mem, *b = (const unsigned char *)mem + len / 2;
    __u64 half = len / 2;
    for (__u64 i = 0; i < half; i++)
        if (a[i] != b[i])
            return i;
    return half;
}
char LICENSE[] SEC("license") = "GPL";

#include "native_suite.h"
typedef uint64_t __u64;
uint64_t memcpy_bench(void *mem, uint64_t len)
{
    unsigned char *src = mem, *dst = (unsigned char *)mem + len / 2;
    __u64 half = len / 2;
    for (__u64 i = 0; i < half; i++)
        dst[i] = src[i];
    return half;
}
REPEAT_HARNESS(memcpy_bench)

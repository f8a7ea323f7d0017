#include "native_suite.h"
typedef uint64_t __u64;
uint64_t strcmp_halves(void *mem, uint64_t len)
{
    const unsigned char *a = mem, *b = (const unsigned char *)mem + len / 2;
    __u64 half = len / 2;
    for (__u64 i = 0; i < half; i++)
        if (a[i] != b[i])
            return i;
    return half;
}
REPEAT_HARNESS(strcmp_halves)

#include "native_suite.h"
uint64_t memory_a_plus_b(void *mem, uint64_t len)
{
    uint64_t *p = mem;
    return p[0] + p[1];
}
REPEAT_HARNESS(memory_a_plus_b)

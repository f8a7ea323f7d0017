#include "native_suite.h"
uint64_t simple(void *mem, uint64_t len)
{
    return 0;
}
REPEAT_HARNESS(simple)

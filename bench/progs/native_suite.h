/* Prelude of the suite's native build (cc -include native_suite.h NAME.c): each BENCH(name) is
 * a C function name(mem, len) plus repeat_name(mem, len, n) (native_repeat.h). */
#include <stdint.h>
typedef uint64_t __u64;
typedef int64_t __s64;
typedef uint32_t __u32;
typedef int32_t __s32;
#include "native_repeat.h"
#define BENCH(name)                                                                       \
    __u64 name(void *mem, __u64 len);                                                     \
    BENCH_REPEAT(name)                                                                    \
    __u64 name(void *mem, __u64 len)

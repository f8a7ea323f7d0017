/* Prelude of the suite's native build (cc -include native_suite.h NAME.c): each BENCH(name) is
 * a C function name(mem, len) plus repeat_name(mem, len, n), which calls it n times through a
 * volatile function pointer (so the call is neither inlined nor hoisted out of the loop). */
#include <stdint.h>
typedef uint64_t __u64;
typedef int64_t __s64;
typedef uint32_t __u32;
typedef int32_t __s32;
#define BENCH(name)                                                                       \
    __u64 name(void *mem, __u64 len);                                                     \
    __u64 repeat_##name(void *mem, __u64 len, __u64 n)                                    \
    {                                                                                     \
        __u64 (*volatile fn)(void *, __u64) = name;                                       \
        __u64 r = 0;                                                                      \
        for (__u64 i = 0; i < n; i++)                                                     \
            r = fn(mem, len);                                                             \
        return r;                                                                         \
    }                                                                                     \
    __u64 name(void *mem, __u64 len)

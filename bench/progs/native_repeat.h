/* Shared by the native preludes (native_suite.h, native_xdp.h): BENCH_REPEAT(name) defines
 * uint64_t repeat_name(mem, len, n), which calls name(mem, len) n times through a volatile
 * function pointer, so that the call is neither inlined nor hoisted out of the loop. name must
 * be declared before. */
#include <stdint.h>
#define BENCH_REPEAT(name)                                                                    \
    uint64_t repeat_##name(void *mem, uint64_t len, uint64_t n)                               \
    {                                                                                         \
        uint64_t (*volatile fn)(void *, uint64_t) = name;                                     \
        uint64_t r = 0;                                                                       \
        for (uint64_t i = 0; i < n; i++)                                                      \
            r = fn(mem, len);                                                                 \
        return r;                                                                             \
    }

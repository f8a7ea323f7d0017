/* Shared prelude of the native twins: NAME(mem, len) plus repeat_NAME(mem, len, n), which calls
 * NAME n times through a volatile function pointer (so the call is not inlined or hoisted). */
#include <stdint.h>
#define REPEAT_HARNESS(name)                                                              \
    uint64_t repeat_##name(void *mem, uint64_t len, uint64_t n)                           \
    {                                                                                     \
        uint64_t (*volatile fn)(void *, uint64_t) = name;                                 \
        uint64_t r = 0;                                                                   \
        for (uint64_t i = 0; i < n; i++)                                                  \
            r = fn(mem, len);                                                             \
        return r;                                                                         \
    }

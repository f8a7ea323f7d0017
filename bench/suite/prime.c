#include "native_suite.h"
typedef uint64_t __u64;
uint64_t prime(void *mem, uint64_t len)
{
    __u64 limit = *(__u64 *)mem, count = 0;
    for (__u64 n = 2; n < limit; n++) {
        int is_prime = 1;
        for (__u64 d = 2; d * d <= n; d++) {
            if (n % d == 0) {
                is_prime = 0;
                break;
            }
        }
        count += is_prime;
    }
    return count;
}
REPEAT_HARNESS(prime)

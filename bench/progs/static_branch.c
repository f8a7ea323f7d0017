// Static-branch benchmark: a hot packet-hashing loop with debug points, built several ways.
//   -DVARIANT_KEYS: each debug point is bpf_static_branch_unlikely(&debug) (a patchable nop)
//   -DVARIANT_FLAG: each debug point tests a global variable (a load and a compare)
//   neither:        no debug points at all (the baseline)
//   -DPOINTS=N:     only the first N of the 10 debug points exist (default 10)
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../../bpfjit/include/bpfjit/static_keys.h"

__u64 debug_hits[10];
#ifdef VARIANT_KEYS
DEFINE_STATIC_KEY(debug);
#define DEBUG_ON() bpf_static_branch_unlikely(&debug)
#elif defined(VARIANT_FLAG)
volatile __u32 debug_flag;
#define DEBUG_ON() (debug_flag)
#else
#define DEBUG_ON() 0
#endif

#ifndef POINTS
#define POINTS 10
#endif
#define POINT(n, x) do { if ((n) < POINTS && DEBUG_ON()) debug_hits[n] += (x); } while (0)

SEC("xdp")
int hot(struct xdp_md *ctx)
{
    __u8 *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u64 h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 64; i++) {
        if (data + i + 1 > end)
            break;
        h ^= data[i];
        POINT(0, h);
        h *= 0x100000001b3ULL;
        POINT(1, h);
        h ^= h >> 29;
        POINT(2, h);
        h += i;
        POINT(3, h);
        h = (h << 7) | (h >> 57);
        POINT(4, h);
        h ^= 0x9e3779b97f4a7c15ULL;
        POINT(5, h);
        h *= 3;
        POINT(6, h);
        h -= data[i] << 3;
        POINT(7, h);
        h ^= h >> 17;
        POINT(8, h);
        h += 0x5bd1e995;
        POINT(9, h);
    }
    return (h & 1) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";

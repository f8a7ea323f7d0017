/* Pointer shapes that the JIT lowers as LLVM pointers derived from one another (jit/lower.py,
 * typed_pointers), each with an answer worked out by hand in tests/test_typed_pointers.py:
 * two names for one global, byte copies between and within buffers (apart and overlapping), a
 * stack buffer reached through a copy of r10, and a loop over the packet. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Hides where a pointer came from, so that clang cannot fold the accesses through it. */
#define LAUNDER(p) asm volatile("" : "+r"(p))

struct pair {
    __u64 first;
    __u64 second;
} pair;

unsigned char buf[256];

/* Two pointers into `pair`, loaded by ld_imm64 at different offsets: a store through one must
 * be seen by a load through the other. Returns second after both stores: 7. */
SEC("xdp")
int alias_two_names(struct xdp_md *ctx)
{
    __u64 *second = &pair.second;
    __u64 *whole = &pair.first;
    LAUNDER(second);
    LAUNDER(whole);
    *second = 5;
    whole[1] = 7;
    return *second;
}

/* buf[128 + i] = buf[i] for i < 64, then the sum of buf[128..191]. */
SEC("xdp")
int copy_apart(struct xdp_md *ctx)
{
    unsigned char *b = buf;
    __u32 sum = 0;
    LAUNDER(b);
    for (int i = 0; i < 64; i++)
        b[128 + i] = b[i];
    for (int i = 0; i < 64; i++)
        sum += b[128 + i];
    return sum;
}

/* buf[i + 1] = buf[i] for i < 100, front to back: buf[0] spreads over buf[0..100]; returns
 * buf[100] * 1000 + buf[101]. */
SEC("xdp")
int copy_overlapping(struct xdp_md *ctx)
{
    unsigned char *b = buf;
    LAUNDER(b);
    for (int i = 0; i < 100; i++)
        b[i + 1] = b[i];
    return b[100] * 1000 + b[101];
}

/* A 32-byte stack buffer filled through a pointer, read back through another: sum of i * 3. */
SEC("xdp")
int stack_through_copies(struct xdp_md *ctx)
{
    volatile unsigned char local[32];
    unsigned char *p = (unsigned char *)local;
    __u32 sum = 0;
    LAUNDER(p);
    for (int i = 0; i < 32; i++)
        p[i] = i * 3;
    for (int i = 0; i < 32; i++)
        sum += local[i];
    return sum;
}

/* The sum of the packet's bytes, at most 64 of them. */
SEC("xdp")
int packet_sum(struct xdp_md *ctx)
{
    unsigned char *data = (unsigned char *)(long)ctx->data;
    unsigned char *end = (unsigned char *)(long)ctx->data_end;
    __u32 sum = 0;
    for (int i = 0; i < 64; i++) {
        if (data + i + 1 > end)
            break;
        sum += data[i];
    }
    return sum;
}

char LICENSE[] SEC("license") = "GPL";

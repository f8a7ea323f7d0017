/* Xor of floor(log2(x)) (0 for x = 0) over the u64 of memory. */
BENCH(log2_int)
{
    __u64 *p = mem;
    __u64 n = len / 8, r = 0;
    for (__u64 i = 0; i < n; i++) {
        __u64 v = p[i], l = 0;
        if (v >> 32) { v >>= 32; l += 32; }
        if (v >> 16) { v >>= 16; l += 16; }
        if (v >> 8) { v >>= 8; l += 8; }
        if (v >> 4) { v >>= 4; l += 4; }
        if (v >> 2) { v >>= 2; l += 2; }
        if (v >> 1) { l += 1; }
        r ^= l;
    }
    return r;
}

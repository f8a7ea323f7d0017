/* Byte loop copying the first half of memory over the second; returns the bytes copied. */
BENCH(memcpy_bench)
{
    unsigned char *src = mem, *dst = (unsigned char *)mem + len / 2;
    __u64 half = len / 2;
    for (__u64 i = 0; i < half; i++)
        dst[i] = src[i];
    return half;
}

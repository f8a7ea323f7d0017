/* Byte compare of the two halves of memory: index of the first difference, or the half length. */
BENCH(strcmp_halves)
{
    const unsigned char *a = mem, *b = (const unsigned char *)mem + len / 2;
    __u64 half = len / 2;
    for (__u64 i = 0; i < half; i++)
        if (a[i] != b[i])
            return i;
    return half;
}

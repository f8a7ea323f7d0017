/* Sum of the two u64 at the start of memory. */
BENCH(memory_a_plus_b)
{
    __u64 *p = mem;
    return p[0] + p[1];
}

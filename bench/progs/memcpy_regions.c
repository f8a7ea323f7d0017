/* A fixed-size byte loop between two regions of one buffer at constant offsets, as code that moves
 * a header or a payload between fixed places is written; returns the bytes copied (0 when the
 * buffer is too short). The sizes are bench/cases.py's REGION, REGION_SRC and REGION_DST. */
#define REGION 4096
#define REGION_SRC 64
#define REGION_DST 8192

BENCH(memcpy_regions_bench)
{
    unsigned char *m = mem;
    if (len < REGION_DST + REGION)
        return 0;
    for (__u64 i = 0; i < REGION; i++)
        m[REGION_DST + i] = m[REGION_SRC + i];
    return REGION;
}

/* A 64-case switch over the i32 of memory (generated; case k adds (k * 0x9E3779B1) % 1000003). */
BENCH(switch_bench)
{
    const __s32 *p = mem;
    __u64 n = len / 4, r = 0;
    for (__u64 i = 0; i < n; i++) {
        __s32 x = p[i];
        switch ((__u32)x & 63) {
        case 0: r = (r ^ (__u64)(__s64)x) + 0; break;
        case 1: r = (r ^ (__u64)(__s64)x) + 427799; break;
        case 2: r = (r ^ (__u64)(__s64)x) + 855598; break;
        case 3: r = (r ^ (__u64)(__s64)x) + 283394; break;
        case 4: r = (r ^ (__u64)(__s64)x) + 711193; break;
        case 5: r = (r ^ (__u64)(__s64)x) + 138989; break;
        case 6: r = (r ^ (__u64)(__s64)x) + 566788; break;
        case 7: r = (r ^ (__u64)(__s64)x) + 994587; break;
        case 8: r = (r ^ (__u64)(__s64)x) + 422383; break;
        case 9: r = (r ^ (__u64)(__s64)x) + 850182; break;
        case 10: r = (r ^ (__u64)(__s64)x) + 277978; break;
        case 11: r = (r ^ (__u64)(__s64)x) + 705777; break;
        case 12: r = (r ^ (__u64)(__s64)x) + 133573; break;
        case 13: r = (r ^ (__u64)(__s64)x) + 561372; break;
        case 14: r = (r ^ (__u64)(__s64)x) + 989171; break;
        case 15: r = (r ^ (__u64)(__s64)x) + 416967; break;
        case 16: r = (r ^ (__u64)(__s64)x) + 844766; break;
        case 17: r = (r ^ (__u64)(__s64)x) + 272562; break;
        case 18: r = (r ^ (__u64)(__s64)x) + 700361; break;
        case 19: r = (r ^ (__u64)(__s64)x) + 128157; break;
        case 20: r = (r ^ (__u64)(__s64)x) + 555956; break;
        case 21: r = (r ^ (__u64)(__s64)x) + 983755; break;
        case 22: r = (r ^ (__u64)(__s64)x) + 411551; break;
        case 23: r = (r ^ (__u64)(__s64)x) + 839350; break;
        case 24: r = (r ^ (__u64)(__s64)x) + 267146; break;
        case 25: r = (r ^ (__u64)(__s64)x) + 694945; break;
        case 26: r = (r ^ (__u64)(__s64)x) + 122741; break;
        case 27: r = (r ^ (__u64)(__s64)x) + 550540; break;
        case 28: r = (r ^ (__u64)(__s64)x) + 978339; break;
        case 29: r = (r ^ (__u64)(__s64)x) + 406135; break;
        case 30: r = (r ^ (__u64)(__s64)x) + 833934; break;
        case 31: r = (r ^ (__u64)(__s64)x) + 261730; break;
        case 32: r = (r ^ (__u64)(__s64)x) + 689529; break;
        case 33: r = (r ^ (__u64)(__s64)x) + 117325; break;
        case 34: r = (r ^ (__u64)(__s64)x) + 545124; break;
        case 35: r = (r ^ (__u64)(__s64)x) + 972923; break;
        case 36: r = (r ^ (__u64)(__s64)x) + 400719; break;
        case 37: r = (r ^ (__u64)(__s64)x) + 828518; break;
        case 38: r = (r ^ (__u64)(__s64)x) + 256314; break;
        case 39: r = (r ^ (__u64)(__s64)x) + 684113; break;
        case 40: r = (r ^ (__u64)(__s64)x) + 111909; break;
        case 41: r = (r ^ (__u64)(__s64)x) + 539708; break;
        case 42: r = (r ^ (__u64)(__s64)x) + 967507; break;
        case 43: r = (r ^ (__u64)(__s64)x) + 395303; break;
        case 44: r = (r ^ (__u64)(__s64)x) + 823102; break;
        case 45: r = (r ^ (__u64)(__s64)x) + 250898; break;
        case 46: r = (r ^ (__u64)(__s64)x) + 678697; break;
        case 47: r = (r ^ (__u64)(__s64)x) + 106493; break;
        case 48: r = (r ^ (__u64)(__s64)x) + 534292; break;
        case 49: r = (r ^ (__u64)(__s64)x) + 962091; break;
        case 50: r = (r ^ (__u64)(__s64)x) + 389887; break;
        case 51: r = (r ^ (__u64)(__s64)x) + 817686; break;
        case 52: r = (r ^ (__u64)(__s64)x) + 245482; break;
        case 53: r = (r ^ (__u64)(__s64)x) + 673281; break;
        case 54: r = (r ^ (__u64)(__s64)x) + 101077; break;
        case 55: r = (r ^ (__u64)(__s64)x) + 528876; break;
        case 56: r = (r ^ (__u64)(__s64)x) + 956675; break;
        case 57: r = (r ^ (__u64)(__s64)x) + 384471; break;
        case 58: r = (r ^ (__u64)(__s64)x) + 812270; break;
        case 59: r = (r ^ (__u64)(__s64)x) + 240066; break;
        case 60: r = (r ^ (__u64)(__s64)x) + 667865; break;
        case 61: r = (r ^ (__u64)(__s64)x) + 95661; break;
        case 62: r = (r ^ (__u64)(__s64)x) + 523460; break;
        case 63: r = (r ^ (__u64)(__s64)x) + 951259; break;
        }
    }
    return r;
}

// Static keys (bpfjit's convention, bpfjit/include/bpfjit/static_keys.h): two keys, five source
// sites, keys shared by two XDP programs, a site in a loop and a site in a .text subprogram that
// both programs call.
//
//   debug      bpf_static_branch_unlikely at 3 sites: D1 (sk_main), D2 (sk_main, in a 4-iteration
//              loop), D3 (debug_extra, a .text subprogram called by sk_main and sk_other)
//   fast_path  bpf_static_branch_likely at 2 sites: F1 (sk_main), F2 (sk_other)
//
// Both macros are true iff the key is enabled; every key starts disabled. With .bss zeroed, one
// run of each program gives:
//
//   keys enabled       sk_main: retval main_count    sk_other: retval other_count
//   none                        2      0x000                   1      0x0000
//   debug                       2      0x141                   1      0x0100
//   fast_path                   3      0x002                   2      0x1000
//   debug + fast_path           3      0x143                   2      0x1100
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../../bpfjit/include/bpfjit/static_keys.h"

DEFINE_STATIC_KEY(debug);
DEFINE_STATIC_KEY(fast_path);

__u64 main_count;
__u64 other_count;

// D3: one source site in .text, present in both programs after linking.
static __noinline __u64 debug_extra(void)
{
    if (bpf_static_branch_unlikely(&debug))
        return 0x100;
    return 0;
}

SEC("xdp")
int sk_main(struct xdp_md *ctx)
{
    int ret = XDP_PASS;

    if (bpf_static_branch_unlikely(&debug))        // D1
        main_count += 0x1;

    if (bpf_static_branch_likely(&fast_path)) {    // F1
        ret = XDP_TX;
        main_count += 0x2;
    }

#pragma clang loop unroll(disable)
    for (int i = 0; i < 4; i++) {
        if (bpf_static_branch_unlikely(&debug))    // D2, run 4 times
            main_count += 0x10;
    }

    main_count += debug_extra();                   // D3
    return ret;
}

SEC("xdp")
int sk_other(struct xdp_md *ctx)
{
    int ret = XDP_DROP;

    if (bpf_static_branch_likely(&fast_path)) {    // F2
        ret = XDP_PASS;
        other_count += 0x1000;
    }

    other_count += debug_extra();                  // D3
    return ret;
}

char LICENSE[] SEC("license") = "GPL";

/* Shared prelude of the BPF side of the suite: raw programs, r1 = memory, r2 = its length. */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

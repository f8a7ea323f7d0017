#!/bin/sh
# Rebuild the benchmark objects (Debian packages clang-19 and libbpf-dev; apt-get update first).
#
# Micro-suite: each NAME.c is the one source of a benchmark, built here for BPF (with
# bpf_suite.h; -mcpu=v3 as NAME.bpf.o, and -mcpu=v4 as NAME.v4.bpf.o when v4 code differs) and at
# bench time by bpfjit.bench.native for the host (with native_suite.h).
set -eu
cd "$(dirname "$0")"
flags="-O2 -g -target bpf -I/usr/include/x86_64-linux-gnu"

# NAME.bpf.o (-mcpu=v3) from NAME.c with PRELUDE, and NAME.v4.bpf.o only where the v4 code differs.
build() {
    name=$1 prelude=$2
    clang-19 $flags -mcpu=v3 -include $prelude -c $name.c -o $name.bpf.o
    clang-19 $flags -mcpu=v4 -include $prelude -c $name.c -o $name.v4.bpf.o
    if [ "$(llvm-objdump-19 -d --no-show-raw-insn $name.bpf.o | tail -n +3)" = \
         "$(llvm-objdump-19 -d --no-show-raw-insn $name.v4.bpf.o | tail -n +3)" ]; then
        rm $name.v4.bpf.o
    fi
}

for name in simple memory_a_plus_b log2_int prime strcmp_halves memcpy memcpy_regions switch; do
    build $name bpf_suite.h
done
# switch also as users build it, at clang's default cpu (no -mcpu): NAME.default.bpf.o.
clang-19 $flags -include bpf_suite.h -c switch.c -o switch.default.bpf.o

# Packet programs: XDP programs, one source each, built here with bpf_xdp.h and at bench time
# for the host with native_xdp.h (bpfjit.bench.packets, bpfjit.bench.native).
for name in xdp_parse checksum hash_counter global_counter xdp_static_branch; do
    build $name bpf_xdp.h
done

# Helper-heavy packet programs: XDP (and one tc) programs, one source each (ringbuf_events holds
# two, tail_chain the eight stages of its chain), with bpf_xdp.h; no native twin (their maps and
# helpers have no host C counterpart).
for name in hash_churn lru_churn percpu_counter spin_counter loop_squares queue_churn ringbuf_events tail_chain \
        xdp_ipip_encap tc_dnat lpm_lookup xdp_redirect; do
    build $name bpf_xdp.h
done

# Static branches: one hot XDP loop with debug points, four ways.
clang-19 $flags -DVARIANT_KEYS -c static_branch.c -o static_branch_keys.o
clang-19 $flags -DVARIANT_FLAG -c static_branch.c -o static_branch_flag.o
clang-19 $flags -DVARIANT_KEYS -DPOINTS=1 -c static_branch.c -o static_branch_keys1.o
clang-19 $flags -c static_branch.c -o static_branch_none.o
echo built $(ls *.o)

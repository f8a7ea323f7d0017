#!/bin/sh
# Rebuild the BPF objects of the micro-suite (Debian packages clang-19 and libbpf-dev).
# Each NAME.c is the one source of a benchmark: built here for BPF (with bpf_suite.h), and at bench
# time by bench/test_suite.py for the host (with native_suite.h).
set -eu
cd "$(dirname "$0")"
flags="-O2 -g -target bpf -mcpu=v3 -I/usr/include/x86_64-linux-gnu"
for name in simple memory_a_plus_b log2_int prime strcmp_halves memcpy switch; do
    clang-19 $flags -include bpf_suite.h -c $name.c -o $name.bpf.o
done
echo built $(ls *.bpf.o)

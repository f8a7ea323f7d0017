#!/bin/sh
# Rebuild the BPF objects of the micro-suite (Debian packages clang-19 and libbpf-dev).
# The native twins (NAME.c) are compiled at bench time by bench/test_suite.py.
set -eu
cd "$(dirname "$0")"
flags="-O2 -g -target bpf -mcpu=v3 -I/usr/include/x86_64-linux-gnu"
for name in simple memory_a_plus_b log2_int prime strcmp_halves memcpy switch; do
    clang-19 $flags -c $name.bpf.c -o $name.bpf.o
done
echo built $(ls *.bpf.o)

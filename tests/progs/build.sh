#!/bin/sh
# Rebuild the BPF test objects in this directory, and their golden disassembly.
#
# For every X.c: X.o (clang-19) and X.objdump.txt (the output of llvm-objdump-19 -d X.o). The
# golden listing is LLVM's own; tests/test_progs.py compares bpfjit's disassembler against it and
# checks that the committed objects match a fresh build.
#
# Needs the Debian packages clang-19, llvm-19 (llvm-objdump-19) and libbpf-dev:
#   apt-get update && apt-get install clang-19 llvm-19 libbpf-dev
set -eu
cd "$(dirname "$0")"
for src in *.c; do
    obj="${src%.c}.o"
    clang-19 -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$src" -o "$obj"
    llvm-objdump-19 -d "$obj" > "${src%.c}.objdump.txt"
    echo "built $obj"
done

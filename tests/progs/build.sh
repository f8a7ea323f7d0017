#!/bin/sh
# Rebuild the BPF test objects in this directory, and their golden disassembly.
#
# For every X.c: X.o (clang-19) and X.objdump.txt (the output of llvm-objdump-19 -d X.o). The
# golden listing is LLVM's own; tests/test_progs.py compares bpfjit's disassembler against it and
# checks that the committed objects match a fresh build.
#
# clang22/X.c: the programs that need clang-22's cpu v4 code (jump tables for switches, gotox),
# built the same way with clang-22 -mcpu=v4 -mllvm -bpf-min-jump-table-entries=4 and listed by
# llvm-objdump-22 (tests/test_jump_tables.py checks them).
#
# Needs the Debian packages clang-19, llvm-19 (llvm-objdump-19), clang-22, llvm-22 and libbpf-dev:
#   apt-get update && apt-get install clang-19 llvm-19 clang-22 llvm-22 libbpf-dev
set -eu
cd "$(dirname "$0")"
for src in *.c; do
    obj="${src%.c}.o"
    clang-19 -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$src" -o "$obj"
    llvm-objdump-19 -d "$obj" > "${src%.c}.objdump.txt"
    echo "built $obj"
done
cd clang22
for src in *.c; do
    obj="${src%.c}.o"
    clang-22 -O2 -g -target bpf -mcpu=v4 -mllvm -bpf-min-jump-table-entries=4 -I/usr/include/x86_64-linux-gnu \
        -c "$src" -o "$obj"
    llvm-objdump-22 -d "$obj" > "${src%.c}.objdump.txt"
    echo "built clang22/$obj"
done

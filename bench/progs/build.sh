#!/bin/sh
# Rebuild the benchmark objects (Debian packages clang-19 and libbpf-dev; apt-get update first).
set -eu
cd "$(dirname "$0")"
flags="-O2 -g -target bpf -I/usr/include/x86_64-linux-gnu"
clang-19 $flags -DVARIANT_KEYS -c static_branch.c -o static_branch_keys.o
clang-19 $flags -DVARIANT_FLAG -c static_branch.c -o static_branch_flag.o
clang-19 $flags -DVARIANT_KEYS -DPOINTS=1 -c static_branch.c -o static_branch_keys1.o
clang-19 $flags -c static_branch.c -o static_branch_none.o
echo built static_branch_keys.o static_branch_flag.o static_branch_keys1.o static_branch_none.o

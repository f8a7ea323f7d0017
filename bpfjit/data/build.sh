#!/bin/sh
# Rebuild the bundled default program (firewall.c -> firewall.o) that `bpfjit run` runs.
#
# The object is committed (and shipped in the wheel) so running bpfjit never needs a compiler;
# tests/test_cli_objects.py checks that it is what the committed source compiles to.
# Needs the Debian packages clang-19 and libbpf-dev:
#   apt-get update && apt-get install clang-19 libbpf-dev
set -eu
cd "$(dirname "$0")"
for src in *.c; do
    obj="${src%.c}.o"
    clang-19 -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$src" -o "$obj"
    echo "built $obj"
done

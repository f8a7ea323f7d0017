#!/bin/sh
# Rebuild the example objects the README's examples load, from their sources here (the
# committed objects are checked against a fresh build by tests/test_readme_examples.py when
# clang-19 is installed). Needs the Debian packages clang-19 and libbpf-dev:
#   apt-get update && apt-get install clang-19 libbpf-dev
set -eu
cd "$(dirname "$0")"
for src in *.c; do
    clang-19 -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$src" -o "${src%.c}.o"
    echo "built ${src%.c}.o"
done

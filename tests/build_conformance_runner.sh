#!/bin/sh
# Build bpf_conformance's official runner from a source tree and print the binary's path, for
#   BPF_CONFORMANCE_RUNNER=$(tests/build_conformance_runner.sh SRC_DIR) python -m pytest tests/test_conformance_runner.py
#
# SRC_DIR: a checkout of https://github.com/Alan-Jowett/bpf_conformance with its ELFIO submodule
# (external/elfio; `git submodule update --init`). The runner needs a C++20 compiler, cmake and
# Boost's program_options and filesystem (Debian: libboost-program-options-dev
# libboost-filesystem-dev). Only the runner is built, in SRC_DIR/build; the build log goes to stderr
# so that stdout is the path alone.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 SRC_DIR   (a bpf_conformance source tree)" >&2
    exit 2
fi
src=$(cd "$1" && pwd)
if [ ! -f "$src/tools/runner.cc" ]; then
    echo "$0: $src is not a bpf_conformance source tree (no tools/runner.cc)" >&2
    exit 1
fi
if [ ! -f "$src/external/elfio/CMakeLists.txt" ]; then
    echo "$0: $src/external/elfio is empty: run 'git submodule update --init' in $src" >&2
    exit 1
fi

build="$src/build"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$build" --target bpf_conformance_runner --parallel 2 >&2
echo "$build/bin/bpf_conformance_runner"

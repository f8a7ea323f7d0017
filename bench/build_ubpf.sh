#!/bin/sh
# Build uBPF's VM library (the interpreter and the x86-64 JIT, no tests, no submodules) from a
# uBPF source tree, for bench/ubpf.py; print the build directory to set UBPF_DIR to.
#
#   bench/build_ubpf.sh UBPF_SOURCE [BUILD_DIR]     (BUILD_DIR defaults to UBPF_SOURCE/build)
#
# uBPF's own CMake settings apply (a Release build: -O2 for the library).
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 UBPF_SOURCE [BUILD_DIR]" >&2
    exit 2
fi
source_dir=$1
build_dir=${2:-$source_dir/build}
if [ ! -f "$source_dir/vm/inc/ubpf.h" ]; then
    echo "$0: $source_dir is not a uBPF source tree (no vm/inc/ubpf.h)" >&2
    exit 1
fi
cmake -S "$source_dir" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DUBPF_SKIP_EXTERNAL=ON \
    -DUBPF_ENABLE_TESTS=OFF -DUBPF_INSTALL_GIT_HOOKS=OFF >&2
cmake --build "$build_dir" --target ubpf -j "$(nproc 2>/dev/null || echo 2)" >&2
cd "$build_dir" && pwd

"""The LLVM JIT: lowers a checked BPF program to LLVM IR and compiles it to x86-64."""

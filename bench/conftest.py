"""Benchmarks run with `pytest bench/ --benchmark-only`; pytest-benchmark records the CPU (py-cpuinfo)."""

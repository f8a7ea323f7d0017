"""The benchmark suite, installed as ``bpfjit.bench`` so that ``bpfjit bench`` runs anywhere.

progs/ holds each benchmark's one C source with its committed BPF objects; cases.py says what
every benchmark computes (its input and the expected result, in plain Python); native.py builds
the same sources for the host; measure.py times each engine; report.py and plot.py show the
results. The pytest-benchmark files (test_*.py) run the same cases under pytest-benchmark.
"""

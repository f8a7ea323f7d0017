"""test_run's duration is the program's: the JIT's native repeat loop times itself, as the
kernel's BPF_PROG_TEST_RUN does, so Python's call around it is not counted."""
from __future__ import annotations

import time

from bpfjit.program import Program


def test_the_jit_reports_the_native_loops_time_not_the_python_call():
    program = Program.from_asm("mov %r0, 2\nexit", prog_type="xdp")
    program.test_run(bytes(14))  # compile and warm up
    started = time.perf_counter_ns()
    result = program.test_run(bytes(14), repeat=1)
    wall = time.perf_counter_ns() - started
    # One run of two instructions inside a call that builds a context, a packet and a run record:
    # the reported time is part of the call's, never all of it.
    assert 0 < result.duration_ns < wall


def test_a_repeated_run_reports_the_mean_over_its_runs():
    program = Program.from_asm("mov %r0, 2\nexit", prog_type="xdp")
    started = time.perf_counter_ns()
    result = program.test_run(bytes(14), repeat=10_000)
    wall = time.perf_counter_ns() - started
    assert result.retval == 2
    assert 0 < result.duration_ns * 10_000 < wall

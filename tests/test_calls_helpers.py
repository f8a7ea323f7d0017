"""Helpers that run BPF code: bpf_tail_call, bpf_loop, bpf_for_each_map_elem (tests/progs/calls.c)."""
from __future__ import annotations

import pathlib

from bpfjit.object import load

CALLS = pathlib.Path(__file__).resolve().parent / "progs" / "calls.o"


def test_tail_call_replaces_the_program(engine):
    obj = load(CALLS)
    # Slot 3 is empty (the call falls through), slot 1 holds leaf, which returns 40 + its runs.
    assert obj.programs["entry"].test_run(bytes(64), engine=engine).retval == 41
    assert obj.programs["entry"].test_run(bytes(64), engine=engine).retval == 42
    assert obj.bss.tail_hops == 2


def test_tail_call_limit_is_33(engine):
    obj = load(CALLS)
    # chain tail-calls itself: the first run plus 33 tail calls, then the 34th call falls through.
    assert obj.programs["chain"].test_run(bytes(64), engine=engine).retval == 34
    assert obj.bss.chain_runs == 34


def test_tail_call_limit_is_per_invocation(engine):
    obj = load(CALLS)
    result = obj.programs["chain"].test_run(bytes(64), repeat=3, engine=engine)
    assert result.retval == 3 * 34 and obj.bss.chain_runs == 3 * 34


def test_loop_and_for_each_callbacks(engine):
    obj = load(CALLS)
    obj.maps["values"][2] = 5
    # bpf_loop stops when index 9 returns 1: 10 iterations, sum 0+..+9 = 45.
    # for_each visits the 4 array elements: sum of key*100 + value = 0 + 100 + 205 + 300, and
    # increments every value.
    assert obj.programs["callbacks"].test_run(bytes(64), engine=engine).retval == 10 * 1000 + 4
    assert obj.globals["loop_sum"] == 45
    assert obj.globals["visited_sum"] == 605
    assert obj.maps["values"].items() == [(0, 1), (1, 1), (2, 6), (3, 1)]

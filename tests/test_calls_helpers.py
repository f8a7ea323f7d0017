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


def test_probe_read_is_bounded_to_the_programs_memory(engine):
    from bpfjit.program import Program
    from bpfjit.runtime.stdhelpers import standard_helpers

    # Copy 8 bytes from one stack slot to another (allowed), then from address 0x1000 (not the
    # program's memory: -EFAULT, and the destination is zeroed).
    prog = Program.from_asm("""
        lddw %r1, 0x1122334455667788
        stxdw [%r10-8], %r1
        mov %r1, %r10
        add %r1, -16
        mov %r2, 8
        mov %r3, %r10
        add %r3, -8
        call 113
        mov %r6, %r0
        ldxdw %r7, [%r10-16]
        mov %r1, %r10
        add %r1, -8
        mov %r2, 8
        mov %r3, 0x1000
        call 113
        mov %r8, %r0
        ldxdw %r9, [%r10-8]
        mov %r0, %r7
        xor %r0, %r9
        jne %r6, 0, fail
        jne %r8, -14, fail
        exit
        fail:
        mov %r0, 1
        exit
    """, helpers=standard_helpers(print))
    # r7 = the copied value, r9 = the zeroed destination
    assert prog.run(engine=engine) == 0x1122334455667788

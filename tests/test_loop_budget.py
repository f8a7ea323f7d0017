"""The loop budget of raw programs (issue 11): the verifier proves a raw program's widened loops
safe but not finite, so every engine counts an invocation's loop trips (Facts.loop_edges) and
ends it with LOOP_BUDGET past Facts.trip_limit of them, at the same instruction on every engine.

The limit is made small here (RAW_LOOP_TRIPS patched before the program is made) so that the
reference interpreter reaches it too, and the boundary is exact: limit trips run, one more fails.
"""
from __future__ import annotations

import random

import pytest

from hostile_programs import Maps, build, make_case
from test_length_bounds import POINTER_WALK

from bpfjit import asm, isa, program as program_module
from bpfjit.errors import BPFError, BPFRuntimeError
from bpfjit.program import Program
from bpfjit.runtime.status import RAW_LOOP_TRIPS
from bpfjit.verifier.cfg import loop_edges

LIMIT = 59


def small_limit(text: str, monkeypatch) -> Program:
    monkeypatch.setattr(program_module, "RAW_LOOP_TRIPS", LIMIT)
    return Program.from_asm(text)


def countdown(trips: int) -> str:
    """A bottom-tested loop (the layout clang gives a for loop) that jumps back to its head `trips`
    times: r0 = 2 + 3 + ... + (trips + 2); the latch is slot 4."""
    return f"mov %r0, 0\nmov %r1, {trips + 2}\nadd %r0, %r1\nsub %r1, 1\njgt %r1, 1, -3\nexit"


def test_a_loop_runs_its_limit_of_trips_and_fails_one_past_it(engine, monkeypatch):
    assert small_limit(countdown(LIMIT), monkeypatch).run(engine=engine) == sum(range(2, LIMIT + 3))
    with pytest.raises(BPFRuntimeError) as failure:
        small_limit(countdown(LIMIT + 1), monkeypatch).run(engine=engine)
    assert failure.value.index == 4
    assert f"loop budget of {LIMIT} trips exhausted" in str(failure.value)


def test_the_count_starts_again_with_every_run(engine, monkeypatch):
    prog = small_limit(countdown(LIMIT), monkeypatch)
    assert prog.test_run(b"", engine=engine, repeat=3).retval == sum(range(2, LIMIT + 3))


def test_a_loop_entered_at_its_test_counts_on_the_fall_through_into_it(engine, monkeypatch):
    """``ja test; body: ...; test: if ... goto body``: the depth-first back edge is the body's
    fall-through into the test, which is no jump, so the backward jump is counted instead."""
    text = "mov %r0, 0\nmov %r1, {n}\nja +2\nadd %r0, %r1\nsub %r1, 1\njgt %r1, 0, -3\nexit"
    assert small_limit(text.format(n=LIMIT), monkeypatch).run(engine=engine) == sum(range(1, LIMIT + 1))
    with pytest.raises(BPFRuntimeError) as failure:
        small_limit(text.format(n=LIMIT + 1), monkeypatch).run(engine=engine)
    assert failure.value.index == 5


def test_trips_of_a_callee_and_of_its_caller_count_together(engine, monkeypatch):
    """An outer loop calls a function six times, whose loop jumps back inner - 1 times per call:
    the invocation takes 6 * (inner - 1) + 5 trips, counted across both frames."""
    text = """
        mov %r6, 6
        mov %r7, 0
        call local inner
        add %r7, %r0
        sub %r6, 1
        jgt %r6, 0, -4
        mov %r0, %r7
        exit
        inner:
        mov %r0, 0
        mov %r1, {inner}
        add %r0, 1
        sub %r1, 1
        jgt %r1, 0, -3
        exit
    """
    inner = (LIMIT + 1) // 6  # 59 trips in all: the limit
    assert small_limit(text.format(inner=inner), monkeypatch).run(engine=engine) == 6 * inner
    with pytest.raises(BPFRuntimeError) as failure:
        small_limit(text.format(inner=inner + 1), monkeypatch).run(engine=engine)
    assert failure.value.index == 12  # the callee's latch, in its sixth call


@pytest.mark.parametrize("engine_name", ["jit", "interp"])
@pytest.mark.parametrize("counter", ["add32 %r0, 1", "add %r0, 1"])
def test_a_loop_proven_safe_that_would_run_for_ever_ends_with_the_default_budget(engine_name, counter):
    """2**32 (or 2**64) trips of a counter that goes round to 0: accepted, since every trip is
    safe, and stopped after RAW_LOOP_TRIPS trips instead of hanging."""
    prog = Program.from_asm(f"mov %r0, 0\n{counter}\njne %r0, 0, -2\nexit")
    assert prog.facts.verified
    with pytest.raises(BPFRuntimeError, match=f"loop budget of {RAW_LOOP_TRIPS} trips"):
        prog.run(engine=engine_name)


def test_typed_programs_count_no_trips():
    """Their loops were walked to their end (the kernel's rule): nothing to bound at run time."""
    prog = Program.from_asm("mov %r0, 0\nmov %r1, 3\nsub %r1, 1\njgt %r1, 0, -2\nexit", prog_type="xdp")
    assert prog.facts.trip_limit is None and not prog.facts.loop_edges


def _acyclic_without(successors, edges) -> bool:
    """Whether the graph has no cycle once `edges` are removed (Kahn's algorithm)."""
    graph = {node: [t for t in targets if (node, t) not in edges] for node, targets in successors.items()}
    incoming = {node: 0 for node in graph}
    for targets in graph.values():
        for target in targets:
            incoming[target] = incoming.get(target, 0) + 1
    ready = [node for node, count in incoming.items() if count == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for target in graph.get(node, ()):
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return seen == len(incoming)


def _counts_at_jumps(insns, edges) -> bool:
    """Every counted edge leaves a jump (a branch or gotox): the engines count at jumps only."""
    return all(insns[source].is_jump and insns[source].op not in (isa.CALL, isa.EXIT) for source, _ in edges)


def test_every_cycle_of_random_programs_holds_a_counted_edge():
    """The budget bounds every loop only if no cycle avoids loop_edges: checked on the hostile
    fuzzer's programs (random control flow, mutated jumps) whose graph could be built."""
    checked = 0
    for seed in random.Random(11).sample(range(1 << 30), 600):
        case = make_case(seed)
        try:
            prog = build(case, Maps(), verify=False)
        except BPFError:
            continue
        edges = loop_edges(prog.original_insns, prog.facts)
        assert _acyclic_without(prog.facts.successors, edges), case.seed
        assert _counts_at_jumps(prog.original_insns, edges), case.seed
        checked += 1
    assert checked > 300


def test_the_loops_of_clang_programs_count_at_their_latch_only():
    """One counted edge per loop for a bottom-tested loop: the JIT folds it into the latch's test."""
    prog = Program.from_bytes(asm.assemble(countdown(3)))
    assert prog.facts.loop_edges == {(4, 2)}


# for (i = 0; i < len / 2; i++) sum += mem[i] (POINTER_WALK: for (p = mem; p < mem + len; p++))
HALF_SUM = """
    mov %r0, 0
    mov %r3, %r2
    rsh %r3, 1
    mov %r4, 0
    jge %r4, %r3, out
loop:
    mov %r5, %r1
    add %r5, %r4
    ldxb %r5, [%r5+0]
    add %r0, %r5
    add %r4, 1
    jlt %r4, %r3, loop
out:
    exit
"""


@pytest.mark.parametrize("text, expected, head", [
    (POINTER_WALK, sum, 5), (HALF_SUM, lambda data: sum(data[:len(data) // 2]), 5),
], ids=["pointer_walk", "half_sum"])
def test_a_loop_ended_by_a_counter_bounded_by_the_length_counts_no_trips(text, expected, head, engine, monkeypatch):
    """Its counter rises on every trip and is bounded by the length each time it comes back
    (verifier/termination.py LoopProof.length_bounded): at most a few times the length's trips,
    so it runs past the (small) limit, on every engine."""
    prog = small_limit(text, monkeypatch)
    assert prog.verification.bounded_loops == {head} and not prog.facts.loop_edges
    data = bytes(range(256)) * 2
    assert prog.run(data, engine=engine) == expected(data)


@pytest.mark.parametrize("text", [
    # the bound comes from memory, not from the length
    HALF_SUM.replace("mov %r3, %r2\n    rsh %r3, 1\n", "ldxdw %r3, [%r1+0]\n"),
    # the counter rises, but the loop ends on a byte of memory
    "mov %r0, 0\nmov %r4, 0\nadd %r4, 1\nldxb %r5, [%r1+0]\njne %r5, 0, -3\nexit",
    # two loops, one in the other: each bounded by the length, together by its square
    """
    mov %r0, 0
    mov %r6, 0
    jge %r6, %r2, out
outer:
    mov %r7, 0
inner:
    add %r0, 1
    add %r7, 1
    jlt %r7, %r2, inner
    add %r6, 1
    jlt %r6, %r2, outer
out:
    exit
    """,
], ids=["bound_from_memory", "ends_on_memory", "nested"])
def test_other_loops_still_count_their_trips(text, engine, monkeypatch):
    prog = small_limit(text, monkeypatch)
    assert not prog.verification.bounded_loops and prog.facts.loop_edges
    with pytest.raises(BPFRuntimeError, match=f"loop budget of {LIMIT} trips exhausted"):
        prog.run(bytes([255]) * 64, engine=engine)

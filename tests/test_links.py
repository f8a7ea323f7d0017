"""Registers that move in step (verifier/links.py): a raw program's pointer walking its memory
beside the counter that bounds the loop, the shape clang -O2 gives ``for (i = 0; i < len / 4;
i++) x = p[i]``, accesses the memory without run-time checks, and nothing that only looks like
it does.

Two layers, each against an oracle the code under test does not produce:
* programs in that shape: which accesses stay checked, and the results on every engine at many
  lengths, against sums computed here; the variants that go one step too far (a test that lets
  one more trip through, a pointer that moves faster than the counter, or starts further on, or
  sometimes moves twice) stay checked and fail cleanly;
* generated programs of that shape (tests/loop_campaign.py): wherever the reference interpreter
  faults, the access was left checked; every engine gives its result.
"""
from __future__ import annotations

import os
import random

import pytest
from loop_campaign import inputs, outcome, run_campaign

from bpfjit.errors import BPFRuntimeError
from bpfjit.program import Program

MASK64 = (1 << 64) - 1

# for (i = 0; i < len / 4; i++) sum += p[i], as clang rotates it: p moves 4 as i moves 1
WORDS = """
    mov %r0, 0
    mov %r3, %r2
    rsh %r3, 2
    jeq %r3, 0, out
    mov %r4, 0
loop:
    ldxw %r5, [%r1+0]
    add %r0, %r5
    add %r1, 4
    add %r4, 1
    jlt %r4, %r3, loop
out:
    exit
"""

# the same over u64 words through a copy of the pointer, counting i from 1 to len / 8 inclusive
WORDS_FROM_ONE = """
    mov %r0, 0
    mov %r3, %r2
    div %r3, 8
    jeq %r3, 0, out
    mov %r4, 1
    mov %r6, %r1
loop:
    add %r4, 1
    mov %r7, %r6
    add %r6, 8
    ldxdw %r5, [%r7+0]
    xor %r0, %r5
    jle %r4, %r3, loop
out:
    exit
"""


def _words(data: bytes, size: int) -> list[int]:
    return [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data) // size * size, size)]


def _checked(text: str) -> list[int]:
    return sorted(Program.from_asm(text).facts.checked_accesses)


@pytest.mark.parametrize("text, expected", [
    (WORDS, lambda d: sum(_words(d, 4)) & MASK64),
    (WORDS_FROM_ONE, lambda d: _xor(_words(d, 8))),
], ids=["words", "words_from_one"])
def test_a_pointer_in_step_with_a_bounded_counter_runs_unchecked_and_right(text, expected, engine):
    assert _checked(text) == []
    program = Program.from_asm(text)
    for data in inputs(random.Random(7), [*range(0, 41), 255, 256, 1023]):
        assert program.run(data, engine=engine) == expected(data), len(data)


def _xor(words: list[int]) -> int:
    result = 0
    for word in words:
        result ^= word
    return result


@pytest.mark.parametrize("text, load, bad_size", [
    # i <= len / 4: one word past the end
    (WORDS.replace("jlt %r4, %r3, loop", "jle %r4, %r3, loop"), 5, 8),
    # the pointer moves two words a trip
    (WORDS.replace("add %r1, 4", "add %r1, 8"), 5, 8),
    # the pointer starts a word further on
    (WORDS.replace("mov %r4, 0\n", "mov %r4, 0\n    add %r1, 4\n"), 6, 8),
    # the pointer moves once more on some trips: no longer in step
    (WORDS.replace("add %r0, %r5\n", "add %r0, %r5\n    jne %r5, 0, on\n    add %r1, 4\non:\n"), 5, 12),
    # the counter moves in 32 bits: its link is gone, and so is the proof
    (WORDS.replace("add %r4, 1", "add32 %r4, 1").replace("jlt %r4, %r3, loop", "jle %r4, %r3, loop"), 5, 8),
    # i from 1 to len / 8 and one more
    (WORDS_FROM_ONE.replace("mov %r4, 1", "mov %r4, 0"), 9, 16),
], ids=["le", "faster_pointer", "later_start", "sometimes_twice", "counter_32bit", "one_more"])
def test_one_step_too_far_stays_checked_and_fails_cleanly(text, load, bad_size, engine):
    assert load in _checked(text)
    program = Program.from_asm(text)
    with pytest.raises(BPFRuntimeError, match=f"insn {load}: invalid read"):
        program.run(bytes(bad_size), engine=engine)


# the pointer moves on some trips only (a byte when it reads a 1), the counter on every trip
POINTER_SOMETIMES = """
    mov %r0, 0
    jlt %r2, 1, out
    mov %r3, %r2
    mov %r4, 0
    mov %r6, %r1
    jge %r4, %r3, out
loop:
    ldxb %r5, [%r6+0]
    add %r0, %r5
    jne %r5, 1, on
    add %r6, 1
on:
    add %r4, 1
    jlt %r4, %r3, loop
out:
    exit
"""

# the counter moves on some trips only: the pointer runs ahead of it, past the end
COUNTER_SOMETIMES = WORDS.replace("add %r4, 1\n", "jeq %r5, 0, skip\n    add %r4, 1\nskip:\n")


@pytest.mark.parametrize("text, load", [(POINTER_SOMETIMES, 6), (COUNTER_SOMETIMES, 5)],
                         ids=["pointer_sometimes", "counter_sometimes"])
def test_registers_in_step_on_some_trips_only_are_not_linked(text, load, engine):
    """A widened loop head keeps only the links both visits have alike: a register one path left
    as it was (the same register in both states) loses its link when the others moved. Before,
    it kept it, and the first program's head was widened again and again, for ever."""
    program = Program.from_asm(text)
    assert load in program.facts.checked_accesses
    assert program.verification.stats.insns_processed < 500
    rng = random.Random(3)
    for size in [*range(0, 24), 100]:
        data = bytes(rng.choice([0, 1, 1, 2]) for _ in range(size))
        assert outcome(program, data, engine) == outcome(program, data, "reference"), size


def test_a_spilled_pointer_keeps_no_link_and_its_access_stays_checked():
    """A spill drops the link (links are kept in registers only): sound, and still right."""
    text = WORDS.replace("ldxw %r5, [%r1+0]", "stxdw [%r10-8], %r1\n    ldxdw %r1, [%r10-8]\n    ldxw %r5, [%r1+0]")
    assert _checked(text) == [7]
    assert Program.from_asm(text).run(bytes(range(16)), engine="jit") == sum(_words(bytes(range(16)), 4))


# --- generated programs -------------------------------------------------------------------------

_LOADS = {1: "ldxb", 2: "ldxh", 4: "ldxw", 8: "ldxdw"}


def _in_step_program(rng: random.Random) -> str:
    """A loop whose pointer and counter move by constants, with random sizes, starts, steps, bounds
    and tests: most stay inside the memory only by the counter's bound, some go one too far, and
    some break the step on some trips or lose the link (a 32-bit counter, a spill)."""
    size = rng.choice([1, 2, 4, 8])
    shift = size.bit_length() - 1
    lines = ["mov %r0, 0"]
    guard = rng.choice([0, 0, size, 2 * size])
    if guard:
        lines.append(f"jlt %r2, {guard}, out")
    lines += ["mov %r3, %r2", rng.choice([f"rsh %r3, {shift}"] * 3 + [f"div %r3, {size}", f"rsh %r3, {shift + 1}",
                                                                        f"rsh %r3, {max(shift - 1, 0)}"])]
    counter_step = rng.choice([1, 1, 1, 2])
    pointer_step = size * counter_step * rng.choice([1, 1, 1, 1, 2]) + rng.choice([0] * 8 + [1, -1])
    lines += [f"mov %r4, {rng.choice([0, 0, 1])}", "mov %r6, %r1"]
    start = rng.choice([0, 0, 0, size, 1])
    if start:
        lines.append(f"add %r6, {start}")
    lines += ["jge %r4, %r3, out", "loop:"]
    through = "%r6"
    if rng.random() < 0.2:
        lines.append("mov %r7, %r6")
        through = "%r7"
    lines += [f"{_LOADS[size]} %r5, [{through}{rng.choice([0, 0, 0, 0, size, -size]):+d}]", "add %r0, %r5"]
    if rng.random() < 0.15:  # an extra move on some trips
        lines += ["jne %r5, 1, on", f"add %r6, {size}", "on:"]
    if rng.random() < 0.1:
        lines += ["stxdw [%r10-8], %r6", "ldxdw %r6, [%r10-8]"]
    moves = [f"add %r6, {pointer_step}", f"add{'32' if rng.random() < 0.1 else ''} %r4, {counter_step}"]
    rng.shuffle(moves)
    lines += moves + [rng.choice(["jlt %r4, %r3, loop"] * 4 + ["jle %r4, %r3, loop", "jgt %r3, %r4, loop",
                                                                "jne %r4, %r3, loop", "jslt %r4, %r3, loop"])]
    return "\n".join(lines + ["out:", "exit"])


def _campaign(seed: int, count: int, jit_every: int) -> None:
    accepted, unchecked, _ = run_campaign(_in_step_program, seed, count, jit_every)
    assert accepted > count // 2 and unchecked > count // 8, (accepted, unchecked)  # the campaign judged proofs


def test_generated_loops_in_step_are_checked_wherever_they_can_fault():
    _campaign(int(os.environ.get("BPFJIT_LINKS_FUZZ_SEED", "21")), 150, jit_every=5)


@pytest.mark.slow
def test_generated_loops_in_step_campaign():
    _campaign(int(os.environ.get("BPFJIT_LINKS_FUZZ_SEED", "22")), 5000, jit_every=3)

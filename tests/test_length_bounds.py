"""Length-relative bounds (verifier/length.py): a raw program's loops bounded by its length, or
by a value computed from it, access its memory without run-time checks, and nothing else does.

Three layers, each against an oracle the code under test does not produce:
* every rule, on concrete values: for lengths and values the rule's inputs allow, the
  instruction's real result (computed here, by the ISA's definition) keeps the bound it gives;
* programs written the way clang writes such loops: which accesses stay checked, and the
  results on every engine at many lengths, the off-by-one variants included;
* generated loop programs (tests/loop_campaign.py): wherever the reference interpreter (which
  checks every access) faults, the verifier must have left that access checked; every engine
  gives its result.
"""
from __future__ import annotations

import os
import math
import random

import pytest

from bpfjit import isa
from loop_campaign import inputs, run_campaign

from bpfjit.errors import BPFRuntimeError
from bpfjit.program import Program
from bpfjit.verifier import length
from bpfjit.verifier.length import LengthBound
from bpfjit.verifier.scalar import Scalar


MASK64, MASK32 = (1 << 64) - 1, (1 << 32) - 1
LENGTHS = range(0, 41)


def _seeds(count: int, default: int) -> list:
    """count seeds of a rule check: the first `default` in the default run, the rest with -m slow."""
    return [seed if seed < default else pytest.param(seed, marks=pytest.mark.slow) for seed in range(count)]


# --- the rules, on concrete values -----------------------------------------------------------------

def _concrete(op: int, a: int, b: int, is64: bool) -> int:
    """The ISA's result of dst op= src for the unsigned operands a, b (src already the
    instruction's: sign-extended immediate for ALU64, its low 32 bits for ALU)."""
    mask = MASK64 if is64 else MASK32
    a, b = a & mask, b & mask
    bits = 64 if is64 else 32
    result = {
        isa.ADD: lambda: a + b, isa.SUB: lambda: a - b, isa.MUL: lambda: a * b,
        isa.DIV: lambda: a // b if b else 0, isa.MOD: lambda: a % b if b else a, isa.AND: lambda: a & b,
        isa.LSH: lambda: a << (b % bits), isa.RSH: lambda: a >> (b % bits),
    }[op]()
    return result & mask


def _values(bound: LengthBound | None, umin: int, umax: int, size: int, count: int) -> list[int]:
    """Values a register with these bounds may hold at length `size`: the lowest and the highest
    `count` of them (all when there are no more)."""
    top = umax if bound is None else min(umax, bound.num * size // bound.den + bound.add)
    if top < umin:
        return []
    if top - umin < 2 * count:
        return list(range(umin, top + 1))
    return [*range(umin, umin + count), *range(top - count + 1, top + 1)]


def _most(bound: LengthBound, size: int) -> int:
    """The most a value with this bound may be at length `size` (worked out here, not by the code)."""
    return bound.num * size // bound.den + bound.add


def _random_bound(rng: random.Random) -> LengthBound | None:
    if rng.random() < 0.2:
        return None
    num, den = rng.choice([1, 1, 1, 2, 3]), rng.choice([1, 1, 2, 4, 8])
    common = math.gcd(num, den)
    return LengthBound(num // common, den // common, rng.randint(-6, 6))


def _random_range(rng: random.Random) -> tuple[int, int]:
    low = rng.choice([0, 0, 0, 1, 2, 3, 5])
    return low, rng.choice([low, low + 3, 40, 100, MASK32, MASK64])


@pytest.mark.parametrize("seed", _seeds(40, 6))
def test_each_alu_rule_keeps_the_bound_it_gives(seed):
    rng = random.Random(seed)
    ops = [isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.MOD, isa.AND, isa.LSH, isa.RSH]
    checked = 0
    for _ in range(300):
        op, is64, imm = rng.choice(ops), rng.random() < 0.7, rng.random() < 0.5
        dst_bound, (dst_lo, dst_hi) = _random_bound(rng), _random_range(rng)
        if imm:
            value = rng.choice([0, 1, 2, 3, 4, 7, 8, -1, -2, -3, -5, 0x7FFFFFFF, -0x80000000])
            src_bound, src_value = None, (value & MASK64 if is64 else value & MASK32)
            src_lo = src_hi = src_value
        else:
            src_bound, (src_lo, src_hi) = _random_bound(rng), _random_range(rng)
            value = 0
        dst_scalar, src_scalar = Scalar.from_range(umin=dst_lo, umax=dst_hi), Scalar.from_range(umin=src_lo,
                                                                                               umax=src_hi)
        result = length.alu(op, is64, False, (dst_bound, dst_scalar), (src_bound, src_scalar), imm, value)
        if result is None:
            continue
        for size in LENGTHS:
            for a in _values(dst_bound, dst_lo, dst_hi, size, 25):
                for b in _values(src_bound, src_lo, src_hi, size, 8):
                    got = _concrete(op, a, b, is64)
                    assert got <= _most(result, size), \
                        (op, is64, imm, dst_bound, (dst_lo, dst_hi), src_bound, (src_lo, src_hi), a, b, size, result)
                    checked += 1
    assert checked > 1000  # the rules gave bounds often enough to be judged


@pytest.mark.parametrize("seed", _seeds(20, 3))
def test_a_comparison_bounds_the_lower_operand_by_the_higher_ones_bound(seed):
    rng = random.Random(seed)
    for _ in range(300):
        strict, signed, jmp32 = rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.3
        high_bound, (high_lo, high_hi) = _random_bound(rng), _random_range(rng)
        low_lo, low_hi = _random_range(rng)
        low = Scalar.from_range(umin=low_lo, umax=low_hi)
        result = length.compared((None, low), (high_bound, Scalar.from_range(umin=high_lo, umax=high_hi)), strict,
                                 signed, jmp32)
        if result is None:
            continue
        for size in LENGTHS:
            for b in _values(high_bound, high_lo, high_hi, size, 10):
                for a in _values(None, low_lo, low_hi, size, 30):
                    if not _ordered(a, b, strict, signed, jmp32):
                        continue  # not on this edge
                    assert a <= _most(result, size), (a, b, size, strict, signed, jmp32, result)


def _ordered(a: int, b: int, strict: bool, signed: bool, jmp32: bool) -> bool:
    bits = 32 if jmp32 else 64
    a, b = a & ((1 << bits) - 1), b & ((1 << bits) - 1)
    if signed:
        a, b = (a - (1 << bits) if a >> (bits - 1) else a), (b - (1 << bits) if b >> (bits - 1) else b)
    return a < b if strict else a <= b


@pytest.mark.parametrize("seed", _seeds(20, 4))
def test_a_joined_bound_holds_both_and_implies_is_never_wrong(seed):
    rng = random.Random(seed)
    for _ in range(300):
        bounds = [_random_bound(rng) for _ in range(2)]
        ranges = [_random_range(rng) for _ in range(2)]
        scalars = [Scalar.from_range(umin=lo, umax=hi) for lo, hi in ranges]
        least = rng.choice([0, 0, 1, 2, 4, 8])
        joined = length.join((bounds[0], scalars[0]), (bounds[1], scalars[1]), least, may_grow=True)
        if joined is not None:
            for size in range(least, 41):
                for bound, (lo, hi) in zip(bounds, ranges):
                    for v in _values(bound, lo, hi, size, 3)[-3:]:
                        assert v <= _most(joined, size), (bounds, ranges, least, joined, v, size)
        if length.implies(bounds[0], bounds[1], scalars[1]) and bounds[0] is not None:
            for size in LENGTHS:
                for v in _values(bounds[1], *ranges[1], size, 3)[-3:]:
                    assert v <= _most(bounds[0], size), (bounds, ranges, v, size)


def test_inside_needs_the_whole_access_below_the_length_at_every_length_from_the_proven_one():
    half = LengthBound(1, 2, 0)
    zero = Scalar.const(0)
    # offset <= L/2: one byte fits once two bytes are proven (L/2 + 1 <= L for L >= 2), not before
    assert length.inside(half, zero, 0, 1, 2)
    assert not length.inside(half, zero, 0, 1, 1)
    assert not length.inside(half, zero, 0, 2, 2)  # L = 2: bytes 1 and 2 of 2
    assert length.inside(half, zero, 0, 2, 4)
    whole = LengthBound(1, 1, -1)
    assert length.inside(whole, zero, 0, 1, 0)  # offset <= L - 1: one byte, at any length
    assert not length.inside(whole, zero, 1, 1, 1000)  # one further: never
    assert not length.inside(whole, zero, -1, 1, 1000)  # before the start when the offset is 0
    assert not length.inside(LengthBound(3, 2, -100), zero, 0, 1, 1000)  # grows faster than L


# --- programs written as clang writes them ----------------------------------------------------------

# clang-19 -O2 of bench/progs/strcmp_halves.c: a[i] != b[i] for i < len / 2, b = mem + len / 2.
STRCMP_HALVES = """
    mov %r3, %r2
    rsh %r3, 1
    mov %r0, %r3
    jlt %r2, 2, out
    mov %r2, %r1
    add %r2, %r3
    mov %r4, 0
loop:
    mov %r5, %r1
    add %r5, %r4
    mov %r0, %r2
    add %r0, %r4
    ldxb %r6, [%r0+0]
    ldxb %r5, [%r5+0]
    mov %r0, %r4
    jne32 %r5, %r6, out
    add %r4, 1
    mov %r0, %r3
    jlt %r4, %r3, loop
out:
    exit
"""

# for (i = 0; i < len / 8; i++) sum += p32[2 * i] + p32[2 * i + 1]
PAIRS_SUM = """
    mov %r0, 0
    mov %r3, %r2
    rsh %r3, 3
    jeq %r3, 0, out
    mov %r4, 0
loop:
    mov %r5, %r4
    lsh %r5, 3
    mov %r6, %r1
    add %r6, %r5
    ldxw %r7, [%r6+0]
    add %r0, %r7
    ldxw %r7, [%r6+4]
    add %r0, %r7
    add %r4, 1
    jlt %r4, %r3, loop
out:
    exit
"""

# for (p = mem; p < mem + len; p++) sum += *p
POINTER_WALK = """
    mov %r0, 0
    mov %r3, %r1
    add %r3, %r2
    mov %r4, %r1
    jge %r4, %r3, out
loop:
    ldxb %r5, [%r4+0]
    add %r0, %r5
    add %r4, 1
    jlt %r4, %r3, loop
out:
    exit
"""


def _checked(text: str) -> list[int]:
    return sorted(Program.from_asm(text).facts.checked_accesses)


def _expected_strcmp(data: bytes) -> int:
    half = len(data) // 2
    return next((i for i in range(half) if data[i] != data[half + i]), half)


@pytest.mark.parametrize("text, expected", [
    (STRCMP_HALVES, _expected_strcmp),
    (PAIRS_SUM, lambda d: sum(int.from_bytes(d[i:i + 4], "little") for i in range(0, len(d) // 8 * 8, 4)) & MASK64),
    (POINTER_WALK, lambda d: sum(d)),
    # from the second byte: p < end still bounds it
    (POINTER_WALK.replace("mov %r4, %r1\n", "mov %r4, %r1\n    add %r4, 1\n"), lambda d: sum(d[1:])),
], ids=["strcmp_halves", "pairs_sum", "pointer_walk", "walk_from_one"])
def test_loops_bounded_by_the_length_run_unchecked_and_right(text, expected, engine):
    assert _checked(text) == []
    program = Program.from_asm(text)
    rng = random.Random(5)
    for data in inputs(rng, [*LENGTHS, 255, 256, 1023]):
        assert program.run(data, engine=engine) == expected(data), len(data)
    same = bytes(range(64)) * 2
    assert program.run(same, engine=engine) == expected(same)


@pytest.mark.parametrize("text, load, bad_size", [
    # i <= len / 2: b[len / 2] is one past the end when the length is even
    (STRCMP_HALVES.replace("jlt %r4, %r3, loop", "jle %r4, %r3, loop"), 11, 8),
    # p32[2i + 1] read one word further: past the end when the length is a multiple of 8
    (PAIRS_SUM.replace("[%r6+4]", "[%r6+8]"), 11, 8),
    # p <= end: the byte at end
    (POINTER_WALK.replace("jlt %r4, %r3, loop", "jle %r4, %r3, loop"), 5, 4),
    # two bytes at p < end: the last one past the end
    (POINTER_WALK.replace("ldxb %r5, [%r4+0]", "ldxh %r5, [%r4+0]"), 5, 4),
], ids=["strcmp_le", "pairs_word_further", "walk_le", "walk_halfwords"])
def test_one_past_the_bound_stays_checked_and_fails_cleanly(text, load, bad_size, engine):
    assert load in _checked(text)
    program = Program.from_asm(text)
    with pytest.raises(BPFRuntimeError, match=f"insn {load}: invalid read"):
        program.run(bytes(bad_size), engine=engine)


def test_a_length_bound_stays_relative_to_the_length_not_to_a_register_that_held_it():
    """r2 overwritten after it was copied: the copy keeps the bound; a bound taken from the new
    r2 is a bound on that value, which says nothing of the memory."""
    text = STRCMP_HALVES.replace("mov %r3, %r2\n", "mov %r3, %r2\n    lsh %r2, 1\n    mov %r3, %r2\n", 1)
    assert 13 in _checked(text)  # b[i] for i < len: past the end
    program = Program.from_asm(text)
    with pytest.raises(BPFRuntimeError, match="invalid read"):
        program.run(bytes(8), engine="jit")


# --- generated loop programs ------------------------------------------------------------------------

def _loop_program(rng: random.Random) -> str:
    """A loop over the memory whose bound and offsets are computed from the length in one of the
    ways user code does, with random constants: most stay inside the memory, some by a margin
    only a proof relative to the length sees, and some go one too far."""
    lines = []
    guard = rng.choice([0, 0, 1, 2, 4, 8])
    if guard:
        lines.append(f"jlt %r2, {guard}, out")
    lines.append("mov %r6, %r2")
    for _ in range(rng.choice([0, 1, 1, 2])):
        lines.append(rng.choice([f"rsh %r6, {rng.randint(1, 3)}", f"rsh %r6, {rng.randint(1, 3)}",
                                 f"div %r6, {rng.randint(2, 5)}", f"sub %r6, {rng.randint(0, 3)}",
                                 f"add %r6, {rng.randint(0, 2)}", f"and %r6, {rng.choice([-2, -4, -8, 255])}",
                                 f"mul %r6, {rng.randint(1, 3)}", "mov32 %r6, %r6"]))
    size = rng.choice([1, 1, 2, 4, 8])
    load = {1: "ldxb", 2: "ldxh", 4: "ldxw", 8: "ldxdw"}[size]
    off = rng.choice([0, 0, 0, 0, 0, 1, -1, size])
    step = rng.choice([1, 1, 2, size])
    compare = rng.choice(["jlt %r4, %r6, loop", "jlt %r4, %r6, loop", "jgt %r6, %r4, loop", "jle %r4, %r6, loop",
                          "jge %r6, %r4, loop", "jslt %r4, %r6, loop", "jlt32 %r4, %r6, loop"])
    if rng.random() < 0.3:  # a pointer walk: p < mem + bound
        lines += ["mov %r7, %r1", "add %r7, %r6", "mov %r4, %r1", f"add %r4, {rng.choice([0, 0, 1])}",
                  "jge %r4, %r7, out", "loop:", f"{load} %r5, [%r4{off:+d}]", "add %r0, %r5", f"add %r4, {step}",
                  compare.replace("%r6", "%r7")]
    else:  # an index: base[i * scale], base the memory or a point in it computed from the length
        base = rng.choice(["mov %r7, %r1"] * 3 + ["mov %r7, %r1\n    add %r7, %r6"] + [
            f"mov %r8, %r2\n    rsh %r8, {rng.randint(1, 2)}\n    mov %r7, %r1\n    add %r7, %r8"] * 2)
        scale = rng.choice(["", "", "", f"lsh %r8, {rng.randint(1, 3)}", f"mul %r8, {rng.randint(2, 3)}"])
        lines += [base, f"mov %r4, {rng.choice([0, 0, 1])}", "jge %r4, %r6, out", "loop:", "mov %r8, %r4"]
        if scale:
            lines.append(scale)
        lines += ["mov %r5, %r7", "add %r5, %r8", f"{load} %r5, [%r5{off:+d}]", "add %r0, %r5", f"add %r4, {step}",
                  compare]
    lines += ["out:", "exit"]
    return "\n".join(["mov %r0, 0", *lines])


def _campaign(seed: int, count: int, jit_every: int) -> None:
    accepted, unchecked, bounded = run_campaign(_loop_program, seed, count, jit_every)
    assert accepted > count // 2 and unchecked > count // 10, (accepted, unchecked)  # the campaign judged proofs
    assert bounded > count // 10, bounded  # and loops left uncounted


def test_generated_length_bounded_loops_are_checked_wherever_they_can_fault():
    _campaign(int(os.environ.get("BPFJIT_LENGTH_FUZZ_SEED", "11")), 150, jit_every=5)


@pytest.mark.slow
def test_generated_length_bounded_loops_campaign():
    _campaign(int(os.environ.get("BPFJIT_LENGTH_FUZZ_SEED", "12")), 5000, jit_every=3)

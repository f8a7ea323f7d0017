"""The verifier's value tracking (verifier/tnum.py, verifier/scalar.py).

Soundness is checked differentially against the reference interpreter's ALU and jump semantics:
random abstract values, each with concrete members, go through every ALU/ALU64 operation and
every conditional jump, and every concrete result must be a member of the abstract result.
Precision is checked on examples worked out by hand from the Linux 6.12 rules, and the log text
on lines the kernel's verifier selftests expect (their files are cited at each example).
"""
from __future__ import annotations

import dataclasses
import random

import pytest
from bpfjit.runtime.interp import alu_result, condition
from bpfjit.verifier import scalar as sc
from bpfjit.verifier.scalar import (
    Scalar,
    alu,
    branch_taken,
    format_scalar,
    is_subset,
    refine,
)
from bpfjit.verifier.tnum import Tnum, const, tnum_range, unknown

from bpfjit import isa
from bpfjit.isa import MASK32, MASK64, Insn, s32, s64

S64_MIN, S64_MAX, S32_MIN, S32_MAX = -(1 << 63), (1 << 63) - 1, -(1 << 31), (1 << 31) - 1


def contains(s: Scalar, value: int) -> bool:
    """`value` is a member of `s` in all five views (written here, apart from the code under test)."""
    v = value & MASK64
    low = v & MASK32
    return (v & ~s.var_off.mask == s.var_off.value
            and s.umin <= v <= s.umax and s.smin <= s64(v) <= s.smax
            and s.u32_min <= low <= s.u32_max and s.s32_min <= s32(low) <= s.s32_max)


def well_formed(s: Scalar) -> bool:
    t = s.var_off
    return (0 <= t.value <= MASK64 and 0 <= t.mask <= MASK64 and not t.value & t.mask
            and 0 <= s.umin <= s.umax <= MASK64 and S64_MIN <= s.smin <= s.smax <= S64_MAX
            and 0 <= s.u32_min <= s.u32_max <= MASK32 and S32_MIN <= s.s32_min <= s.s32_max <= S32_MAX)


# --- random abstract values with concrete members -----------------------------------------------
EDGES = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
         0xFFFFFFFF, 1 << 32, (1 << 32) + 5, S64_MAX, 1 << 63, MASK64, MASK64 - 1, MASK64 - 0xFF]
ALU_OPS = [isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.OR, isa.AND, isa.LSH, isa.RSH, isa.NEG, isa.MOD,
           isa.XOR, isa.MOV, isa.ARSH, isa.END]
JMP_OPS = [isa.JEQ, isa.JNE, isa.JSET, isa.JGT, isa.JGE, isa.JLT, isa.JLE, isa.JSGT, isa.JSGE,
           isa.JSLT, isa.JSLE]


def interesting(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.5:
        return (rng.choice(EDGES) + rng.randint(-3, 3)) & MASK64
    if pick < 0.75:
        return rng.randint(-300, 300) & MASK64
    return rng.getrandbits(64)


def random_member(rng: random.Random, t: Tnum) -> int:
    return t.value | (rng.getrandbits(64) & t.mask)


def random_alu(rng: random.Random) -> Insn:
    cls = rng.choice([isa.ALU, isa.ALU64])
    op = rng.choice(ALU_OPS)
    bits = 64 if cls == isa.ALU64 else 32
    if op == isa.END:
        return Insn(cls | op | (rng.choice([isa.K, isa.X]) if cls == isa.ALU else isa.K),
                    imm=rng.choice([16, 32, 64]))
    if op == isa.NEG:
        return Insn(cls | op)
    if op == isa.MOV and rng.random() < 0.4:
        return Insn(cls | op | isa.X, off=rng.choice([8, 16, 32] if bits == 64 else [8, 16]))
    off = 1 if op in (isa.DIV, isa.MOD) and rng.random() < 0.5 else 0
    if rng.random() < 0.5:
        return Insn(cls | op | isa.X, off=off)
    if op in (isa.LSH, isa.RSH, isa.ARSH):
        imm = rng.randrange(bits) if rng.random() < 0.9 else rng.randint(-5, 70)
    else:
        imm = s32(interesting(rng))
    if op in (isa.DIV, isa.MOD) and imm == 0:
        imm = 3
    return Insn(cls | op | isa.K, off=off, imm=imm)


def random_jump(rng: random.Random) -> Insn:
    cls = rng.choice([isa.JMP, isa.JMP32])
    if rng.random() < 0.5:
        return Insn(cls | rng.choice(JMP_OPS) | isa.X, off=1)
    return Insn(cls | rng.choice(JMP_OPS) | isa.K, off=1, imm=s32(interesting(rng)))


def checked(s: Scalar, members: list[int]) -> tuple[Scalar, list[int]]:
    """A generated sample: the abstract value must be well formed and hold its members."""
    assert well_formed(s), s
    for m in members:
        assert contains(s, m), (s, hex(m))
    return s, members


def gen_value(rng: random.Random, depth: int = 2) -> tuple[Scalar, list[int]]:
    kind = rng.choice(["const", "range", "range", "tnum", "load", "unknown", "sign", "op", "op", "refine"])
    if kind in ("op", "refine") and depth == 0:
        kind = "range"
    if kind == "const":
        v = interesting(rng)
        return checked(Scalar.const(v), [v])
    if kind == "unknown":
        return checked(Scalar.unknown(), [interesting(rng) for _ in range(4)])
    if kind == "tnum":
        t = Tnum(0, rng.getrandbits(64) & rng.getrandbits(64) & rng.choice([MASK64, 0xFFFF, 0xFFFFFFFF0]))
        t = Tnum(interesting(rng) & ~t.mask, t.mask)
        return checked(Scalar.from_range(var_off=t), [random_member(rng, t) for _ in range(6)])
    if kind == "sign":  # a sign mask, [-1, 0] in 64 or 32 bits (what AND/OR fork on)
        if rng.random() < 0.5:
            return checked(Scalar.from_range(smin=-1, smax=0), [0, MASK64])
        return checked(Scalar.from_range(s32_min=-1, s32_max=0),
                       [(rng.getrandbits(32) << 32) | rng.choice([0, MASK32]) for _ in range(4)])
    if kind == "load":
        size, signed = rng.choice([1, 2, 4]), rng.random() < 0.5
        raw = [interesting(rng) for _ in range(6)]
        bits = size * 8
        members = [(isa.sign_extend(v, bits) if signed else v & ((1 << bits) - 1)) & MASK64 for v in raw]
        return checked(Scalar.from_load(size, signed), members)
    if kind == "range":
        return gen_range(rng)
    a, xs = gen_value(rng, depth - 1)
    b, ys = gen_value(rng, depth - 1)
    if kind == "op":
        insn = random_alu(rng)
        pairs = [(rng.choice(xs), rng.choice(ys)) for _ in range(6)]
        operand = b if insn.source == isa.X else None
        return checked(alu(insn, a, operand), [alu_result(insn, x, y) for x, y in pairs])
    insn = random_jump(rng)
    taken = rng.random() < 0.5
    operand = b if insn.source == isa.X else None
    out = refine(insn, a, operand, taken)
    kept = [x for x in xs for y in ys if condition(insn, x, y) == taken]
    assert out is not None or not kept
    return checked(out[0], kept[:6]) if kept else checked(a, xs)


def gen_range(rng: random.Random) -> tuple[Scalar, list[int]]:
    """A range in one view; every value in it must survive the synchronisation of the views."""
    view = rng.choice(["u64", "s64", "u32", "s32"])
    bits = 64 if view[1:] == "64" else 32
    lo = interesting(rng) & ((1 << bits) - 1)
    span = rng.choice([0, 1, 5, 300, 1 << 20, 1 << 40, rng.getrandbits(bits)])
    if view[0] == "s":
        lo = isa.sign_extend(lo, bits)
        hi = min(lo + span, (1 << (bits - 1)) - 1)
    else:
        hi = min(lo + span, (1 << bits) - 1)
    names = {"u64": ("umin", "umax"), "s64": ("smin", "smax"), "u32": ("u32_min", "u32_max"),
             "s32": ("s32_min", "s32_max")}[view]
    s = Scalar.from_range(**{names[0]: lo, names[1]: hi})
    points = [lo, hi] + [rng.randint(lo, hi) for _ in range(4)]
    if bits == 32:  # the high half is free
        points = [(rng.choice([0, MASK64, rng.getrandbits(64)]) & ~MASK32) | (p & MASK32) for p in points]
    return checked(s, [p & MASK64 for p in points])


# --- soundness, differentially ------------------------------------------------------------------
def run_alu_cases(seed: int, count: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        (a, xs), (b, ys) = gen_value(rng), gen_value(rng)
        insn = random_alu(rng)
        operand = b if insn.source == isa.X else None
        out = alu(insn, a, operand)
        assert well_formed(out)
        for x in xs:
            for y in ys[:3]:
                got = alu_result(insn, x, y)
                assert contains(out, got), (insn, a, b, hex(x), hex(y), hex(got), out)
        halves = sc.bitwise_fork(insn, a, operand)  # each member of dst goes down one of the paths
        for x in xs if halves else ():
            paths = [h for h in halves if contains(h, x)]
            assert paths, (insn, a, hex(x), halves)
            assert contains(alu(insn, paths[0], operand), alu_result(insn, x, ys[0])), (insn, a, hex(x))


def run_jump_cases(seed: int, count: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        (a, xs), (b, ys) = gen_value(rng), gen_value(rng)
        insn = random_jump(rng)
        x_src = insn.source == isa.X
        operand = b if x_src else None
        pred = branch_taken(insn, a, operand)
        edges = {taken: refine(insn, a, operand, taken) for taken in (True, False)}
        for x in xs:
            for y in ys:
                taken = condition(insn, x, y)
                assert pred is None or pred == taken, (insn, a, b, hex(x), hex(y))
                edge = edges[taken]
                assert edge is not None, (insn, a, b, hex(x), hex(y), taken)
                assert contains(edge[0], x), (insn, taken, a, b, hex(x), hex(y), edge[0])
                if x_src:
                    assert contains(edge[1], y), (insn, taken, a, b, hex(x), hex(y), edge[1])
        # if rX op rX: one register, refined through both operands
        same = {taken: refine(Insn(insn.opcode | isa.X, off=1), a, a, taken, same_register=True)
                for taken in (True, False)}
        for x in xs:
            edge = same[condition(Insn(insn.opcode | isa.X), x, x)]
            assert edge is not None and edge[0] == edge[1] and contains(edge[0], x), (insn, a, hex(x))


def run_subset_cases(seed: int, count: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        (old, _), (new, ys) = gen_value(rng), gen_value(rng)
        assert is_subset(old, old) and is_subset(Scalar.unknown(), old)
        if is_subset(old, new):
            assert all(contains(old, y) for y in ys), (old, new)


def test_alu_sound():
    run_alu_cases(seed=1, count=2500)


def test_jumps_sound():
    run_jump_cases(seed=2, count=1500)


def test_is_subset_sound():
    run_subset_cases(seed=3, count=800)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 14))
def test_values_sound_long(seed):
    run_alu_cases(seed, 40000)
    run_jump_cases(seed, 25000)
    run_subset_cases(seed, 10000)


# --- tnum ---------------------------------------------------------------------------------------
TNUM_BINARY = {
    "add": (Tnum.add, lambda x, y: x + y), "sub": (Tnum.sub, lambda x, y: x - y),
    "mul": (Tnum.mul, lambda x, y: x * y), "and": (Tnum.and_, lambda x, y: x & y),
    "or": (Tnum.or_, lambda x, y: x | y), "xor": (Tnum.xor, lambda x, y: x ^ y),
}


def random_tnum(rng: random.Random) -> Tnum:
    mask = rng.getrandbits(64) & rng.choice([MASK64, 0xFF, 0xF0F0, 0, rng.getrandbits(64)])
    return Tnum(rng.getrandbits(64) & ~mask, mask)


@pytest.mark.parametrize("name", sorted(TNUM_BINARY))
def test_tnum_binary_ops_sound(name):
    op, concrete = TNUM_BINARY[name]
    rng = random.Random(name)
    for _ in range(400):
        a, b = random_tnum(rng), random_tnum(rng)
        out = op(a, b)
        assert not out.value & out.mask
        for _ in range(8):
            x, y = random_member(rng, a), random_member(rng, b)
            assert out.contains_value(concrete(x, y)), (a, b, hex(x), hex(y))


def test_tnum_unary_ops_sound():
    rng = random.Random(7)
    for _ in range(400):
        a, n = random_tnum(rng), rng.randrange(64)
        x = random_member(rng, a)
        assert a.neg().contains_value(-x)
        assert a.lshift(n).contains_value(x << n)
        assert a.rshift(n).contains_value(x >> n)
        assert a.arshift(n, 64).contains_value(s64(x) >> n)
        assert a.arshift(n % 32, 32).contains_value((s32(x) >> (n % 32)) & MASK32)
        b = random_tnum(rng)
        joined = a.union(b)
        assert joined.contains(a) and joined.contains(b)
        if a.overlaps(b):
            common = a.intersect(b)
            assert a.contains(common) and b.contains(common)


def test_tnum_examples():
    # worked by hand from tnum.c
    assert tnum_range(0, 2) == Tnum(0, 3)  # {0,1,2} widens to {0..3}
    assert tnum_range(5, 6) == Tnum(4, 3)
    assert tnum_range(7, 7) == const(7)
    assert tnum_range(0, MASK64) == unknown() and tnum_range(1, 1 << 63) == unknown()
    assert const(1).add(Tnum(0, 1)) == Tnum(0, 3)  # 1 + {0,1}: a carry may reach bit 1
    assert const(10).sub(const(3)) == const(7)
    assert Tnum(0, 1).mul(const(3)) == Tnum(0, 3)  # {0,1} * 3
    assert const(1).mul(Tnum(0, 1)) == Tnum(0, 1)
    assert const(6).mul(const(7)) == const(42)
    assert Tnum(0x80000000, 0).arshift(4, 32) == const(0xF8000000)
    assert const(1 << 63).arshift(4, 64) == const(0xF800000000000000)
    assert Tnum(0, 0x80000000).arshift(1, 32) == Tnum(0, 0xC0000000)
    assert const(1).intersect(const(0)) == const(1)  # disagreeing known bits: the kernel keeps 1
    assert Tnum(0, 0xF0).intersect(Tnum(0x0F, 0xF0)) == Tnum(0x0F, 0xF0)
    assert const(4).union(const(6)) == Tnum(4, 2)
    assert Tnum(0xF0, 0x0F).contains(const(0xF7)) and not Tnum(0xF0, 0x0F).contains(const(0x07))
    assert not const(3).contains(Tnum(2, 1)) and Tnum(2, 1).contains(const(3))
    assert Tnum(8, 0x30).is_aligned(8) and not Tnum(8, 0x34).is_aligned(8) and Tnum(1, 0).is_aligned(0)
    big = Tnum(0x1234_5678_0000_0001, 0xFF00)
    assert big.cast(1) == const(1) and big.subreg() == Tnum(1, 0xFF00)
    assert big.clear_subreg() == const(0x1234_5678_0000_0000)
    assert big.with_subreg(const(0xABCD_EF01_0000_0002)) == const(0x1234_5678_0000_0002)
    assert big.const_subreg(9) == const(0x1234_5678_0000_0009)
    assert unknown().is_unknown and const(5).is_const and not Tnum(0, 1).is_const
    assert Tnum(0, 1 << 40).subreg_is_const and not Tnum(0, 1).subreg_is_const
    assert str(Tnum(0, 0xFF)) == "(0x0; 0xff)"  # verifier_ctx.c: "var_off=(0x0; 0x4)"
    assert str(Tnum(0xFFFFFFFFFFFFFC00, 0x3FF)) == "(0xfffffffffffffc00; 0x3ff)"
    assert Tnum(0b101, 0b010).sbin() == "0" * 61 + "1x1"


# --- precision: hand-worked examples ------------------------------------------------------------
def alu64(op: int, dst: Scalar, src: Scalar | int) -> Scalar:
    if isinstance(src, int):
        return alu(Insn(isa.ALU64 | op | isa.K, imm=src), dst)
    return alu(Insn(isa.ALU64 | op | isa.X), dst, src)


def alu32(op: int, dst: Scalar, src: Scalar | int) -> Scalar:
    if isinstance(src, int):
        return alu(Insn(isa.ALU | op | isa.K, imm=src), dst)
    return alu(Insn(isa.ALU | op | isa.X), dst, src)


UNKNOWN = Scalar.unknown()


@pytest.mark.parametrize("op", [isa.ADD, isa.SUB, isa.MUL, isa.OR, isa.AND, isa.XOR, isa.MOV,
                                isa.LSH, isa.RSH, isa.ARSH])
@pytest.mark.parametrize("cls", [isa.ALU, isa.ALU64])
def test_constant_operands_give_a_constant(op, cls):
    rng = random.Random(op * 2 + cls)
    for _ in range(200):
        d, s = interesting(rng), interesting(rng)
        if op in (isa.LSH, isa.RSH, isa.ARSH):
            s = rng.randrange(64 if cls == isa.ALU64 else 32)
        insn = Insn(cls | op | isa.X)
        out = alu(insn, Scalar.const(d), Scalar.const(s))
        assert out == Scalar.const(alu_result(insn, d, s)), (hex(d), hex(s), out)


@pytest.mark.parametrize("insn", [Insn(isa.ALU64 | isa.NEG), Insn(isa.ALU | isa.NEG),
                                  Insn(isa.ALU | isa.END | isa.X, imm=64),
                                  Insn(isa.ALU64 | isa.END, imm=64),
                                  Insn(isa.ALU64 | isa.DIV | isa.K, imm=2),
                                  Insn(isa.ALU | isa.DIV | isa.K, imm=2),
                                  Insn(isa.ALU | isa.MOD | isa.K, off=1, imm=7)])
def test_untracked_ops_give_unknown_64_bits(insn):
    # 6.12 marks NEG/END/DIV/MOD results unknown before any zero extension, even for constants
    assert alu(insn, Scalar.const(5)) == UNKNOWN


@pytest.mark.parametrize("cls", [isa.ALU, isa.ALU64])
@pytest.mark.parametrize("source", [isa.K, isa.X])
@pytest.mark.parametrize("width", [16, 32])
def test_a_byte_swap_keeps_its_width(cls, source, width):
    """be16/le16/bswap16 give at most 0xffff, the 32-bit ones 0xffffffff (newer kernels track
    this; a be16 packet length bounds a packet pointer's offset)."""
    out = alu(Insn(cls | isa.END | source, imm=width), Scalar.const(0x1234_5678_9abc_def0))
    assert (out.umin, out.umax, out.smin) == (0, (1 << width) - 1, 0)


def test_shifts_tracked_only_by_known_small_amounts():
    r1 = Scalar.from_range(umax=100)
    assert alu64(isa.LSH, r1, Scalar.from_range(umax=3)) == UNKNOWN
    assert alu64(isa.LSH, r1, 64) == UNKNOWN  # the kernel rejects this first ("invalid shift")
    # the low half is known to be 3, but the 64-bit operand may be large: unknown, not even zext
    amount = Scalar.from_range(u32_min=3, u32_max=3)
    assert amount.is_const32 and amount.const32_value == 3 and not amount.is_const
    assert alu32(isa.LSH, r1, amount) == UNKNOWN
    assert alu64(isa.LSH, r1, Scalar.const(2)) == Scalar.from_range(umax=400, var_off=Tnum(0, 0x1FC))


def test_and_mask():
    # r1 &= 0xff on an unknown value
    out = alu64(isa.AND, UNKNOWN, 0xFF)
    assert (out.umin, out.umax, out.smin, out.smax, out.var_off) == (0, 255, 0, 255, Tnum(0, 0xFF))
    assert (out.u32_min, out.u32_max, out.s32_min, out.s32_max) == (0, 255, 0, 255)
    assert format_scalar(out) == "scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))"


def test_shift_pair_sign_extends_the_subregister():
    # r1 <<= 32: smin/smax = s32 bounds << 32 (the kernel's special case); r1 s>>= 32 brings them back
    r1 = Scalar.from_range(s32_min=-5, s32_max=100)
    shifted = alu64(isa.LSH, r1, 32)
    assert (shifted.smin, shifted.smax) == (-5 << 32, 100 << 32)
    assert shifted.var_off == Tnum(0, 0xFFFFFFFF00000000) and shifted.is_const32
    back = alu64(isa.ARSH, shifted, 32)
    assert (back.smin, back.smax, back.s32_min, back.s32_max) == (-5, 100, -5, 100)
    assert (back.umin, back.umax, back.var_off) == (0, MASK64, unknown())
    assert format_scalar(back) == "scalar(smin=smin32=-5,smax=smax32=100)"
    full = alu64(isa.ARSH, alu64(isa.LSH, UNKNOWN, 32), 32)
    assert format_scalar(full) == "scalar(smin=0xffffffff80000000,smax=0x7fffffff)"


def test_unsigned_compare_refines():
    lt = Insn(isa.JMP | isa.JLT | isa.K, off=1, imm=10)
    taken, imm = refine(lt, UNKNOWN, None, True)
    assert (taken.umin, taken.umax, taken.smin, taken.smax, taken.var_off) == (0, 9, 0, 9, Tnum(0, 0xF))
    assert format_scalar(taken) == "scalar(smin=smin32=0,smax=umax=smax32=umax32=9,var_off=(0x0; 0xf))"
    assert imm == Scalar.const(10)
    fall, _ = refine(lt, UNKNOWN, None, False)
    assert format_scalar(fall) == "scalar(umin=10)"
    assert refine(lt, Scalar.from_range(umax=9), None, False) is None  # always taken
    assert refine(lt, Scalar.from_range(umax=9), None, True) == (Scalar.from_range(umax=9), imm)
    assert branch_taken(lt, Scalar.from_range(umin=10)) is False


def test_jmp32_compare_refines_the_subregister():
    # if w1 < 10 on an unknown r1: u32 [0, 9]; the 64-bit bounds get the low half put under them
    # (umin32=0 is at its extreme, so it is not printed)
    taken, _ = refine(Insn(isa.JMP32 | isa.JLT | isa.K, off=1, imm=10), UNKNOWN, None, True)
    assert (taken.u32_min, taken.u32_max, taken.s32_min, taken.s32_max) == (0, 9, 0, 9)
    assert taken.umax == 0xFFFFFFFF00000009 and taken.smax == 0x7FFFFFFF00000009
    assert taken.var_off == Tnum(0, 0xFFFFFFFF0000000F)
    assert format_scalar(taken) == ("scalar(smax=0x7fffffff00000009,umax=0xffffffff00000009,"
                                    "smin32=0,smax32=umax32=9,var_off=(0x0; 0xffffffff0000000f))")


def test_register_compares_refine_both_operands():
    a, b = Scalar.from_range(umax=10), Scalar.from_range(umin=5, umax=20)
    eq = refine(Insn(isa.JMP | isa.JEQ | isa.X, off=1), a, b, True)
    assert eq[0] == eq[1] == Scalar.from_range(umin=5, umax=10)
    gt = refine(Insn(isa.JMP | isa.JGT | isa.X, off=1), a, b, True)  # a > b: a in [6,10], b in [5,9]
    assert (gt[0].umin, gt[0].umax, gt[1].umin, gt[1].umax) == (6, 10, 5, 9)
    ne = Insn(isa.JMP | isa.JNE | isa.K, off=1, imm=0)
    assert refine(ne, a, None, True)[0] == Scalar.from_range(umin=1, umax=10)
    ne10 = Insn(isa.JMP | isa.JNE | isa.K, off=1, imm=10)
    assert refine(ne10, a, None, True)[0] == Scalar.from_range(umax=9)
    ne5 = Insn(isa.JMP | isa.JNE | isa.K, off=1, imm=5)
    assert refine(ne5, a, None, True)[0] == a  # not at an edge: nothing learnt
    # if r1 > r1 never holds, but 6.12 does not know that: it narrows the one register both ways
    same = refine(Insn(isa.JMP | isa.JGT | isa.X, off=1), a, a, True, same_register=True)
    assert same[0] == same[1] == Scalar.from_range(umin=1, umax=9)


def test_impossible_edge_resets_ranges_like_the_kernel():
    # if r1 > r1 with r1 in [127, 128]: 6.12 cannot rule the edge out; refining empties the u32
    # range, so its sanity check logs the register and keeps only the tnum (unsynced)
    r1 = Scalar.from_range(umin=127, umax=128)
    log: list[str] = []
    out = refine(Insn(isa.JMP | isa.JGT | isa.X, off=1), r1, r1, True, same_register=True, log=log)
    assert log == [("REG INVARIANTS VIOLATION (true_reg1): range bounds violation u64=[0x7f, 0x80] "
                    "s64=[0x7f, 0x80] u32=[0x80, 0x7f] s32=[0x7f, 0x80] var_off=(0x0, 0xff)")]
    assert out[0] == out[1] == dataclasses.replace(UNKNOWN, var_off=Tnum(0, 0xFF))
    assert format_scalar(out[0]) == "scalar(var_off=(0x0; 0xff))"


def test_jset_refines_single_bits():
    jset = Insn(isa.JMP | isa.JSET | isa.K, off=1, imm=4)
    assert refine(jset, UNKNOWN, None, True)[0].var_off == Tnum(4, MASK64 & ~4)
    assert refine(jset, UNKNOWN, None, False)[0].var_off == Tnum(0, MASK64 & ~4)
    two_bits = Insn(isa.JMP | isa.JSET | isa.K, off=1, imm=6)
    assert refine(two_bits, UNKNOWN, None, True)[0] == UNKNOWN  # which bit is set is unknown
    assert refine(two_bits, UNKNOWN, None, False)[0].var_off == Tnum(0, MASK64 & ~6)
    assert branch_taken(jset, Scalar.from_range(var_off=Tnum(4, 3))) is True
    assert branch_taken(jset, Scalar.from_range(umax=3)) is False


def test_alu32_subtraction_wraps_into_the_high_half():
    # w1 in [0, 5]; w1 -= 10 gives 0xfffffff6..0xfffffffb: the u32 range is lost to the possible
    # wrap, the s32 range [-10, -5] is kept, and syncing gives back the exact u32 and u64 ranges
    out = alu32(isa.SUB, Scalar.from_range(umax=5), 10)
    assert (out.s32_min, out.s32_max) == (-10, -5)
    assert (out.u32_min, out.u32_max, out.umin, out.umax) == (0xFFFFFFF6, 0xFFFFFFFB, 0xFFFFFFF6, 0xFFFFFFFB)
    assert (out.smin, out.smax) == (0xFFFFFFF6, 0xFFFFFFFB)


def test_alu32_zero_extends():
    assert alu32(isa.ADD, Scalar.const(-1), 1) == Scalar.const(0)
    moved = alu(Insn(isa.ALU | isa.MOV | isa.X), UNKNOWN, UNKNOWN)  # w1 = w1
    assert format_scalar(moved) == "scalar(smin=0,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff))"
    assert alu32(isa.ADD, UNKNOWN, 1) == moved
    assert alu(Insn(isa.ALU | isa.MOV | isa.K, imm=-1), UNKNOWN) == Scalar.const(0xFFFFFFFF)
    assert alu(Insn(isa.ALU64 | isa.MOV | isa.K, imm=-1), UNKNOWN) == Scalar.const(-1)
    # verifier_scalar_ids.c linked_regs_and_subreg_def: "4: (77) r1 >>= 32 ; R1_w=0"
    r0 = alu64(isa.AND, UNKNOWN, 0x7FFFFFFF)
    w1 = alu(Insn(isa.ALU | isa.MOV | isa.X), UNKNOWN, r0)
    w1, _ = refine(Insn(isa.JMP32 | isa.JLT | isa.K, off=1, imm=10), w1, None, True)
    assert format_scalar(alu64(isa.RSH, w1, 32)) == "0"


def test_bitwise_fork_splits_minus_one_or_zero():
    and_k = Insn(isa.ALU64 | isa.AND | isa.K, imm=5)
    assert sc.bitwise_fork(and_k, Scalar.from_range(smin=-1, smax=0)) == (Scalar.const(-1), Scalar.const(0))
    assert sc.bitwise_fork(and_k, Scalar.from_range(smin=-1, smax=1)) is None
    assert sc.bitwise_fork(Insn(isa.ALU64 | isa.ADD | isa.K, imm=5), Scalar.from_range(smin=-1, smax=0)) is None
    assert sc.bitwise_fork(Insn(isa.ALU64 | isa.AND | isa.X), Scalar.from_range(smin=-1, smax=0), UNKNOWN) is None
    low = Scalar.from_range(s32_min=-1, s32_max=0)  # only the low half is in [-1, 0]
    minus, zero = sc.bitwise_fork(Insn(isa.ALU | isa.OR | isa.K, imm=1), low)
    assert minus.is_const32 and minus.const32_value == MASK32 and zero.is_const32 and zero.const32_value == 0


def test_loads_and_sign_extension():
    assert sc.truncate(Scalar.const(0x1234_5678_9ABC), 2) == Scalar.const(0x9ABC)
    assert sc.truncate(Scalar.from_range(umin=0x100, umax=0x1FF), 1) == Scalar.from_range(umax=0xFF)
    assert sc.truncate(Scalar.from_range(umin=0x1_0000_0005, umax=0x1_0000_0009), 4) == \
        Scalar.from_range(umin=5, umax=9)
    byte = Scalar.from_load(1, signed=False)
    assert format_scalar(byte) == "scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))"
    # verifier_ldsx.c ldsx_s8_range_priv: "R1_w=scalar(smin=smin32=-128,smax=smax32=127)"
    assert format_scalar(Scalar.from_load(1, signed=True)) == "scalar(smin=smin32=-128,smax=smax32=127)"
    assert format_scalar(Scalar.from_load(4, signed=True)) == "scalar(smin=0xffffffff80000000,smax=0x7fffffff)"
    assert sc.sign_extend(Scalar.const(0x80), 1) == Scalar.const(-128)
    assert sc.sign_extend(Scalar.from_range(umin=0x81, umax=0xFE), 1) == Scalar.from_range(smin=-127, smax=-2)
    movsx = Insn(isa.ALU64 | isa.MOV | isa.X, off=16)
    assert alu(movsx, UNKNOWN, Scalar.const(0xFFFF)) == Scalar.const(-1)
    movsx32 = Insn(isa.ALU | isa.MOV | isa.X, off=8)
    assert alu(movsx32, UNKNOWN, Scalar.const(0xFF)) == Scalar.const(0xFFFFFFFF)
    w6 = alu(movsx32, UNKNOWN, UNKNOWN)  # w6 = (s8)w0: s32 in [-128, 127], zero-extended
    assert (w6.s32_min, w6.s32_max, w6.umin, w6.umax, w6.smin) == (-128, 127, 0, MASK32, 0)


def test_is_subset_examples():
    assert is_subset(Scalar.from_range(umax=10), Scalar.from_range(umin=2, umax=5))
    assert not is_subset(Scalar.from_range(umin=2, umax=5), Scalar.from_range(umax=10))
    evens = Scalar.from_range(umax=14, var_off=Tnum(0, 0xE))
    assert is_subset(evens, Scalar.const(4)) and not is_subset(evens, Scalar.const(3))


def test_from_range_rejects_empty():
    with pytest.raises(ValueError):
        Scalar.from_range(umin=5, umax=4)
    with pytest.raises(ValueError):
        Scalar.from_range(umax=3, var_off=const(8))


# --- log text -----------------------------------------------------------------------------------
def test_kernel_selftest_log_lines():
    """Lines from tools/testing/selftests/bpf/progs/verifier_bounds.c of Linux 6.12, replayed."""
    r6 = alu64(isa.AND, UNKNOWN, 0xAF)
    r0 = alu64(isa.AND, UNKNOWN, 0x1A0)
    # "5: (af) r0 ^= r6 ; R0_w=scalar(smin=smin32=0,smax=umax=smax32=umax32=431,var_off=(0x0; 0x1af))"
    want = "scalar(smin=smin32=0,smax=umax=smax32=umax32=431,var_off=(0x0; 0x1af))"
    assert format_scalar(alu64(isa.XOR, r0, r6)) == want
    assert format_scalar(alu64(isa.OR, r0, r6)) == want
    # "5: (2f) r0 *= r6 ; R0_w=scalar(smin=smin32=0,smax=umax=smax32=umax32=3825,var_off=(0x0; 0xfff))"
    product = alu64(isa.MUL, alu64(isa.AND, UNKNOWN, 0x0F), alu64(isa.AND, UNKNOWN, 0xFF))
    assert format_scalar(product) == "scalar(smin=smin32=0,smax=umax=smax32=umax32=3825,var_off=(0x0; 0xfff))"
    # bounds_deduct_negative_overlap: w6 = (s8)w0; r0 = (s8)r0; if w6 >= 0xf0000000 (fall
    # through); r0 += r6; r6 += 400; r0 -= r6
    w6 = alu(Insn(isa.ALU | isa.MOV | isa.X, off=8), UNKNOWN, UNKNOWN)
    r0 = alu(Insn(isa.ALU64 | isa.MOV | isa.X, off=8), UNKNOWN, UNKNOWN)
    w6, _ = refine(Insn(isa.JMP32 | isa.JGE | isa.K, off=1, imm=s32(0xF0000000)), w6, None, False)
    r0 = alu64(isa.ADD, r0, w6)
    r0 = alu64(isa.SUB, r0, alu64(isa.ADD, w6, 400))
    assert format_scalar(r0) == (
        "scalar(smin=smin32=-655,smax=smax32=-146,umin=0xfffffffffffffd71,umax=0xffffffffffffff6e,"
        "umin32=0xfffffd71,umax32=0xffffff6e,var_off=(0xfffffffffffffc00; 0x3ff))")
    # bounds_deduct_positive_overlap / two_overlaps: r0 = (s8)r0; if r0 > r1 (fall through)
    s8 = alu(Insn(isa.ALU64 | isa.MOV | isa.X, off=8), UNKNOWN, UNKNOWN)
    gt = Insn(isa.JMP | isa.JGT | isa.X, off=1)
    assert format_scalar(refine(gt, s8, Scalar.const(0xFFFFFFFFFFFFFF00), False)[0]) == \
        "scalar(smin=smin32=0,smax=umax=smax32=umax32=127,var_off=(0x0; 0x7f))"
    assert format_scalar(refine(gt, s8, Scalar.const(0xFFFFFFFFFFFFFF80), False)[0]) == \
        "scalar(smin=smin32=-128,smax=smax32=127,umax=0xffffffffffffff80)"


def test_constants_print_as_numbers():
    # verifier_precision.c: "2: (07) r0 += 1 ; R0_w=6"
    assert format_scalar(alu64(isa.ADD, Scalar.const(5), 1)) == "6"
    assert [format_scalar(Scalar.const(v)) for v in (0, -1, 0x7FFF, 0x8000, -0x8000, -0x8001)] == \
        ["0", "-1", "32767", "0x8000", "-32768", "0xffffffffffff7fff"]


def test_scalar_text_rules():
    assert format_scalar(UNKNOWN) == "scalar()"
    # verifier_scalar_ids.c: "R0=scalar(id=1" - the caller's attributes come first
    assert format_scalar(UNKNOWN, ["id=2"]) == "scalar(id=2)"
    assert format_scalar(Scalar.from_range(umax=255), ["id=1"]).startswith("scalar(id=1,smin=smin32=0,")
    # a negative signed bound is not merged with an unsigned one of the same bits
    neg = Scalar.from_range(smin=-3, smax=-1)
    assert format_scalar(neg) == ("scalar(smin=smin32=-3,smax=smax32=-1,umin=0xfffffffffffffffd,"
                                  "umin32=0xfffffffd,var_off=(0xfffffffffffffffc; 0x3))")
    # a hex s32 bound prints as u32, so it differs from the 64-bit one
    wide = Scalar.from_range(smin=-100000, smax=5)
    assert format_scalar(wide) == "scalar(smin=0xfffffffffffe7960,smax=smax32=5,smin32=0xfffe7960)"
    assert str(wide) == format_scalar(wide)

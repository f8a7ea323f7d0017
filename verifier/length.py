"""Upper bounds relative to a raw program's length: what lets its length-bounded loops run unchecked.

A raw program's memory (r1) has a size only the run knows, its length L (r2 at entry). Its loops
are bounded by L or by values computed from it (``i < len / 2``, ``p < mem + len``), which no
constant bound holds, so without more each access in them would keep a run-time check. A
:class:`LengthBound` on a register says that its value, as an unsigned 64-bit number (for a
pointer into the raw memory, its variable offset), is at most ``num * L / den + add`` on every run
that reaches it. An access whose whole offset plus size stays within L for every length at least
the bytes the path already proved (``Reg.range``) needs no check (bpfjit's own rule: the kernel
has no raw programs).

Every rule here yields a bound that holds, or None. Wrapping arithmetic only makes an unsigned
value smaller, so a sum, a product or a left shift is at most the same expression on the
operands' bounds, in 64 and in 32 bits (a 32-bit operand is at most the whole register);
subtracting needs the bounds to show the value cannot go below zero. A register without a bound
is at most its ``umax``; the bound of a sum is taken only when one operand has one.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from bpfjit import isa

from .scalar import MASK32, S32_MAX, Scalar

_USEFUL = 1 << 62  # a bound whose constant is beyond this says nothing an access could use
# More than any raw program's memory can be long: it is mapped memory, and x86-64 addresses have at
# most 57 bits (five-level paging). So is the memory's start address.
MAX_LENGTH = 1 << 57


@dataclass(frozen=True, slots=True)
class LengthBound:
    """value <= num * L / den + add, for the run's length L (num > 0, den > 0, in lowest terms:
    plain integers, as fractions.Fraction costs the verifier's loop several times as much)."""
    num: int
    den: int
    add: int

    def __str__(self) -> str:
        return f"{self.num}/{self.den}*len{self.add:+d}"


LENGTH = LengthBound(1, 1, 0)  # the length itself (r2 at entry, and its copies)
Ratio = tuple[int, int, int]  # (num, den, add): a bound, or a register's umax as (0, 1, umax)


def _upper(bound: LengthBound | None, value: Scalar) -> Ratio:
    """The bound a value has: its own, else its umax."""
    return (bound.num, bound.den, bound.add) if bound is not None else (0, 1, value.umax)


def _made(num: int, den: int, add: int) -> LengthBound | None:
    """A bound, unless it is none at all (no part in L, or a constant no access could use)."""
    if num <= 0 or add > _USEFUL or num > _USEFUL * den:
        return None
    common = math.gcd(num, den)
    return LengthBound(num // common, den // common, add)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _scale_le(a_num: int, a_den: int, b_num: int, b_den: int) -> bool:
    """a_num / a_den <= b_num / b_den."""
    return a_num * b_den <= b_num * a_den


def alu(op: int, is64: bool, signed: bool, dst: tuple[LengthBound | None, Scalar],
        src: tuple[LengthBound | None, Scalar], src_is_imm: bool, imm: int) -> LengthBound | None:
    """The bound of dst after `dst op= src` (both as they were before it; signed: the
    instruction's off asks for a signed division or modulo). src_is_imm: src is the
    instruction's immediate, imm (sign-extended to 64 bits for ALU64, its low 32 bits for ALU)."""
    dst_bound, (src_bound, src_value) = dst[0], src
    if dst_bound is None and src_bound is None:
        return None
    if op == isa.ADD or op == isa.SUB:
        return _add_sub(op, is64, dst, src, src_is_imm, imm)
    if not src_value.is_const:
        if op == isa.AND:  # at most either operand
            return dst_bound if dst_bound is not None else src_bound
        if op == isa.MOD and not signed:  # at most the dividend (a zero divisor leaves it)
            return dst_bound
        return None
    if dst_bound is None:
        return None
    k = src_value.const_value if is64 else src_value.const_value & MASK32
    num, den, add = dst_bound.num, dst_bound.den, dst_bound.add
    if op == isa.MUL:
        return _made(num * k, den, add * k)
    if op == isa.LSH and k < (64 if is64 else 32):
        return _made(num << k, den, add << k)
    if op == isa.RSH and k < (64 if is64 else 32):
        return _made(num, den << k, _ceil_div(add, 1 << k))
    if op == isa.DIV and not signed and k:
        return _made(num, den * k, _ceil_div(add, k))
    if (op == isa.AND or op == isa.MOD) and not signed:
        return dst_bound
    return None


def _add_sub(op: int, is64: bool, dst: tuple[LengthBound | None, Scalar], src: tuple[LengthBound | None, Scalar],
             src_is_imm: bool, imm: int) -> LengthBound | None:
    (dst_bound, dst_value), (src_bound, src_value) = dst, src
    if src_is_imm:  # a constant step: subtracting it must not take the value below zero
        step = isa.s64(imm) if is64 else isa.s32(imm & MASK32)
        if op == isa.SUB:
            step = -step
        if dst_bound is None:
            return None
        low = dst_value.umin if is64 else dst_value.u32_min
        if step < 0 and low < -step:
            return None
        return _made(dst_bound.num, dst_bound.den, dst_bound.add + step)
    if op == isa.ADD:
        (a_num, a_den, a_add), (b_num, b_den, b_add) = _upper(dst_bound, dst_value), _upper(src_bound, src_value)
        return _made(a_num * b_den + b_num * a_den, a_den * b_den, a_add + b_add)
    if dst_bound is None:  # dst - src, with src never more than dst
        return None
    low, high = (dst_value.umin, src_value.umax) if is64 else (dst_value.u32_min, src_value.u32_max)
    if low < high:
        return None
    return _made(dst_bound.num, dst_bound.den, dst_bound.add - (src_value.umin if is64 else src_value.u32_min))


def pointer_move(op: int, pointer: tuple[LengthBound | None, Scalar],
                 amount: tuple[LengthBound | None, Scalar]) -> LengthBound | None:
    """The bound of a raw pointer's variable offset after it moves by a scalar (64-bit ADD or
    SUB: the offset's arithmetic is the scalars')."""
    return alu(op, True, False, pointer, amount, False, 0)


def compared(low: tuple[LengthBound | None, Scalar], high: tuple[LengthBound | None, Scalar], strict: bool,
             signed: bool, jmp32: bool) -> LengthBound | None:
    """What `low < high` (strict) or `low <= high`, known on an edge, bounds low by: high's own
    bound. The comparison must be the unsigned 64-bit one: a signed or 32-bit comparison is,
    when both operands' values (as refined on the edge) make it the same."""
    high_bound, high_value = high
    if high_bound is None:
        return None
    if jmp32:
        limit = S32_MAX if signed else MASK32
        if low[1].umax > limit or high_value.umax > limit:
            return None
    elif signed and not (nonnegative(*low) and nonnegative(*high)):
        return None
    return LengthBound(high_bound.num, high_bound.den, high_bound.add - 1) if strict else high_bound


def narrowed(bound: LengthBound, value: Scalar) -> Scalar:
    """The value with the most the bound allows at any length (below MAX_LENGTH) as its umax:
    so that adding to it is known not to wrap (a loop counter's next value keeps its umin)."""
    cap = bound.num * MAX_LENGTH // bound.den + bound.add
    return value if value.umax <= cap else _capped(value, cap)


@functools.lru_cache(maxsize=1024)  # a loop's trips cap the same values again and again
def _capped(value: Scalar, cap: int) -> Scalar:
    try:
        return Scalar.from_range(value.smin, value.smax, value.umin, cap, value.s32_min, value.s32_max, value.u32_min,
                                 value.u32_max, var_off=value.var_off)
    except ValueError:  # no value is that small: the edge is never taken, and the value says no more
        return value


def inside_scaled(bound: LengthBound | None, value: Scalar, scale: int, shift: int, start: int, size: int,
                  least_length: int) -> bool:
    """Whether `size` bytes at offset start + scale * value + shift (value: a counter linked to
    the pointer, verifier/links.py; shift: any number) lie in the memory for every length at
    least least_length. As integers: the counter is between its umin and its bound (or umax)."""
    if start + scale * value.umin + shift < 0:
        return False
    if bound is None:
        return start + scale * value.umax + shift + size <= least_length
    scaled = _made(scale * bound.num, bound.den, scale * bound.add + shift)
    if scaled is None or scaled.num > scaled.den:
        return False
    return (scaled.den - scaled.num) * least_length >= (scaled.add + start + size) * scaled.den


def nonnegative(bound: LengthBound | None, value: Scalar) -> bool:
    """Whether the value is below 2**63 (not negative as a signed number): by its bounds, or by
    its length bound, as the length is below MAX_LENGTH."""
    return value.smin >= 0 or (bound is not None and bound.num * MAX_LENGTH + bound.add * bound.den < bound.den << 63)


def tighter(old: LengthBound | None, new: LengthBound | None) -> LengthBound | None:
    """Of two bounds that both hold, the one that is never looser (at any length); when they
    cross, the new one (a comparison's: what the program bounds its loop by)."""
    if old is None or new is None or old == new:
        return new if old is None else old
    if old.add <= new.add and _scale_le(old.num, old.den, new.num, new.den):
        return old
    return new


def implies(old: LengthBound | None, new: LengthBound | None, new_value: Scalar) -> bool:
    """Whether every value a register can hold in the new state keeps the old state's bound (so
    what the old state's paths proved with it holds): at every length, new's bound (or its
    umax) is at most old's."""
    if old is None or new_value.umax <= old.add:
        return True
    return new is not None and new.add <= old.add and _scale_le(new.num, new.den, old.num, old.den)


def join(old: tuple[LengthBound | None, Scalar], new: tuple[LengthBound | None, Scalar], least_length: int,
         may_grow: bool) -> LengthBound | None:
    """A bound both values keep at a loop head, for every length at least least_length (both
    paths proved that many bytes). It may be looser than old's only while may_grow (the
    widening rounds that stop at thresholds), so that a loop head's bound settles."""
    (old_bound, old_value), (new_bound, new_value) = old, new
    if old_bound is None and new_bound is None:
        return None
    bounds = (_upper(old_bound, old_value), _upper(new_bound, new_value))
    num, den = max(((n, d) for n, d, _ in bounds), key=lambda r: r[0] / r[1])
    for n, d, _ in bounds:  # the float picked the larger scale; make sure, exactly
        if not _scale_le(n, d, num, den):
            num, den = n, d
    # num / den * L + add is at least each bound at least_length, and grows at least as fast above it:
    # add >= b_add - (num / den - b_num / b_den) * least_length
    add = max(b_add - (num * b_den - b_num * den) * least_length // (den * b_den) for b_num, b_den, b_add in bounds)
    joined = _made(num, den, add)
    if joined is None or joined == old_bound or may_grow:
        return joined
    return old_bound if old_bound is not None and implies(old_bound, new_bound, new_value) else None


def least_length(bound: LengthBound | None, value: Scalar) -> int:
    """How long the memory must be for a value this bound holds to reach its umin: umin <= value
    <= num * L / den + add. (For the length itself, its umin.)"""
    if bound is None or value.umin <= bound.add:
        return 0
    return _ceil_div((value.umin - bound.add) * bound.den, bound.num)


def inside(bound: LengthBound | None, value: Scalar, start: int, size: int, least_length: int) -> bool:
    """Whether `size` bytes at offset start + value (value: a raw pointer's variable offset,
    start: its fixed offset and the instruction's) lie in the memory for every length at least
    least_length: start + value not negative, and start + num * L / den + add + size <= L."""
    if bound is None or bound.num > bound.den or not nonnegative(bound, value):
        return False
    if start + value.umin < 0:  # (the offset is not negative: its umin is its least signed value too)
        return False
    # (1 - num / den) * L is smallest at the least length
    return (bound.den - bound.num) * least_length >= (bound.add + start + size) * bound.den

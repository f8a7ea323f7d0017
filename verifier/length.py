"""Upper bounds relative to a raw program's length: what lets its length-bounded loops run unchecked.

A raw program's memory (r1) has a size only the run knows, its length L (r2 at entry). Its loops
are bounded by L or by values computed from it (``i < len / 2``, ``p < mem + len``), which no
constant bound holds, so without more each access in them would keep a run-time check. A
:class:`LengthBound` on a register says that its value, as an unsigned 64-bit number (for a
pointer into the raw memory, its variable offset), is at most ``scale * L + add`` on every run
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

from dataclasses import dataclass
from fractions import Fraction

from bpfjit import isa

from .scalar import MASK32, S32_MAX, Scalar

_USEFUL = 1 << 62  # a bound whose constant is beyond this says nothing an access could use
# More than any raw program's memory can be long: it is mapped memory, and x86-64 addresses have at
# most 57 bits (five-level paging). So is the memory's start address.
MAX_LENGTH = 1 << 57


@dataclass(frozen=True, slots=True)
class LengthBound:
    """value <= scale * L + add, for the run's length L (scale >= 0)."""
    scale: Fraction
    add: int

    def __str__(self) -> str:
        return f"{self.scale}*len{self.add:+d}"


LENGTH = LengthBound(Fraction(1), 0)  # the length itself (r2 at entry, and its copies)
_NONE_SCALE = Fraction(0)


def _upper(bound: LengthBound | None, value: Scalar) -> tuple[Fraction, int]:
    """The bound a value has: its own, else its umax (as 0 * L + umax)."""
    return (bound.scale, bound.add) if bound is not None else (_NONE_SCALE, value.umax)


def _made(scale: Fraction, add: int) -> LengthBound | None:
    """A bound, unless it is none at all (no part in L, or a constant no access could use)."""
    if scale <= 0 or add > _USEFUL or scale > _USEFUL:
        return None
    return LengthBound(scale, add)


def _ceil(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


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
    scale, add = dst_bound.scale, dst_bound.add
    if op == isa.MUL:
        return _made(scale * k, add * k)
    if op == isa.LSH and k < (64 if is64 else 32):
        return _made(scale * (1 << k), add * (1 << k))
    if op == isa.RSH and k < (64 if is64 else 32):
        return _made(scale / (1 << k), _ceil(Fraction(add, 1 << k)))
    if op == isa.DIV and not signed and k:
        return _made(scale / k, _ceil(Fraction(add, k)))
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
        return _made(dst_bound.scale, dst_bound.add + step)
    if op == isa.ADD:
        (a_scale, a_add), (b_scale, b_add) = _upper(dst_bound, dst_value), _upper(src_bound, src_value)
        return _made(a_scale + b_scale, a_add + b_add)
    if dst_bound is None:  # dst - src, with src never more than dst
        return None
    low, high = (dst_value.umin, src_value.umax) if is64 else (dst_value.u32_min, src_value.u32_max)
    if low < high:
        return None
    return _made(dst_bound.scale, dst_bound.add - (src_value.umin if is64 else src_value.u32_min))


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
    return _made(high_bound.scale, high_bound.add - (1 if strict else 0))


def narrowed(bound: LengthBound, value: Scalar) -> Scalar:
    """The value with the most the bound allows at any length (below MAX_LENGTH) as its umax:
    so that adding to it is known not to wrap (a loop counter's next value keeps its umin)."""
    cap = int(bound.scale * MAX_LENGTH) + bound.add
    if value.umax <= cap:
        return value
    try:
        return Scalar.from_range(value.smin, value.smax, value.umin, cap, value.s32_min, value.s32_max, value.u32_min,
                                 value.u32_max, var_off=value.var_off)
    except ValueError:  # no value is that small: the edge is never taken, and the value says no more
        return value


def nonnegative(bound: LengthBound | None, value: Scalar) -> bool:
    """Whether the value is below 2**63 (not negative as a signed number): by its bounds, or by
    its length bound, as the length is below MAX_LENGTH."""
    return value.smin >= 0 or (bound is not None and bound.scale * MAX_LENGTH + bound.add < 1 << 63)


def tighter(old: LengthBound | None, new: LengthBound | None) -> LengthBound | None:
    """Of two bounds that both hold, the one that is never looser (at any length); when they
    cross, the new one (a comparison's: what the program bounds its loop by)."""
    if old is None or new is None:
        return new if old is None else old
    if old.scale <= new.scale and old.add <= new.add:
        return old
    return new


def implies(old: LengthBound | None, new: LengthBound | None, new_value: Scalar) -> bool:
    """Whether every value a register can hold in the new state keeps the old state's bound (so
    what the old state's paths proved with it holds): at every length, new's bound (or its
    umax) is at most old's."""
    if old is None:
        return True
    if new_value.umax <= old.add:
        return True
    return new is not None and new.scale <= old.scale and new.add <= old.add


def join(old: tuple[LengthBound | None, Scalar], new: tuple[LengthBound | None, Scalar], least_length: int,
         may_grow: bool) -> LengthBound | None:
    """A bound both values keep at a loop head, for every length at least least_length (both
    paths proved that many bytes). It may be looser than old's only while may_grow (the
    widening rounds that stop at thresholds), so that a loop head's bound settles."""
    (old_bound, old_value), (new_bound, new_value) = old, new
    if old_bound is None and new_bound is None:
        return None
    bounds = (_upper(old_bound, old_value), _upper(new_bound, new_value))
    scale = max(scale for scale, _ in bounds)
    # scale * L + add is at least each bound at least_length, and grows at least as fast above it
    add = max(_ceil(b_add - (scale - b_scale) * least_length) for b_scale, b_add in bounds)
    joined = _made(scale, add)
    if joined is None or joined == old_bound or may_grow:
        return joined
    return old_bound if old_bound is not None and implies(old_bound, new_bound, new_value) else None


def least_length(bound: LengthBound | None, value: Scalar) -> int:
    """How long the memory must be for a value this bound holds to reach its umin: umin <= value
    <= scale * L + add. (For the length itself, its umin.)"""
    if bound is None or value.umin <= bound.add:
        return 0
    return _ceil((value.umin - bound.add) / bound.scale)


def inside(bound: LengthBound | None, value: Scalar, start: int, size: int, least_length: int) -> bool:
    """Whether `size` bytes at offset start + value (value: a raw pointer's variable offset,
    start: its fixed offset and the instruction's) lie in the memory for every length at least
    least_length: start + value not negative, and start + scale * L + add + size <= L."""
    if bound is None or bound.scale > 1 or not nonnegative(bound, value):
        return False
    if start + value.umin < 0:  # (the offset is not negative: its umin is its least signed value too)
        return False
    # (1 - scale) * L is smallest at the least length
    return (1 - bound.scale) * least_length >= bound.add + start + size

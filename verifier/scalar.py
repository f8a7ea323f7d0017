"""Scalar values as the verifier tracks them: a tnum plus signed and unsigned 64- and 32-bit bounds.

A :class:`Scalar` holds five views of the same set of values (the bits in ``var_off``, and the
s64, u64, s32 and u32 ranges). Every constructor and transfer function here ends with the Linux
6.12 verifier's ``reg_bounds_sync``, so each view has learnt what the others know (the one
exception is the kernel's own: see :func:`_finish`). The transfer
functions follow 6.12 (kernel/bpf/verifier.c: ``adjust_scalar_min_max_vals``, the
``coerce_*`` load and sign-extension helpers, ``is_scalar_branch_taken``,
``regs_refine_cond_op``, ``range_within``) and the log text follows kernel/bpf/log.c, because
the verifier's selftests compare both verdicts and log lines with the kernel's.

Transfer functions are written against :class:`_Reg`, a mutable working copy, because the
kernel's rules update the views one after another and later steps read what earlier ones wrote;
the result is frozen into a Scalar at the end.
"""
from __future__ import annotations

import functools

from collections.abc import Sequence
from dataclasses import dataclass, fields

from bpfjit import isa
from bpfjit.isa import MASK32, MASK64, Insn, s32, s64

from .tnum import UNKNOWN, Tnum, tnum_range
from .tnum import const as tconst

S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1
HIGH32 = MASK64 ^ MASK32


@dataclass(frozen=True, slots=True)
class Scalar:
    """A set of 64-bit values: every value whose bits match ``var_off`` and that lies in all four
    ranges (s64/u64 over the whole value, s32/u32 over its low 32 bits). Signed bounds are
    Python ints in their signed range, unsigned ones in their unsigned range."""

    var_off: Tnum
    smin: int
    smax: int
    umin: int
    umax: int
    s32_min: int
    s32_max: int
    u32_min: int
    u32_max: int

    @staticmethod
    def unknown() -> Scalar:
        return UNKNOWN_SCALAR

    @staticmethod
    def const(v: int) -> Scalar:
        """Exactly `v` (taken modulo 2**64)."""
        return _constant(v & MASK64)

    @staticmethod
    def from_range(smin: int = S64_MIN, smax: int = S64_MAX, umin: int = 0, umax: int = MASK64,
                   s32_min: int = S32_MIN, s32_max: int = S32_MAX, u32_min: int = 0,
                   u32_max: int = MASK32, var_off: Tnum = UNKNOWN) -> Scalar:
        """The values inside every given bound (each view then synchronised with the others);
        ValueError when no value can satisfy them all."""
        r = _Reg(Scalar(var_off, smin, smax, umin, umax, s32_min, s32_max, u32_min, u32_max))
        _sync(r)
        if _violation(r):
            raise ValueError(f"empty scalar range: {r.freeze()!r}")
        return r.freeze()

    @staticmethod
    def from_load(size_bytes: int, signed: bool) -> Scalar:
        """An unknown value loaded with a `size_bytes` load (sign-extending when `signed`)."""
        key = (size_bytes, signed)
        if key not in _LOADED:
            _LOADED[key] = (sign_extend if signed else truncate)(UNKNOWN_SCALAR, size_bytes)
        return _LOADED[key]

    @property
    def is_const(self) -> bool:
        return self.var_off.is_const

    @property
    def const_value(self) -> int:
        """The unsigned 64-bit value of a constant (check :attr:`is_const` first)."""
        return self.var_off.value

    @property
    def is_const32(self) -> bool:
        return self.var_off.subreg_is_const

    @property
    def const32_value(self) -> int:
        """The unsigned low 32 bits of a constant subregister (check :attr:`is_const32` first)."""
        return self.var_off.value & MASK32

    def __str__(self) -> str:
        return format_scalar(self)


_FIELDS = tuple(f.name for f in fields(Scalar))


_LOADED: dict[tuple[int, bool], Scalar] = {}  # Scalar.from_load's answers


@functools.lru_cache(maxsize=4096)  # scalars are immutable, and programs use few distinct constants
def _constant(v: int) -> Scalar:
    low = v & MASK32
    return Scalar(tconst(v), s64(v), s64(v), v, v, s32(low), s32(low), low, low)


class _Reg:
    """A Scalar under computation (the kernel's ``bpf_reg_state`` scalar part, mutable)."""

    __slots__ = _FIELDS

    def __init__(self, s: Scalar) -> None:
        for name in _FIELDS:
            setattr(self, name, getattr(s, name))

    def freeze(self) -> Scalar:
        return Scalar(*(getattr(self, name) for name in _FIELDS))


class _Width:
    """One of the two widths the kernel tracks twice (64-bit and 32-bit subregister): which bound
    fields belong to it and how its values wrap, so each twin rule is written once."""

    def __init__(self, bits: int, names: tuple[str, str, str, str]) -> None:
        self.bits = bits
        self.umask = (1 << bits) - 1
        self.smin_all, self.smax_all = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        self.smin, self.smax, self.umin, self.umax = names

    def view(self, t: Tnum) -> Tnum:
        return t if self.bits == 64 else t.subreg()

    def signed(self, v: int) -> int:
        return isa.sign_extend(v, self.bits)

    def get(self, r: _Reg | Scalar) -> tuple[int, int, int, int]:
        return getattr(r, self.smin), getattr(r, self.smax), getattr(r, self.umin), getattr(r, self.umax)

    def set_s(self, r: _Reg, lo: int, hi: int) -> None:
        setattr(r, self.smin, lo)
        setattr(r, self.smax, hi)

    def set_u(self, r: _Reg, lo: int, hi: int) -> None:
        setattr(r, self.umin, lo)
        setattr(r, self.umax, hi)

    def unbound(self, r: _Reg) -> None:
        self.set_s(r, self.smin_all, self.smax_all)
        self.set_u(r, 0, self.umask)

    def mark_known(self, r: _Reg, v: int) -> None:
        (_mark_known if self.bits == 64 else _mark32_known)(r, v)

    def signed_from_unsigned(self, r: _Reg) -> None:
        """Signed bounds from the unsigned ones when they do not cross the sign boundary."""
        _, _, ulo, uhi = self.get(r)
        if self.signed(ulo) <= self.signed(uhi):
            self.set_s(r, self.signed(ulo), self.signed(uhi))
        else:
            self.set_s(r, self.smin_all, self.smax_all)


W64 = _Width(64, ("smin", "smax", "umin", "umax"))
W32 = _Width(32, ("s32_min", "s32_max", "u32_min", "u32_max"))


# --- the kernel's bounds bookkeeping ------------------------------------------------------------
def _mark_known(r: _Reg, v: int) -> None:
    r.var_off = tconst(v)
    r.smin = r.smax = s64(v)
    r.umin = r.umax = v & MASK64
    r.s32_min = r.s32_max = s32(v)
    r.u32_min = r.u32_max = v & MASK32


def _mark32_known(r: _Reg, v: int) -> None:
    r.var_off = r.var_off.const_subreg(v)
    r.s32_min = r.s32_max = s32(v)
    r.u32_min = r.u32_max = v & MASK32


def _update_bounds(r: _Reg) -> None:
    """Tighten every range with what the tnum says (``__update_reg_bounds``)."""
    t = r.var_off.subreg()
    r.s32_min = max(r.s32_min, s32(t.value | (t.mask & 0x80000000)))
    r.s32_max = min(r.s32_max, s32(t.value | (t.mask & 0x7FFFFFFF)))
    r.u32_min = max(r.u32_min, t.value)
    r.u32_max = min(r.u32_max, t.value | t.mask)
    t = r.var_off
    r.smin = max(r.smin, s64(t.value | (t.mask & (1 << 63))))
    r.smax = min(r.smax, s64(t.value | (t.mask & S64_MAX)))
    r.umin = max(r.umin, t.value)
    r.umax = min(r.umax, t.value | t.mask)


def _deduce32(r: _Reg) -> None:
    """32-bit bounds from the 64-bit ones, then s32 and u32 from each other."""
    if r.umin >> 32 == r.umax >> 32:  # the high half is fixed: the low halves form a range
        r.u32_min = max(r.u32_min, r.umin & MASK32)
        r.u32_max = min(r.u32_max, r.umax & MASK32)
        if s32(r.umin) <= s32(r.umax):
            r.s32_min, r.s32_max = max(r.s32_min, s32(r.umin)), min(r.s32_max, s32(r.umax))
    if r.smin >> 32 == r.smax >> 32:
        if r.smin & MASK32 <= r.smax & MASK32:
            r.u32_min = max(r.u32_min, r.smin & MASK32)
            r.u32_max = min(r.u32_max, r.smax & MASK32)
        if s32(r.smin) <= s32(r.smax):
            r.s32_min, r.s32_max = max(r.s32_min, s32(r.smin)), min(r.s32_max, s32(r.smax))
    # high halves n and n+1 with the low halves running from negative to non-negative: still
    # one s32 range
    for lo, hi in ((r.umin, r.umax), (r.smin, r.smax)):
        if ((lo >> 32) + 1) & MASK32 == (hi >> 32) & MASK32 and s32(lo) < 0 <= s32(hi):
            r.s32_min, r.s32_max = max(r.s32_min, s32(lo)), min(r.s32_max, s32(hi))
    if s32(r.u32_min) <= s32(r.u32_max):
        r.s32_min, r.s32_max = max(r.s32_min, s32(r.u32_min)), min(r.s32_max, s32(r.u32_max))
    if r.s32_min & MASK32 <= r.s32_max & MASK32:
        r.u32_min = max(r.u32_min, r.s32_min & MASK32)
        r.u32_max = min(r.u32_max, r.s32_max & MASK32)
    elif r.u32_max < r.s32_min & MASK32:  # u32 range meets only the non-negative s32 part
        r.s32_min = s32(r.u32_min)
        r.u32_max = min(r.u32_max, r.s32_max & MASK32)
    elif r.s32_max & MASK32 < r.u32_min:  # ... only the negative part
        r.s32_max = s32(r.u32_max)
        r.u32_min = max(r.u32_min, r.s32_min & MASK32)


def _deduce64(r: _Reg) -> None:
    """s64 and u64 bounds from each other (the same rule as the 32-bit tail of _deduce32)."""
    if s64(r.umin) <= s64(r.umax):
        r.smin, r.smax = max(r.smin, s64(r.umin)), min(r.smax, s64(r.umax))
    if r.smin & MASK64 <= r.smax & MASK64:
        r.umin, r.umax = max(r.umin, r.smin & MASK64), min(r.umax, r.smax & MASK64)
    elif r.umax < r.smin & MASK64:
        r.smin = s64(r.umin)
        r.umax = min(r.umax, r.smax & MASK64)
    elif r.smax & MASK64 < r.umin:
        r.smax = s64(r.umax)
        r.umin = max(r.umin, r.smin & MASK64)


def _deduce_mixed(r: _Reg) -> None:
    """64-bit bounds from the 32-bit ones: put the low-half bounds under each 64-bit bound."""
    lows = [(r.u32_min, r.u32_max)]
    if r.s32_min & MASK32 <= r.s32_max & MASK32:
        lows.append((r.s32_min & MASK32, r.s32_max & MASK32))
    for lo, hi in lows:
        r.umin = max(r.umin, (r.umin & HIGH32) | lo)
        r.umax = min(r.umax, (r.umax & HIGH32) | hi)
        r.smin = max(r.smin, s64((r.smin & HIGH32) | lo))
        r.smax = min(r.smax, s64((r.smax & HIGH32) | hi))
    # a value in [S32_MIN, S32_MAX] whose low half is non-negative as s32 is that low half
    if r.s32_min >= 0 and r.smin >= S32_MIN and r.smax <= S32_MAX:
        r.smin, r.smax = r.s32_min, r.s32_max
        r.umin, r.umax = r.s32_min, r.s32_max
        r.var_off = r.var_off.intersect(tnum_range(r.smin, r.smax))


def _bound_offset(r: _Reg) -> None:
    """Learn tnum bits from the unsigned ranges (``__reg_bound_offset``)."""
    t64 = r.var_off.intersect(tnum_range(r.umin, r.umax))
    t32 = t64.subreg().intersect(tnum_range(r.u32_min, r.u32_max))
    r.var_off = t64.clear_subreg().or_(t32)


def _sync(r: _Reg) -> None:
    """``reg_bounds_sync``: tnum to ranges, ranges to each other (three rounds), ranges to tnum,
    and the tnum's improvement back to the ranges."""
    v = r.var_off.value
    if not r.var_off.mask and r.umin <= v <= r.umax and r.smin <= s64(v) <= r.smax \
            and r.u32_min <= v & MASK32 <= r.u32_max and r.s32_min <= s32(v) <= r.s32_max:
        _mark_known(r, v)  # a known value inside every range: all of them narrow to it
        return
    _update_bounds(r)
    for _ in range(3):
        before = (r.smin, r.smax, r.umin, r.umax, r.s32_min, r.s32_max, r.u32_min, r.u32_max, r.var_off)
        _deduce32(r)
        _deduce64(r)
        _deduce_mixed(r)
        if (r.smin, r.smax, r.umin, r.umax, r.s32_min, r.s32_max, r.u32_min, r.u32_max, r.var_off) == before:
            break  # a fixed point: further rounds change nothing
    _bound_offset(r)
    _update_bounds(r)


def _violation(r: _Reg) -> str | None:
    """What the kernel's ``reg_bounds_sanity_check`` finds wrong: an empty range, or a constant
    tnum its ranges disagree with; None when nothing is."""
    if r.umin > r.umax or r.smin > r.smax or r.u32_min > r.u32_max or r.s32_min > r.s32_max:
        return "range bounds violation"
    v = r.var_off.value
    if r.var_off.is_const and not (r.umin == r.umax == v and r.smin == r.smax == s64(v)):
        return "const tnum out of sync with range bounds"
    if r.var_off.subreg_is_const and not (r.u32_min == r.u32_max == v & MASK32
                                          and r.s32_min == r.s32_max == s32(v)):
        return "const subreg tnum out of sync with range bounds"
    return None


def _finish(r: _Reg, where: str = "", log: list[str] | None = None) -> Scalar:
    """Freeze a synced register. Where the kernel's sanity check fails, it logs the register (the
    line is appended to `log`, `where` naming it as the kernel does), forgets the ranges and keeps
    the tnum, unsynced; so do we (the one state here whose views have not learnt from each
    other, as in the kernel, whose later operations start from it)."""
    problem = _violation(r)
    if problem:
        if log is not None:
            log.append(f"REG INVARIANTS VIOLATION ({where}): {problem} u64=[{r.umin:#x}, {r.umax:#x}] "
                       f"s64=[{r.smin & MASK64:#x}, {r.smax & MASK64:#x}] u32=[{r.u32_min:#x}, "
                       f"{r.u32_max:#x}] s32=[{r.s32_min & MASK32:#x}, {r.s32_max & MASK32:#x}] "
                       f"var_off=({r.var_off.value:#x}, {r.var_off.mask:#x})")
        W64.unbound(r)
        W32.unbound(r)
    return r.freeze()


def _zext(r: _Reg) -> None:
    """An ALU32 result: the subregister, zero-extended (``zext_32_to_64``)."""
    r.var_off = r.var_off.subreg()
    r.umin, r.umax = r.u32_min, r.u32_max
    if 0 <= r.s32_min and 0 <= r.s32_max:
        r.smin, r.smax = r.s32_min, r.s32_max
    else:
        r.smin, r.smax = 0, MASK32


# --- loads and sign extension -------------------------------------------------------------------
def truncate(s: Scalar, size_bytes: int) -> Scalar:
    """The value of `s` after a zero-extending load or move of `size_bytes` (``coerce_reg_to_size``)."""
    if size_bytes >= 8:
        return s
    r = _Reg(s)
    r.var_off = r.var_off.cast(size_bytes)
    keep = (1 << (size_bytes * 8)) - 1
    if r.umin & ~keep == r.umax & ~keep:
        r.umin, r.umax = r.umin & keep, r.umax & keep
    else:
        r.umin, r.umax = 0, keep
    r.smin, r.smax = r.umin, r.umax
    if size_bytes < 4:
        W32.unbound(r)
    _sync(r)
    return _finish(r)


def _sign_extend_range(r: _Reg, w: _Width, bits: int) -> tuple[int, int] | None:
    """The sign-extended range of the low `bits` bits when the width-`w` signed range keeps its
    upper bits fixed and its ends stay on one side of zero after extension; else None."""
    lo, hi = getattr(r, w.smin) & w.umask, getattr(r, w.smax) & w.umask
    if lo >> bits != hi >> bits:
        return None
    a, b = isa.sign_extend(lo, bits), isa.sign_extend(hi, bits)
    lo, hi = min(a, b), max(a, b)
    return (lo, hi) if (lo >= 0) == (hi >= 0) else None


def _sext(r: _Reg, size_bytes: int, w: _Width) -> None:
    """Sign-extend the low `size_bytes` bytes to the width `w`: 6.12's ``coerce_reg_to_size_sx``
    (W64) and ``coerce_subreg_to_size_sx`` (W32, whose 64-bit view the zero extension that
    follows replaces)."""
    bits = size_bytes * 8
    if r.var_off.is_const:
        v = isa.sign_extend(r.var_off.value, bits)
        if w is W64:
            _mark_known(r, v)
        else:
            r.var_off = tconst(v)
            r.s32_min = r.s32_max = v
            r.u32_min = r.u32_max = v & MASK32
        return
    extended = _sign_extend_range(r, w, bits)
    lo, hi = extended or (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    r.s32_min, r.s32_max = lo, hi
    r.u32_min, r.u32_max = (lo & MASK32, hi & MASK32) if extended else (0, MASK32)
    t = tnum_range(lo, hi) if extended else UNKNOWN
    if w is W64:
        r.smin, r.smax = lo, hi
        r.umin, r.umax = (lo & MASK64, hi & MASK64) if extended else (0, MASK64)
        r.var_off = t
    else:
        r.var_off = t.subreg()


def sign_extend(s: Scalar, size_bytes: int) -> Scalar:
    """The value of `s` after a sign-extending load (or 64-bit movsx) of `size_bytes`."""
    if size_bytes >= 8:
        return s
    r = _Reg(s)
    _sext(r, size_bytes, W64)
    _sync(r)
    return _finish(r)


# --- ALU ----------------------------------------------------------------------------------------
def _imm_operand(insn: Insn) -> Scalar:
    """The kernel's stand-in register for an immediate: imm sign-extended to 64 bits."""
    return Scalar.const(s32(insn.imm))


# Results of alu and refine by their operands: a path through a loop or along many branches
# computes the same operations on the same values again and again, and a Scalar is immutable.
_MEMO_LIMIT = 1 << 16
_alu_memo: dict = {}
_refine_memo: dict = {}


def _memo(table: dict, key: tuple, compute):
    found = table.get(key)
    if found is None:
        if len(table) >= _MEMO_LIMIT:
            table.clear()
        found = table[key] = compute()
    return found


def alu(insn: Insn, dst: Scalar, src: Scalar | None = None, log: list[str] | None = None) -> Scalar:
    """The new dst of a scalar ALU/ALU64 instruction; see :func:`_alu`. Without a `log` to
    write to, results are remembered by their operands."""
    if log is not None:
        return _alu(insn, dst, src, log)
    return _memo(_alu_memo, (insn, dst, None if insn.source == isa.K else src), lambda: _alu(insn, dst, src, None))


def _alu(insn: Insn, dst: Scalar, src: Scalar | None, log: list[str] | None) -> Scalar:
    """The new dst of a scalar ALU/ALU64 instruction (6.12 ``check_alu_op`` for scalars).

    For BPF_K the operand is taken from ``insn.imm`` as the kernel takes it (sign-extended, also
    for ALU32; only its low half matters there) and `src` is ignored, so None may be passed. NEG
    and the divisions give an unknown 64-bit value, as does a shift whose amount is not a
    known constant below the width: 6.12 does not track them, nor zero-extends them. A byte swap
keeps its width (``_byte_swap``). A kernel
    "REG INVARIANTS VIOLATION" line, should one arise, is appended to `log`.
    """
    alu64 = insn.cls == isa.ALU64
    if insn.source == isa.K:
        src = _imm_operand(insn)
    op = insn.op
    if op == isa.MOV:
        return _mov(insn, src, alu64)  # consistent by construction: nothing to log
    if op == isa.END:
        return _byte_swap(insn)
    if op == isa.NEG or not _computable(op, src, W64 if alu64 else W32):
        return UNKNOWN_SCALAR
    known = _known_result(op, dst, src, 64 if alu64 else 32)
    if known is not None:
        return Scalar.const(known)
    r = _Reg(dst)
    if op in _TRACKED:
        tnum_op, bounds = _TRACKED[op]
        r.var_off = tnum_op(r.var_off, src.var_off)  # the bitwise bounds read the new tnum
        bounds(op, r, src, W32)
        bounds(op, r, src, W64)
    else:
        _shift(op, r, src, W64 if alu64 else W32)
    if not alu64:
        _zext(r)
    _sync(r)
    return _finish(r, "alu", log)


def _byte_swap(insn: Insn) -> Scalar:
    """A byte swap's (or le conversion's) result: an unknown value of its width, zero-extended.
    6.12 forgets even the width; newer kernels keep it (a be16 of a packet field is at most
    0xffff), and real programs bound packet offsets that way."""
    width = insn.imm // 8
    return UNKNOWN_SCALAR if width >= 8 else truncate(UNKNOWN_SCALAR, width)


def _known_result(op: int, dst: Scalar, src: Scalar, bits: int) -> int | None:
    """The value of a tracked operation on two known operands (None unless both are known):
    the tracking would reach the same constant, only slower. A 32-bit result is zero-extended."""
    view = (lambda t: t) if bits == 64 else Tnum.subreg
    if view(dst.var_off).mask or view(src.var_off).mask:
        return None
    mask = MASK64 if bits == 64 else MASK32
    d, v = dst.var_off.value & mask, src.var_off.value & mask
    if op in (isa.LSH, isa.RSH, isa.ARSH):
        if v >= bits:
            return None  # not tracked: the result is unknown (_computable)
        if op == isa.LSH:
            return (d << v) & mask
        if op == isa.RSH:
            return d >> v
        return (isa.sign_extend(d, bits) >> v) & mask
    operation = _KNOWN_OPS.get(op)
    return None if operation is None else operation(d, v) & mask


_KNOWN_OPS = {isa.ADD: int.__add__, isa.SUB: int.__sub__, isa.MUL: int.__mul__, isa.AND: int.__and__,
              isa.OR: int.__or__, isa.XOR: int.__xor__}


def _computable(op: int, src: Scalar, w: _Width) -> bool:
    """``is_safe_to_compute_dst_reg_range``: which results 6.12 tracks."""
    if op in _TRACKED:
        return True
    if op not in (isa.LSH, isa.RSH, isa.ARSH):
        return False
    smin, smax, umin, umax = w.get(src)
    is_const = w.view(src.var_off).is_const and smin == smax and umin == umax
    return is_const and src.umax < w.bits


def _mov(insn: Insn, src: Scalar, alu64: bool) -> Scalar:
    if insn.source == isa.K:
        return src if alu64 else Scalar.const(src.var_off.value & MASK32)
    if alu64:
        return sign_extend(src, insn.off // 8) if insn.is_movsx else src
    r = _Reg(src)
    if insn.off in (8, 16):
        _sext(r, insn.off // 8, W32)
    _zext(r)
    _sync(r)
    return _finish(r)


def _add_sub(op: int, d: _Reg, s: Scalar, w: _Width) -> None:
    """ADD/SUB bounds: the ends combined, or the whole width where a sum or difference may wrap."""
    dsl, dsh, dul, duh = w.get(d)
    ssl, ssh, sul, suh = w.get(s)
    if op == isa.ADD:
        slo, shi, ulo, uhi, wraps = dsl + ssl, dsh + ssh, dul + sul, duh + suh, duh + suh > w.umask
    else:
        slo, shi, ulo, uhi, wraps = dsl - ssh, dsh - ssl, dul - suh, duh - sul, dul < suh
    if w.smin_all <= slo and shi <= w.smax_all:
        w.set_s(d, slo, shi)
    else:
        w.set_s(d, w.smin_all, w.smax_all)
    w.set_u(d, *((0, w.umask) if wraps else (ulo, uhi)))


def _mul(op: int, d: _Reg, s: Scalar, w: _Width) -> None:
    """Tracked only for non-negative operands small enough that the product cannot wrap."""
    dsl, _, dul, duh = w.get(d)
    ssl, _, sul, suh = w.get(s)
    half = (1 << (w.bits // 2)) - 1
    if ssl < 0 or dsl < 0 or suh > half or duh > half:
        w.unbound(d)
        return
    lo, hi = dul * sul, duh * suh
    w.set_u(d, lo, hi)
    w.set_s(d, *((lo, hi) if hi <= w.smax_all else (w.smin_all, w.smax_all)))


def _bitwise(op: int, d: _Reg, s: Scalar, w: _Width) -> None:
    """AND/OR/XOR bounds, once ``d.var_off`` holds the result's tnum: constant when both operands
    are; else unsigned bounds from the tnum (AND's maximum also from the operands' maxima, OR's
    minimum from their minima) and signed ones from those."""
    t = w.view(d.var_off)
    if w.view(s.var_off).is_const and t.is_const:
        w.mark_known(d, t.value)
        return
    _, _, dlo, dhi = w.get(d)
    _, _, slo, shi = w.get(s)
    if op == isa.AND:
        w.set_u(d, t.value, min(dhi, shi))
    elif op == isa.OR:
        w.set_u(d, max(dlo, slo), t.value | t.mask)
    else:
        w.set_u(d, t.value, t.value | t.mask)
    w.signed_from_unsigned(d)
    if w is W64:
        _update_bounds(d)


_TRACKED = {  # the operations whose result 6.12 tracks for any operand: (tnum op, bounds rule)
    isa.ADD: (Tnum.add, _add_sub), isa.SUB: (Tnum.sub, _add_sub), isa.MUL: (Tnum.mul, _mul),
    isa.AND: (Tnum.and_, _bitwise), isa.OR: (Tnum.or_, _bitwise), isa.XOR: (Tnum.xor, _bitwise),
}


def _lsh_unsigned(d: _Reg, lo: int, hi: int, w: _Width) -> None:
    """Shift the unsigned bounds left unless the top bit could be shifted out."""
    if hi > w.bits - 1 or getattr(d, w.umax) > 1 << (w.bits - 1 - hi):
        w.set_u(d, 0, w.umask)
    else:
        w.set_u(d, (getattr(d, w.umin) << lo) & w.umask, (getattr(d, w.umax) << hi) & w.umask)


def _shift(op: int, d: _Reg, s: Scalar, w: _Width) -> None:
    """LSH/RSH/ARSH of `d` by the constant `s` at width `w` (the other width's bounds are left
    for the tnum to recompute)."""
    _, _, lo, hi = w.get(s)  # lo == hi: the amount is a known constant
    other = W32 if w is W64 else W64
    if op == isa.LSH:
        if w is W64:
            if lo == hi == 32:  # the <<32 s>>32 sign-extension idiom keeps the s32 range
                d.smin, d.smax = d.s32_min << 32, d.s32_max << 32
            else:
                W64.set_s(d, S64_MIN, S64_MAX)
            _lsh_unsigned(d, lo, hi, W64)
        W32.set_s(d, S32_MIN, S32_MAX)
        _lsh_unsigned(d, lo, hi, W32)
        if w is W64:
            d.var_off = d.var_off.lshift(lo)
        else:
            d.var_off = d.var_off.subreg().lshift(lo).subreg()
            W64.unbound(d)
    elif op == isa.RSH:
        w.set_s(d, w.smin_all, w.smax_all)
        d.var_off = w.view(d.var_off).rshift(lo)
        ulo, uhi = getattr(d, w.umin), getattr(d, w.umax)
        w.set_u(d, ulo >> hi, uhi >> lo)
        other.unbound(d)
    else:
        smin, smax, _, _ = w.get(d)
        w.set_s(d, smin >> lo, smax >> lo)
        d.var_off = w.view(d.var_off).arshift(lo, w.bits)
        w.set_u(d, 0, w.umask)
        other.unbound(d)
    _update_bounds(d)


def bitwise_fork(insn: Insn, dst: Scalar, src: Scalar | None = None) -> tuple[Scalar, Scalar] | None:
    """6.12's ``maybe_fork_scalars``: before AND/OR with a constant operand, a dst known to be
    in [-1, 0] (as s64, else as s32) is split in two. Returns (dst on this path: -1, dst on a
    new branch that re-runs the same instruction: 0), or None when the kernel does not split.
    (The kernel leaves the 64-bit bounds of a 32-bit split unsynced; these are synced.)"""
    if insn.op not in (isa.AND, isa.OR):
        return None
    operand = _imm_operand(insn) if insn.source == isa.K else src
    if not operand.var_off.is_const:
        return None
    if dst.smin == -1 and dst.smax == 0:
        return Scalar.const(-1), Scalar.const(0)
    if dst.s32_min == -1 and dst.s32_max == 0:
        return _with_subreg_const(dst, -1), _with_subreg_const(dst, 0)
    return None


def _with_subreg_const(s: Scalar, v: int) -> Scalar:
    r = _Reg(s)
    _mark32_known(r, v)
    _sync(r)
    return _finish(r)


# --- conditional jumps --------------------------------------------------------------------------
_SIGNED_ORDER = frozenset({isa.JSGT, isa.JSLT, isa.JSGE, isa.JSLE})
_GREATER = frozenset({isa.JGT, isa.JSGT, isa.JGE, isa.JSGE})
_STRICT = frozenset({isa.JGT, isa.JSGT, isa.JLT, isa.JSLT})


def _taken(a: Scalar, b: Scalar, op: int, jmp32: bool) -> bool | None:
    """``is_scalar_branch_taken``."""
    w = W32 if jmp32 else W64
    (t1, (smin1, smax1, umin1, umax1)), (t2, (smin2, smax2, umin2, umax2)) = \
        (w.view(a.var_off), w.get(a)), (w.view(b.var_off), w.get(b))
    if op in (isa.JEQ, isa.JNE):
        equal: bool | None = None
        if t1.is_const and t2.is_const:
            equal = t1.value == t2.value
        elif (not t1.overlaps(t2) or umin1 > umax2 or umax1 < umin2 or smin1 > smax2 or smax1 < smin2
              or not jmp32 and (a.u32_min > b.u32_max or a.u32_max < b.u32_min
                                or a.s32_min > b.s32_max or a.s32_max < b.s32_min)):
            equal = False
        return equal if equal is None or op == isa.JEQ else not equal
    if op == isa.JSET:
        if not t2.is_const:
            t1, t2 = t2, t1
        if not t2.is_const:
            return None
        if t1.value & t2.value:
            return True
        return False if not (t1.mask | t1.value) & t2.value else None
    if op in _SIGNED_ORDER:
        lo1, hi1, lo2, hi2 = smin1, smax1, smin2, smax2
    else:
        lo1, hi1, lo2, hi2 = umin1, umax1, umin2, umax2
    if op in _GREATER:  # a > b (strict) or a >= b: swapped, b < a or b <= a
        lo1, hi1, lo2, hi2 = lo2, hi2, lo1, hi1
    if op in _STRICT:  # a < b
        return True if hi1 < lo2 else False if lo1 >= hi2 else None
    return True if hi1 <= lo2 else False if lo1 > hi2 else None  # a <= b


def branch_taken(insn: Insn, dst: Scalar, src: Scalar | None = None) -> bool | None:
    """Whether a conditional JMP/JMP32 between scalars is always taken (True), never (False) or
    either (None). For BPF_K the operand is ``insn.imm`` sign-extended and `src` is ignored."""
    if insn.source == isa.K:
        src = _imm_operand(insn)
    return _taken(dst, src, insn.op, insn.cls == isa.JMP32)


_FLIP = {isa.JGE: isa.JLE, isa.JGT: isa.JLT, isa.JSGE: isa.JSLE, isa.JSGT: isa.JSLT}
_REVERSE = {isa.JEQ: isa.JNE, isa.JNE: isa.JEQ, isa.JGE: isa.JLT, isa.JGT: isa.JLE, isa.JLE: isa.JGT,
            isa.JLT: isa.JGE, isa.JSGE: isa.JSLT, isa.JSGT: isa.JSLE, isa.JSLE: isa.JSGT,
            isa.JSLT: isa.JSGE, isa.JSET: -1}
_NOT_JSET = _REVERSE[isa.JSET]  # the fall-through of JSET (the kernel spells it JSET|X)


def refine(insn: Insn, dst: Scalar, src: Scalar | None, taken: bool, *, same_register: bool = False,
           log: list[str] | None = None) -> tuple[Scalar, Scalar] | None:
    """See :func:`_refine_edge`; without a `log` to write to, results are remembered by their operands."""
    if log is not None:
        return _refine_edge(insn, dst, src, taken, same_register, log)
    key = (insn, dst, None if insn.source == isa.K else src, taken, same_register)
    found = _memo(_refine_memo, key, lambda: _refine_edge(insn, dst, src, taken, same_register, None) or ())
    return found or None


def _refine_edge(insn: Insn, dst: Scalar, src: Scalar | None, taken: bool, same_register: bool,
                 log: list[str] | None) -> tuple[Scalar, Scalar] | None:
    """(dst, src) on the taken (or fall-through) edge of a conditional jump, or None when
    :func:`branch_taken` rules that edge out. Like the kernel, a decided jump refines nothing and
    an undecided one refines both operands (``reg_set_min_max``). For BPF_K, `src` is ignored and
    the second result is the refined immediate. `same_register` is for ``if rX op rX``, where the
    kernel refines one register through both operands. An impossible edge the kernel cannot rule
    out may leave empty ranges: then, like the kernel, the ranges are reset and its "REG
    INVARIANTS VIOLATION" line is appended to `log`."""
    if insn.source == isa.K:
        src = _imm_operand(insn)
    jmp32 = insn.cls == isa.JMP32
    decided = _taken(dst, src, insn.op, jmp32)
    if decided is not None:
        return (dst, src) if decided == taken else None
    op = insn.op if taken else _REVERSE[insn.op]
    r1 = _Reg(dst)
    r2 = r1 if same_register else _Reg(src)
    _refine(r1, r2, op, jmp32)
    for r in (r1, r2):
        _sync(r)
    edge = "true" if taken else "false"
    return _finish(r1, f"{edge}_reg1", log), _finish(r2, f"{edge}_reg2", log)


def _refine(r1: _Reg, r2: _Reg, op: int, jmp32: bool) -> None:
    """``regs_refine_cond_op``: narrow both operands to the values where `op` holds."""
    if op in _FLIP:
        op, r1, r2 = _FLIP[op], r2, r1
    w = W32 if jmp32 else W64
    if op == isa.JEQ:
        if jmp32:
            t = r1.var_off.subreg().intersect(r2.var_off.subreg())
            r1.var_off, r2.var_off = r1.var_off.with_subreg(t), r2.var_off.with_subreg(t)
        else:
            r1.var_off = r2.var_off = r1.var_off.intersect(r2.var_off)
        smin1, smax1, umin1, umax1 = w.get(r1)
        smin2, smax2, umin2, umax2 = w.get(r2)
        for r in (r1, r2):
            w.set_u(r, max(umin1, umin2), min(umax1, umax2))
            w.set_s(r, max(smin1, smin2), min(smax1, smax2))
        return
    if op in (isa.JNE, isa.JSET, _NOT_JSET):
        if not w.view(r2.var_off).is_const:
            r1, r2 = r2, r1
        if not w.view(r2.var_off).is_const:
            return
        val = w.view(r2.var_off).value
        if op == isa.JNE:  # a constant at the edge of a range moves the edge by one
            smin, smax, umin, umax = w.get(r1)
            w.set_u(r1, (umin + (umin == val)) & w.umask, (umax - (umax == val)) & w.umask)
            sval = w.signed(val)
            w.set_s(r1, w.signed(smin + (smin == sval)), w.signed(smax - (smax == sval)))
        elif op == isa.JSET:  # learnt only when a single bit is tested
            if val and not val & (val - 1):
                r1.var_off = r1.var_off.with_subreg(r1.var_off.subreg().or_(tconst(val))) if jmp32 \
                    else r1.var_off.or_(tconst(val))
        else:  # none of the tested bits is set; the ranges are dropped first, as the kernel does
            W64.unbound(r1)
            W32.unbound(r1)
            r1.var_off = r1.var_off.with_subreg(r1.var_off.subreg().and_(tconst(~val))) if jmp32 \
                else r1.var_off.and_(tconst(~val))
        return
    # JLE, JLT, JSLE, JSLT: r1 <= r2 (or <)
    strict = op in (isa.JLT, isa.JSLT)
    if op in (isa.JLE, isa.JLT):
        hi_name, lo_name, wrap = w.umax, w.umin, lambda v: v & w.umask
    else:
        hi_name, lo_name, wrap = w.smax, w.smin, w.signed
    setattr(r1, hi_name, min(getattr(r1, hi_name), wrap(getattr(r2, hi_name) - strict)))
    setattr(r2, lo_name, max(wrap(getattr(r1, lo_name) + strict), getattr(r2, lo_name)))


# --- pruning ------------------------------------------------------------------------------------
def is_subset(old: Scalar, new: Scalar) -> bool:
    """Every value of `new` is a value of `old` as the kernel judges it for pruning: each range of
    `new` inside the same range of `old` (``range_within``) and ``tnum_in``."""
    return (old.umin <= new.umin and new.umax <= old.umax and old.smin <= new.smin
            and new.smax <= old.smax and old.u32_min <= new.u32_min and new.u32_max <= old.u32_max
            and old.s32_min <= new.s32_min and new.s32_max <= old.s32_max
            and old.var_off.contains(new.var_off))


@functools.lru_cache(maxsize=4096)
def synced(value: Scalar) -> Scalar:
    """The same set of values with each view tightened by the others (``reg_bounds_sync``). A
    scalar is kept unsynced only after the kernel's invariant check reset its ranges on an edge
    that cannot be taken (:func:`_finish`): its tnum may then say more than its ranges."""
    r = _Reg(value)
    _sync(r)
    return value if _violation(r) else r.freeze()


# --- log text -----------------------------------------------------------------------------------
def format_number(v: int, signed: bool) -> str:
    """The log's numbers: decimal when small (s16 range, or u16 for unsigned), else hex of the
    64-bit pattern (``verbose_snum`` / ``verbose_unum``)."""
    if signed:
        v = s64(v)
        return str(v) if -0x8000 <= v <= 0x7FFF else f"{v & MASK64:#x}"
    return str(v) if v <= 0xFFFF else f"{v:#x}"


def format_scalar(s: Scalar, attrs: Sequence[str] = ()) -> str:
    """The log text of a scalar register: a constant as a number, else ``scalar(...)`` with the
    bounds that are not at their extremes, equal bounds of one kind (min or max) and sign merged
    as ``smax=umax=...``, and the tnum unless it is unknown. `attrs` come first inside the
    parentheses (``id=2``), as the kernel prints them."""
    if s.is_const:
        return format_number(s.const_value, True)

    def s32_shown(v: int) -> int:  # hex s32 bounds are printed as u32, not sign-extended
        return v & MASK64 if -0x8000 <= v <= 0x7FFF else v & MASK32

    def negative(name: str, val: int) -> bool:
        return name[0] == "s" and bool(val >> 63)

    entries = [  # name, 64-bit pattern printed, omitted as implied
        ["smin", s.smin & MASK64, s.smin == S64_MIN], ["smax", s.smax & MASK64, s.smax == S64_MAX],
        ["umin", s.umin, s.umin == 0], ["umax", s.umax, s.umax == MASK64],
        ["smin32", s32_shown(s.s32_min), s.s32_min == S32_MIN],
        ["smax32", s32_shown(s.s32_max), s.s32_max == S32_MAX],
        ["umin32", s.u32_min, s.u32_min == 0], ["umax32", s.u32_max, s.u32_max == MASK32],
    ]
    parts = list(attrs)
    for i, (name, val, omit) in enumerate(entries):
        if omit:
            continue
        names = [name]
        for other in entries[i + 2::2]:  # the same end (min or max) of the other views
            if not other[2] and other[1] == val and negative(*other[:2]) == negative(name, val):
                other[2] = True
                names.append(other[0])
        parts.append("=".join(names) + "=" + format_number(val, name[0] == "s"))
    if not s.var_off.is_unknown:
        parts.append(f"var_off={s.var_off}")
    return f"scalar({','.join(parts)})"


UNKNOWN_SCALAR = Scalar(UNKNOWN, S64_MIN, S64_MAX, 0, MASK64, S32_MIN, S32_MAX, 0, MASK32)

"""Tristate numbers: what the verifier knows about each bit of a 64-bit value.

A :class:`Tnum` is a pair ``(value, mask)`` of unsigned 64-bit ints. A bit set in ``mask`` is
unknown; every other bit is known and equal to the same bit of ``value`` (so ``value & mask == 0``).
The set of concrete values a tnum stands for is every way of filling in its unknown bits.

The operations give the results of the Linux 6.12 verifier's tnum arithmetic (kernel/bpf/tnum.c),
bit for bit: the verifier's log prints tnums and the kernel selftests compare those strings, and
the bounds the verifier derives from a tnum decide which programs it accepts. 6.12 has no
``neg`` (here ``0 - a``, as its subtraction gives it) and no ``union`` (here the smallest tnum
holding both operands, for joining states).
"""
from __future__ import annotations

from dataclasses import dataclass

from bpfjit.isa import MASK32, MASK64


@dataclass(frozen=True, slots=True)
class Tnum:
    """Known bits ``~mask`` with values ``value``; unknown bits ``mask`` (both unsigned 64-bit)."""

    value: int
    mask: int

    # --- questions ------------------------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return self.mask == 0

    @property
    def is_unknown(self) -> bool:
        return self.mask == MASK64

    def is_aligned(self, size: int) -> bool:
        """Every member is a multiple of `size` (a power of two; 0 means no constraint)."""
        return not size or not (self.value | self.mask) & (size - 1)

    def contains(self, other: Tnum) -> bool:
        """Every member of `other` is a member of self (kernel ``tnum_in``)."""
        if other.mask & ~self.mask:
            return False
        return other.value & ~self.mask == self.value

    def contains_value(self, v: int) -> bool:
        """`v` (taken modulo 2**64) is a member."""
        return (v & MASK64) & ~self.mask == self.value

    def overlaps(self, other: Tnum) -> bool:
        """Some value is a member of both: the bits known in both agree (kernel ``tnum_overlap``)."""
        known = ~self.mask & ~other.mask
        return self.value & known == other.value & known

    # --- arithmetic -----------------------------------------------------------------------------
    def add(self, other: Tnum) -> Tnum:
        sv = (self.value + other.value) & MASK64
        carries = ((self.mask + other.mask + sv) & MASK64) ^ sv  # bits a carry may reach
        mu = carries | self.mask | other.mask
        return Tnum(sv & ~mu, mu)

    def sub(self, other: Tnum) -> Tnum:
        dv = (self.value - other.value) & MASK64
        borrows = ((dv + self.mask) & MASK64) ^ ((dv - other.mask) & MASK64)
        mu = borrows | self.mask | other.mask
        return Tnum(dv & ~mu, mu)

    def neg(self) -> Tnum:
        """Two's complement negation (6.12 has no tnum_neg: 0 - self)."""
        return CONST_ZERO.sub(self)

    def mul(self, other: Tnum) -> Tnum:
        """The kernel's shift-and-add multiply: the product of the known values, plus the sum of
        the partial products contributed by each unknown (or known-1) bit of self."""
        a, b = self, other
        product = (a.value * b.value) & MASK64
        spread = CONST_ZERO
        while a.value or a.mask:
            if a.value & 1:
                spread = spread.add(Tnum(0, b.mask))
            elif a.mask & 1:
                spread = spread.add(Tnum(0, b.value | b.mask))
            a, b = a.rshift(1), b.lshift(1)
        return Tnum(product, 0).add(spread)

    def and_(self, other: Tnum) -> Tnum:
        v = self.value & other.value
        return Tnum(v, (self.value | self.mask) & (other.value | other.mask) & ~v)

    def or_(self, other: Tnum) -> Tnum:
        v = self.value | other.value
        return Tnum(v, (self.mask | other.mask) & ~v)

    def xor(self, other: Tnum) -> Tnum:
        mu = self.mask | other.mask
        return Tnum((self.value ^ other.value) & ~mu, mu)

    def lshift(self, n: int) -> Tnum:
        return Tnum((self.value << n) & MASK64, (self.mask << n) & MASK64)

    def rshift(self, n: int) -> Tnum:
        return Tnum(self.value >> n, self.mask >> n)

    def arshift(self, n: int, bits: int) -> Tnum:
        """Arithmetic shift of the low `bits` (32 or 64) bits, value and mask each sign-filled;
        a 32-bit result is zero-extended."""
        width = MASK32 if bits == 32 else MASK64

        def shifted(x: int) -> int:
            x &= width
            signed = x - (width + 1) if x > width >> 1 else x
            return (signed >> n) & width

        return Tnum(shifted(self.value), shifted(self.mask))

    # --- lattice --------------------------------------------------------------------------------
    def intersect(self, other: Tnum) -> Tnum:
        """Bits known in either; where both know a bit and disagree, the kernel keeps a known 1."""
        v = self.value | other.value
        mu = self.mask & other.mask
        return Tnum(v & ~mu, mu)

    def union(self, other: Tnum) -> Tnum:
        """The smallest tnum containing both (6.12 has no tnum_union): a bit stays known only when
        both know it with the same value."""
        mu = self.mask | other.mask | (self.value ^ other.value)
        return Tnum(self.value & ~mu, mu)

    # --- widths ---------------------------------------------------------------------------------
    def cast(self, size_bytes: int) -> Tnum:
        """Keep the low `size_bytes` bytes (the rest become known zero)."""
        keep = (1 << (size_bytes * 8)) - 1
        return Tnum(self.value & keep, self.mask & keep)

    def subreg(self) -> Tnum:
        """The low 32 bits, zero-extended."""
        return self.cast(4)

    def clear_subreg(self) -> Tnum:
        """The high 32 bits, with the low 32 known zero."""
        return self.rshift(32).lshift(32)

    def with_subreg(self, sub: Tnum) -> Tnum:
        """Self's high 32 bits with the low 32 bits of `sub`."""
        return self.clear_subreg().or_(sub.subreg())

    def const_subreg(self, value: int) -> Tnum:
        """Self's high 32 bits with the low 32 bits known to be `value`."""
        return self.with_subreg(const(value & MASK32))

    @property
    def subreg_is_const(self) -> bool:
        return not self.mask & MASK32

    # --- text -----------------------------------------------------------------------------------
    def sbin(self) -> str:
        """64 characters, most significant first: 0, 1, or x for an unknown bit."""
        return "".join("x" if self.mask >> i & 1 else str(self.value >> i & 1) for i in range(63, -1, -1))

    def __str__(self) -> str:
        """The verifier log's ``(value; mask)`` form, in the kernel's hex (``0x0`` for zero)."""
        return f"({self.value:#x}; {self.mask:#x})"


def const(v: int) -> Tnum:
    """The tnum of exactly `v` (taken modulo 2**64)."""
    return Tnum(v & MASK64, 0)


def unknown() -> Tnum:
    return UNKNOWN


def tnum_range(lo: int, hi: int) -> Tnum:
    """A tnum containing every value in [lo, hi] (unsigned 64-bit): the bits above the highest bit
    where lo and hi differ are known, all below it unknown. It may contain more than the range."""
    lo, hi = lo & MASK64, hi & MASK64
    bits = (lo ^ hi).bit_length()
    if bits > 63:
        return UNKNOWN
    delta = (1 << bits) - 1
    return Tnum(lo & ~delta, delta)


UNKNOWN = Tnum(0, MASK64)
CONST_ZERO = Tnum(0, 0)

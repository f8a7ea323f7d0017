"""Widening at loop heads: how raw programs' loops verify without walking every iteration.

The kernel proves a loop safe by walking it iteration after iteration until the states repeat or
its limits (1M instructions, 8192 pending branches) stop it, so a loop whose bound lives in
memory is rejected. Raw programs are bpfjit's own type (r1 = memory of run-time size, r2 its
length: the conformance suite's and the userspace micro-benchmarks' convention), never loaded
into a kernel, and such loops are their normal shape. For them only, a loop head that keeps
coming back in new states gets one state that holds them all: every bound that moved between
two visits goes to its extreme, a byte of stack that differs becomes unknown data, and what
the rest of the function never reads is dropped. Exploring that state covers every later visit
(each is inside it), so the loop is checked once for every value it can take. Termination is
not proven: a raw program's run counts its loop trips instead (Facts.loop_edges, trip_limit).

A bound that moves stops first at a *threshold*, a constant the program compares with (and its
neighbours), so that ``for (i = 0; i < 16; i++) buf[i] = 0`` keeps ``i <= 15`` at its head
instead of losing every bound; after a few such rounds a bound that still moves goes to its
extreme. Widening only moves bounds outwards and turns known bits into unknown ones, so a loop
head is widened a bounded number of times before a visit is covered.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

from bpfjit import isa
from bpfjit.isa import MASK64, Insn
from bpfjit.runtime.context import MAX_PACKET_LEN

from . import length, links
from .cfg import back_edges
from .precision import is_conditional_jump
from .prune import Liveness
from .scalar import MASK32, S32_MAX, S32_MIN, S64_MAX, S64_MIN, Scalar
from .state import (EMPTY_SLOT, NOT_INIT, PACKET_TYPES, Frame, Reg, RegType, Slot, SlotKind, State, offset_by, scalar,
                    spill_slot)
from .tnum import Tnum

THRESHOLD_ROUNDS = 3  # widenings of one loop head that stop at thresholds; later ones go to extremes


@dataclass(frozen=True)
class Thresholds:
    """Where a moving bound stops first: sorted signed and unsigned candidates."""
    signed: tuple[int, ...] = ()
    unsigned: tuple[int, ...] = ()

    @staticmethod
    def of(insns: Sequence[Insn]) -> "Thresholds":
        """The immediates of the program's conditional jumps, each with its neighbours."""
        values = set()
        for insn in insns:
            if is_conditional_jump(insn) and insn.source == isa.K:
                values.update(insn.imm + delta for delta in (-1, 0, 1))
        return Thresholds(tuple(sorted(values)), tuple(sorted(v for v in values if v >= 0)))

    def above(self, value: int, signed: bool, extreme: int) -> int:
        candidates = self.signed if signed else self.unsigned
        at = bisect.bisect_left(candidates, value)
        return candidates[at] if at < len(candidates) else extreme

    def below(self, value: int, signed: bool, extreme: int) -> int:
        candidates = self.signed if signed else self.unsigned
        at = bisect.bisect_right(candidates, value)
        return candidates[at - 1] if at else extreme


NO_THRESHOLDS = Thresholds()


def loop_heads(successors: Mapping[int, tuple[int, ...]], starts: Iterable[int]) -> frozenset[int]:
    """The targets of the control-flow graph's back edges (verifier/cfg.py back_edges): the only
    places a loop can be widened at."""
    return frozenset(target for _, target in back_edges(successors, starts))


def widen(old: State, new: State, liveness: Liveness, index: int, thresholds: Thresholds = NO_THRESHOLDS,
          new_id: Callable[[], int] | None = None, settling: bool = False) -> State | None:
    """A state holding both (None when they differ in a way no single state can hold: other
    frames, locks or references, or registers of different pointer types).

    new_id: where pointers' ids differ between the two, the widened pointer takes a fresh id,
    one per pair of ids (copies stay copies); without it such pointers cannot be widened. The
    loop's registers that moved in step get a fresh tag for their links (verifier/links.py;
    without new_id none are made, and those both states have alike are kept).
    settling: the loop head was widened often enough (THRESHOLD_ROUNDS): a moving bound goes to
    its extreme instead of the next threshold, and a length bound (verifier/length.py) that would
    grow again is dropped, so that the head's state settles."""
    if len(old.frames) != len(new.frames) or old.refs != new.refs or old.lock != new.lock:
        return None
    join = _Join(NO_THRESHOLDS if settling else thresholds, _IdPairs(new_id),
                 min(_least_length(old), _least_length(new)), not settling)
    frames = []
    for depth, (a, b) in enumerate(zip(old.frames, new.frames)):
        if (a.frameno, a.subprog, a.callsite, a.callback_ret) != (b.frameno, b.subprog, b.callsite, b.callback_ret):
            return None
        live = liveness.frame_live(new, depth, index)
        regs = []
        for number, (x, y) in enumerate(zip(a.regs, b.regs)):
            joined = widen_reg(x, y, join) if number in live else NOT_INIT
            if joined is None:
                return None
            regs.append(joined)
        stack = _widen_stack(a, b, join)
        frames.append(Frame(regs, stack, b.frameno, b.subprog, b.callsite, b.callback_ret))
    joined_state = State(frames, list(new.refs), replace(new.lock) if new.lock else None, new.parent)
    links.widen(old, new, joined_state, liveness.frame_live(new, len(frames) - 1, index), new_id)
    return joined_state


def widen_scalar(old: Scalar, new: Scalar, thresholds: Thresholds = NO_THRESHOLDS) -> Scalar:
    """Each bound of `old` that `new` goes past moves to the next threshold, or its extreme;
    known bits they disagree on are dropped (then the bounds alone say what is known)."""
    if old == new:
        return old

    def low(o: int, n: int, signed: bool, extreme: int) -> int:
        return o if n >= o else thresholds.below(n, signed, extreme)

    def high(o: int, n: int, signed: bool, extreme: int) -> int:
        return o if n <= o else thresholds.above(n, signed, extreme)

    bounds = (low(old.smin, new.smin, True, S64_MIN), high(old.smax, new.smax, True, S64_MAX),
              low(old.umin, new.umin, False, 0), high(old.umax, new.umax, False, MASK64),
              low(old.s32_min, new.s32_min, True, S32_MIN), high(old.s32_max, new.s32_max, True, S32_MAX),
              low(old.u32_min, new.u32_min, False, 0), high(old.u32_max, new.u32_max, False, MASK32))
    bounds = tuple(max(S32_MIN, min(b, S32_MAX)) if i == 4 or i == 5 else
                   min(b, MASK32) if i in (6, 7) else b for i, b in enumerate(bounds))
    var_off = old.var_off if old.var_off.contains(new.var_off) else _alignment(old.var_off, new.var_off)
    try:
        return Scalar.from_range(*bounds, var_off=var_off)
    except ValueError:  # cannot happen for sets that both hold `new`; stay sound regardless
        return Scalar.unknown()


class _IdPairs:
    """The ids of a widened state: an id both states share stays; each pair of differing ids
    gets one fresh id (None when no fresh ids may be made)."""

    def __init__(self, new_id: Callable[[], int] | None):
        self.new_id = new_id
        self.fresh: dict[tuple[int, int], int] = {}

    def __call__(self, old: int, new: int) -> int | None:
        if old == new:
            return old
        if self.new_id is None:
            return None
        if (old, new) not in self.fresh:
            self.fresh[(old, new)] = self.new_id()
        return self.fresh[(old, new)]


def _alignment(old: Tnum, new: Tnum) -> Tnum:
    """What stays known of two tnums that differ: the low bits both know alike (a counter moving
    by 8 stays a multiple of 8), every bit above them unknown (so the bounds alone say how far)."""
    joined = old.union(new)
    low = (joined.mask & -joined.mask) - 1  # the bits below the lowest unknown one
    return Tnum(joined.value & low, MASK64 & ~low)


@dataclass(frozen=True)
class _Join:
    """What widening one pair of states goes by: where moving bounds stop first, the pairing of
    their ids, the least length of a raw program's memory both proved (Reg.range), and whether a
    length bound may still grow."""
    thresholds: Thresholds
    ids: _IdPairs
    least_length: int = 0
    may_grow: bool = True

    def length_bound(self, old: Reg, new: Reg) -> length.LengthBound | None:
        """The length bound both registers' values keep (verifier/length.py)."""
        if old.length_bound is None and new.length_bound is None:
            return None
        return length.join((old.length_bound, old.value), (new.length_bound, new.value), self.least_length,
                           self.may_grow)


def _least_length(state: State) -> int:
    """How many bytes of a raw program's memory a state proved exist (its pointers' ranges)."""
    proven = 0
    for frame in state.frames:
        for reg in frame.regs:
            if reg.is_raw and reg.range > proven:
                proven = reg.range
    return proven


def widen_reg(old: Reg, new: Reg, join: _Join) -> Reg | None:
    if old == new:
        return old
    if RegType.NOT_INIT in (old.type, new.type):
        return NOT_INIT  # unset on some path: a later read is an error either way
    if old.is_scalar and new.is_scalar:
        joined = scalar(widen_scalar(old.value, new.value, join.thresholds))
        bound = join.length_bound(old, new)
        return joined if bound is None else joined.evolve(length_bound=bound)
    same = dict(value=new.value, off=new.off, id=new.id, range=new.range, length_bound=new.length_bound,
                link=new.link)
    if old.ref_obj_id != new.ref_obj_id or old.evolve(**same) != new:
        return None  # another kind of pointer, another map or frame, another reference
    pointer_id = join.ids(old.id, new.id)
    if pointer_id is None:
        return None
    if old.type in PACKET_TYPES and (old.off, old.range) != (new.off, new.range):
        return _widen_packet(old, new, join.thresholds, pointer_id)
    proven = min(old.range, new.range)  # a raw program's memory: the bytes both paths proved
    bound = join.length_bound(old, new) if old.off == new.off == 0 else None
    if old.off == new.off:
        return old.evolve(value=widen_scalar(old.value, new.value, join.thresholds), id=pointer_id, range=proven,
                          length_bound=bound, link=None)
    # Moving fixed offsets become part of the variable one.
    whole = widen_scalar(offset_by(old.value, old.off), offset_by(new.value, new.off), join.thresholds)
    return old.evolve(off=0, value=whole, id=pointer_id, range=proven, length_bound=None, link=None)


def _widen_packet(old: Reg, new: Reg, thresholds: Thresholds, pointer_id: int) -> Reg:
    """A packet pointer walking the packet: its whole offset becomes variable, and it keeps the
    bytes proven past it on both visits. A pointer whose offset is inside the largest packet on
    both stays inside it when widened (verifier/jumps.py refines a checked pointer's offset to
    fit the packet, so a walk bounded by data_end converges there)."""
    old_whole, new_whole = offset_by(old.value, old.off), offset_by(new.value, new.off)
    whole = widen_scalar(old_whole, new_whole, thresholds)
    if whole.umax > MAX_PACKET_LEN and max(old_whole.umax, new_whole.umax) <= MAX_PACKET_LEN \
            and min(old_whole.smin, new_whole.smin) >= 0:
        low = min(old_whole.umin, new_whole.umin)
        whole = Scalar.from_range(low, MAX_PACKET_LEN, low, MAX_PACKET_LEN)
    ahead = max(0, min(old.range - old.off, new.range - new.off))
    return old.evolve(off=0, value=whole, id=pointer_id, range=ahead)


def _widen_stack(old: Frame, new: Frame, join: _Join) -> dict[int, Slot]:
    stack = {}
    for number in set(old.stack) | set(new.stack):
        a, b = old.slot(number), new.slot(number)
        slot = a if a == b else _widen_slot(a, b, join)
        if slot != EMPTY_SLOT:
            stack[number] = slot
    return stack


def _widen_slot(a: Slot, b: Slot, join: _Join) -> Slot:
    if a.is_spill and b.is_spill and (a.spilled.is_scalar, a.spilled.is_pointer) == \
            (b.spilled.is_scalar, b.spilled.is_pointer):
        joined = widen_reg(a.spilled, b.spilled, join)
        if joined is not None:
            return spill_slot(joined)
    return Slot(tuple(_widen_byte(x, y) for x, y in zip(a.kinds, b.kinds)))


def _widen_byte(a: SlotKind, b: SlotKind) -> SlotKind:
    """Data both ways stays data (a differing spill is data now: its type is not known)."""
    if SlotKind.INVALID in (a, b):
        return SlotKind.INVALID
    if a == b == SlotKind.ZERO:
        return SlotKind.ZERO
    return SlotKind.MISC

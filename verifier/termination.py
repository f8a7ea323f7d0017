"""Termination of widened loops: a counter that moves the same way on every trip and stays bounded.

The kernel proves a loop ends by walking every trip of it. Widening (verifier/widen.py) checks a
loop once for all its trips instead, which says every trip is safe but not that there are
finitely many. This module supplies the missing half, as a ranking argument in two parts:

* statically, per loop head: a *counter*, a register or a stack slot of the loop's frame that
  every path around the loop changes by a constant of one sign (``i++``, ``p += 2``, a spilled
  counter reloaded, bumped and spilled again), found by following each location as
  "its value at the head plus [lo, hi]" through the loop body;
* from the exploration, per arrival at the head: the counter is a scalar whose bounds leave no
  room to wrap around (``u64 max + hi`` stays below 2**64, or the 32-bit bounds for a counter
  moved by 32-bit arithmetic).

Together: the counter's value at the head strictly grows (or shrinks) from trip to trip and is
always inside the bounds the exploration saw, so the loop makes finitely many trips. A loop
without such a counter is not summarised: its program is verified again the kernel's way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from bpfjit import isa
from bpfjit.isa import MASK32, MASK64, Insn

from .log import Rejected
from .memory import read_fixed
from .state import State

Location = tuple  # ("r", regno) or ("s", fp offset, size)
_SLOT_SIZES = (4, 8)
_CALL_CLOBBERED = tuple(("r", n) for n in range(6))
_ROUNDS = 20  # joins at one instruction before a moving delta is given up


@dataclass(frozen=True)
class Delta:
    """A location's value: the value `origin` had at the loop head, plus [lo, hi]; width 32 when
    it went through 32-bit arithmetic (then only its low half is known to move), None while it
    is untouched."""
    origin: Location
    lo: int
    hi: int
    width: int | None = None


_TOP = None  # a value with no relation to the head


class Unproven(Exception):
    """A widened loop has no counter that shows it ends: verify the program by walking it."""


class _Values:
    """Every location's Delta at one point of the body: those changed since the head, the
    others still their own value at the head (or unrelated once `slots_lost`)."""
    __slots__ = ("changed", "slots_lost")

    def __init__(self, changed: dict | None = None, slots_lost: bool = False):
        self.changed: dict[Location, Delta | None] = changed or {}
        self.slots_lost = slots_lost

    def get(self, loc: Location) -> Delta | None:
        if loc in self.changed:
            return self.changed[loc]
        if loc[0] == "s" and self.slots_lost:
            return _TOP
        return Delta(loc, 0, 0)

    def set(self, loc: Location, value: Delta | None) -> None:
        self.changed[loc] = value

    def copy(self) -> "_Values":
        return _Values(dict(self.changed), self.slots_lost)

    def key(self) -> tuple:
        return (tuple(sorted(self.changed.items(), key=repr)), self.slots_lost)


@dataclass(frozen=True)
class Loop:
    """What the body of one loop says: its counters (Delta(location, lo, hi, width) with lo >= 1
    or hi <= -1) and the instructions on its shortest trip (how much the kernel's walk does per
    trip at the least)."""
    counters: tuple[Delta, ...]
    shortest_trip: int


def loops(insns: Sequence[Insn], successors: Mapping[int, tuple[int, ...]], heads: frozenset[int]) \
        -> dict[int, Loop]:
    """Each loop head's Loop."""
    predecessors: dict[int, list[int]] = {}
    for index, targets in successors.items():
        for target in targets:
            predecessors.setdefault(target, []).append(index)
    found = {}
    for head in heads:
        body = _body(successors, predecessors, head)
        found[head] = Loop(_counters_of(insns, successors, body, head), _shortest_trip(successors, body, head))
    return found


def _shortest_trip(successors: Mapping[int, tuple[int, ...]], body: set[int], head: int) -> int:
    distance, frontier = {head: 0}, [head]
    while frontier:
        following = []
        for index in frontier:
            for target in successors.get(index, ()):
                if target == head:
                    return distance[index] + 1
                if target in body and target not in distance:
                    distance[target] = distance[index] + 1
                    following.append(target)
        frontier = following
    return 1


def _counters_of(insns: Sequence[Insn], successors: Mapping[int, tuple[int, ...]], body: set[int], head: int) \
        -> tuple[Delta, ...]:
    values: dict[int, _Values] = {head: _Values()}
    rounds: dict[int, int] = {}
    back: _Values | None = None
    todo = [head]
    while todo:
        index = todo.pop()
        out = _transfer(insns[index], values[index])
        for target in successors.get(index, ()):
            if target == head:
                back = out.copy() if back is None else _join(back, out, widen=False)
                continue
            if target not in body:
                continue
            old = values.get(target)
            if old is None:
                values[target] = out.copy()
            else:
                rounds[target] = rounds.get(target, 0) + 1
                joined = _join(old, out, widen=rounds[target] > _ROUNDS)
                if joined.key() == old.key():
                    continue
                values[target] = joined
            todo.append(target)
    if back is None:
        return ()
    found = []
    for loc, delta in back.changed.items():
        if delta is not _TOP and delta.origin == loc and (delta.lo >= 1 or delta.hi <= -1):
            found.append(delta)
    return tuple(sorted(found, key=repr))


def _body(successors: Mapping[int, tuple[int, ...]], predecessors: Mapping[int, list[int]], head: int) -> set[int]:
    """The instructions on some path from the head back to it."""
    ahead, todo = set(), [head]
    while todo:
        index = todo.pop()
        for target in successors.get(index, ()):
            if target not in ahead:
                ahead.add(target)
                todo.append(target)
    behind, todo = {head}, [head]
    while todo:
        index = todo.pop()
        for source in predecessors.get(index, ()):
            if source not in behind and source in ahead:
                behind.add(source)
                todo.append(source)
    return behind


def _join(a: _Values, b: _Values, widen: bool) -> _Values:
    joined = _Values({}, a.slots_lost or b.slots_lost)
    for loc in set(a.changed) | set(b.changed):
        x, y = a.get(loc), b.get(loc)
        if x is _TOP or y is _TOP or x.origin != y.origin or None not in (x.width, y.width) and x.width != y.width:
            joined.set(loc, _TOP)
            continue
        if widen and (x.lo, x.hi) != (y.lo, y.hi):
            joined.set(loc, _TOP)  # still moving after many rounds: an inner loop moves it
            continue
        joined.set(loc, Delta(x.origin, min(x.lo, y.lo), max(x.hi, y.hi), x.width or y.width))
    return joined


def _transfer(insn: Insn, before: _Values) -> _Values:
    values = before.copy()
    cls = insn.cls
    if insn.is_lddw:
        values.set(("r", insn.dst), _TOP)
    elif cls in (isa.ALU, isa.ALU64):
        values.set(("r", insn.dst), _alu(insn, values))
    elif cls == isa.LDX:
        loaded = _TOP
        if insn.src == isa.FRAME_POINTER and isa.SIZE_BYTES[insn.size] in _SLOT_SIZES and insn.mode == isa.MEM:
            loaded = values.get(("s", insn.off, isa.SIZE_BYTES[insn.size]))
        values.set(("r", insn.dst), loaded)
    elif cls in (isa.ST, isa.STX):
        _store(insn, values)
    elif cls == isa.LD:  # legacy packet loads clobber the caller-saved registers
        for loc in _CALL_CLOBBERED:
            values.set(loc, _TOP)
    elif insn.opcode in (isa.CALL_OP, isa.CALLX_OP):
        for loc in _CALL_CLOBBERED:
            values.set(loc, _TOP)
        values.changed = {loc: v for loc, v in values.changed.items() if loc[0] == "r"}
        values.slots_lost = True  # the callee may write the stack through a pointer it got
    return values


def _alu(insn: Insn, values: _Values) -> Delta | None:
    dst = values.get(("r", insn.dst))
    wide = insn.cls == isa.ALU64
    if insn.op == isa.MOV and insn.source == isa.X and not insn.is_movsx:
        src = values.get(("r", insn.src))
        if src is _TOP or wide:
            return src
        return Delta(src.origin, src.lo, src.hi, 32)
    if insn.op in (isa.ADD, isa.SUB) and insn.source == isa.K and dst is not _TOP:
        step = insn.imm if insn.op == isa.ADD else -insn.imm
        width = 64 if wide else 32
        if dst.width not in (None, width):
            return _TOP
        return Delta(dst.origin, dst.lo + step, dst.hi + step, width)
    return _TOP


def _store(insn: Insn, values: _Values) -> None:
    if insn.mode == isa.ATOMIC or insn.dst != isa.FRAME_POINTER:
        if insn.mode == isa.ATOMIC and insn.imm & isa.FETCH and insn.imm != isa.LOAD_ACQ:
            values.set(("r", 0 if insn.imm == isa.CMPXCHG else insn.src), _TOP)
        if insn.mode == isa.ATOMIC and insn.imm == isa.LOAD_ACQ:
            values.set(("r", insn.dst), _TOP)
        if insn.dst != isa.FRAME_POINTER:  # through another pointer: it may point into the stack
            values.changed = {loc: v for loc, v in values.changed.items() if loc[0] == "r"}
            values.slots_lost = True
            return
    start, size = insn.off, isa.SIZE_BYTES[insn.size]
    for slot_size in _SLOT_SIZES:
        first = (start - slot_size + 1) // slot_size * slot_size
        for offset in range(first, start + size, slot_size):
            if offset + slot_size > start:
                values.set(("s", offset, slot_size), _TOP)
    if insn.cls == isa.STX and insn.mode == isa.MEM and size in _SLOT_SIZES:
        stored = values.get(("r", insn.src))
        if stored is not _TOP and size == 4:
            stored = Delta(stored.origin, stored.lo, stored.hi, 32)
        values.set(("s", start, size), stored)


def counter_range(counter: Delta, state: State) -> tuple[int, int] | None:
    """The counter's bounds in this state at the loop head (unsigned, of its width), if it is a
    scalar there whose bounds leave its moves no room to wrap around."""
    value = _scalar_at(counter.origin, state)
    if value is None:
        return None
    if counter.width == 32:
        low, high, top = value.u32_min, value.u32_max, MASK32
    else:
        low, high, top = value.umin, value.umax, MASK64
    fits = high + counter.hi <= top if counter.lo >= 1 else low + counter.lo >= 0
    return (low, high) if fits else None


def most_trips(counter: Delta, low: int, high: int) -> int:
    """How many trips a loop can make whose counter stays in [low, high] at its head."""
    step = counter.lo if counter.lo >= 1 else -counter.hi
    return (high - low) // step + 1


def _scalar_at(loc: Location, state: State):
    frame = state.frames[-1]
    if loc[0] == "r":
        reg = frame.regs[loc[1]]
    else:
        if not -isa.STACK_SIZE <= loc[1] < 0:
            return None
        try:
            reg = read_fixed(frame, loc[1], loc[2], signed=False)
        except Rejected:
            return None
    return reg.value if reg.is_scalar else None

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
always inside the bounds the exploration saw, so the loop makes finitely many trips.

clang often leaves a loop on *equality* instead (``i < 64`` on a strength-reduced induction
variable becomes ``p += 0x9e3779b9; if p == 64 * 0x9e3779b9 goto out``), whose counter wraps
around and so has no bounds. Such a loop ends by another argument: a counter moved by exactly
the same step on every trip, tested against a constant by a jump that every trip passes and
whose "equal" side leaves the loop (an :class:`EqualityExit`), reaches that constant after a
number of trips that modular arithmetic gives from the counter's value at the loop's entry; the
exploration supplies that value at each entry from outside the loop, and the loop is proven when
every entry's value is known and reaches the constant.

A loop proven neither way is not summarised: its program is verified again the kernel's way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from bpfjit import isa
from bpfjit.isa import MASK32, MASK64, Insn

from .cfg import loop_body, predecessors
from .length import nonnegative
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
_CONST: Location = ("k",)  # the origin of a constant: Delta(_CONST, v, v, width) is exactly v


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
class EqualityExit:
    """A jump that every trip of a loop passes and that leaves the loop when `counter` (a location
    moved by exactly `step` per trip), plus `offset`, equals `value`, all modulo 2**width."""
    counter: Location
    step: int
    offset: int
    value: int
    width: int

    def trips(self, state: State) -> int | None:
        """How many trips the loop makes at most from an entry in `state`: None unless the
        counter's value there is known and the exit value is among those it reaches."""
        value = _scalar_at(self.counter, state)
        if value is None:
            return None
        if self.width == 32:
            if value.u32_min != value.u32_max:
                return None
            start = value.u32_min
        elif value.umin != value.umax:
            return None
        else:
            start = value.umin
        # Solve start + offset + n * step = value (mod 2**width) for the least n >= 0: with
        # step = 2**zeros * odd, a solution exists when 2**zeros divides the distance.
        modulus = 1 << self.width
        distance, step = (self.value - self.offset - start) % modulus, self.step % modulus
        zeros = (step & -step).bit_length() - 1
        if distance % (1 << zeros):
            return None
        reduced = 1 << (self.width - zeros)
        return (distance >> zeros) * pow(step >> zeros, -1, reduced) % reduced + 1


@dataclass(frozen=True)
class Loop:
    """What the body of one loop says: its counters (Delta(location, lo, hi, width) with lo >= 1
    or hi <= -1), its equality exits, the instructions on its shortest trip (how much the kernel's
    walk does per trip at the least) and its body (to tell an entry from a trip's return)."""
    counters: tuple[Delta, ...]
    exits: tuple[EqualityExit, ...]
    shortest_trip: int
    body: frozenset[int]


class LoopProof:
    """What the exploration has shown so far of one loop's termination: the hull of each counter's
    bounds over every arrival at the head, and each equality exit's most trips over the entries
    from outside the loop (a counter or exit some arrival disproves is dropped)."""

    def __init__(self, loop: Loop):
        self.loop = loop
        self.hulls: dict[Delta, tuple[int, int] | None] = dict.fromkeys(loop.counters)
        self.exit_trips: dict[EqualityExit, int | None] = dict.fromkeys(loop.exits)  # None: no entry yet
        # A raw program's rising counters that every arrival shows bounded by the length
        # (length_bounded); the loop then makes at most a few times the length's trips.
        self.length_counters = [c for c in loop.counters if c.lo >= 1 and c.width == 64 and c.origin[0] == "r"]
        self.arrivals = 0

    def counter_registers(self) -> list[int]:
        """The registers of the counters length_bounded still relies on: their bounds must be
        precise (verifier/precision.py), or a state pruned inside the loop could hide an
        arrival that breaks them."""
        return [counter.origin[1] for counter in self.length_counters]

    @property
    def length_bounded(self) -> bool:
        """A rising counter that every arrival back from a trip showed at most a bound relative to
        the raw program's length (at most MAX_LENGTH_SCALE times it, so below 2**63): each trip
        then takes it higher without wrapping around, and the loop makes at most
        MAX_LENGTH_SCALE * length + 2 trips (what it held on entry does not matter: a first trip
        from near 2**64 wraps it to a small value, once), so a run need not count them."""
        return self.arrivals > 0 and bool(self.length_counters)

    def arrive(self, state: State, source: int) -> None:
        """A path reached the head from instruction `source` (-1: none, it starts there)."""
        back = source in self.loop.body
        self.arrivals += back
        if self.length_counters and back:
            self.length_counters = [c for c in self.length_counters if _below_length(c, state)]
        for counter, hull in list(self.hulls.items()):
            bounds = counter_range(counter, state)
            if bounds is None:
                del self.hulls[counter]
            else:
                self.hulls[counter] = bounds if hull is None else (min(hull[0], bounds[0]), max(hull[1], bounds[1]))
        if source in self.loop.body:
            return  # back from a trip: equality exits count trips from the entry
        for exit_, most in list(self.exit_trips.items()):
            trips = exit_.trips(state)
            if trips is None:
                del self.exit_trips[exit_]
            else:
                self.exit_trips[exit_] = trips if most is None else max(most, trips)

    @property
    def hopeless(self) -> bool:
        """No counter or exit is left that could show the loop ends."""
        return not self.hulls and not self.exit_trips

    def most_trips(self) -> int | None:
        """The fewest trips any remaining argument allows; None if none remains."""
        bounds = [most_trips(c, *hull) for c, hull in self.hulls.items() if hull is not None]
        bounds += [trips for trips in self.exit_trips.values() if trips is not None]
        return min(bounds, default=None)


def loops(insns: Sequence[Insn], successors: Mapping[int, tuple[int, ...]], heads: frozenset[int]) \
        -> dict[int, Loop]:
    """Each loop head's Loop."""
    before = predecessors(successors)
    found = {}
    for head in heads:
        body = loop_body(successors, before, head)
        values, back = _flow(insns, successors, body, head)
        counters = _counters(back)
        found[head] = Loop(counters, _equality_exits(insns, successors, body, head, values, counters),
                           _shortest_trip(successors, body, head), frozenset(body))
    return found


def exits(insns: Sequence[Insn], successors: Mapping[int, tuple[int, ...]], heads: frozenset[int]) \
        -> dict[int, tuple[tuple[int | None, int], ...]]:
    """Where a path leaves each loop: instruction -> (target, head) for each edge from the body of
    the loop at head to outside it; target None for an exit instruction in the body (a return)."""
    before = predecessors(successors)
    found: dict[int, list[tuple[int | None, int]]] = {}
    for head in heads:
        body = loop_body(successors, before, head)
        for index in body:
            edges = [(target, head) for target in successors.get(index, ()) if target not in body]
            if insns[index].opcode == isa.EXIT_OP:
                edges.append((None, head))
            if edges:
                found.setdefault(index, []).extend(edges)
    return {index: tuple(edges) for index, edges in found.items()}


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


def _flow(insns: Sequence[Insn], successors: Mapping[int, tuple[int, ...]], body: set[int], head: int) \
        -> tuple[dict[int, _Values], _Values | None]:
    """Every location's Delta before each instruction of the body, and on the way back to the
    head (None if no path goes back)."""
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
    return values, back


def _counters(back: _Values | None) -> tuple[Delta, ...]:
    """The locations every trip moves one way, by how much: the loop's counters."""
    if back is None:
        return ()
    found = []
    for loc, delta in back.changed.items():
        if delta is not _TOP and delta.origin == loc and (delta.lo >= 1 or delta.hi <= -1):
            found.append(delta)
    return tuple(sorted(found, key=repr))


def _equality_exits(insns: Sequence[Insn], successors: Mapping[int, tuple[int, ...]], body: set[int],
                    head: int, values: Mapping[int, _Values], counters: Sequence[Delta]) -> tuple[EqualityExit, ...]:
    """The JEQ/JNE jumps of the body that compare a counter of exact step with a constant, that
    every trip passes, and whose "equal" side leaves the loop."""
    steps = {c.origin: c for c in counters if c.lo == c.hi}
    found = []
    for index in sorted(body):
        insn = insns[index]
        if insn.cls not in (isa.JMP, isa.JMP32) or insn.op not in (isa.JEQ, isa.JNE) or index not in values:
            continue
        equal_side = insn.jump_target(index) if insn.op == isa.JEQ else index + 1
        if equal_side in body or not _on_every_trip(successors, body, head, index):
            continue
        before = values[index]
        dst = before.get(("r", insn.dst))
        other = before.get(("r", insn.src)) if insn.source == isa.X else \
            Delta(_CONST, insn.imm & MASK64, insn.imm & MASK64, 64)
        for tested, constant in ((dst, other), (other, dst)):
            exit_ = _equality_exit(insn, tested, constant, steps)
            if exit_ is not None:
                found.append(exit_)
                break
    return tuple(found)


def _equality_exit(insn: Insn, tested: Delta | None, constant: Delta | None,
                   steps: Mapping[Location, Delta]) -> EqualityExit | None:
    """The exit a jump makes comparing `tested` with `constant`, if tested is a counter of exact
    step plus an exact offset and constant is one known value."""
    if tested is _TOP or constant is _TOP or constant.origin != _CONST or constant.lo != constant.hi \
            or tested.origin not in steps or tested.lo != tested.hi:
        return None
    counter = steps[tested.origin]
    value = constant.lo & (MASK32 if constant.width == 32 else MASK64)
    if insn.cls == isa.JMP32:
        width = 32
    elif tested.width == 32:  # a zero-extended 32-bit value against a 64-bit constant
        if value > MASK32:
            return None
        width = 32
    elif counter.width == 32:
        return None  # a 64-bit test of a counter that wraps at 32 bits: not modelled
    else:
        width = 64
    if (counter.lo % (1 << width)) == 0:
        return None
    return EqualityExit(counter.origin, counter.lo, tested.lo, value, width)


def _on_every_trip(successors: Mapping[int, tuple[int, ...]], body: set[int], head: int, index: int) -> bool:
    """Whether every path from the head back to it passes `index`."""
    if index == head:
        return True
    seen, todo = {head}, [head]
    while todo:
        for target in successors.get(todo.pop(), ()):
            if target == head:
                return False
            if target in body and target != index and target not in seen:
                seen.add(target)
                todo.append(target)
    return True


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
        values.set(("r", insn.dst), Delta(_CONST, insn.imm64, insn.imm64, 64) if insn.src == 0 else _TOP)
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
    if insn.op == isa.MOV and insn.source == isa.K and insn.off == 0:
        value = insn.imm & (MASK64 if wide else MASK32)
        return Delta(_CONST, value, value, 64 if wide else 32)
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


# The most a length-bounded counter's bound may grow with the length (LoopProof.length_bounded).
MAX_LENGTH_SCALE = 16


def _below_length(counter: Delta, state: State) -> bool:
    """Whether the counter (a scalar, or a pointer into the raw memory) is at most a bound relative
    to the length here (one below 2**63: verifier/length.py nonnegative)."""
    reg = _reg_at(counter.origin, state)
    if reg is None or not (reg.is_scalar or reg.is_raw) or reg.length_bound is None:
        return False
    bound = reg.length_bound
    return bound.num <= MAX_LENGTH_SCALE * bound.den and nonnegative(bound, reg.value)


def most_trips(counter: Delta, low: int, high: int) -> int:
    """How many trips a loop can make whose counter stays in [low, high] at its head."""
    step = counter.lo if counter.lo >= 1 else -counter.hi
    return (high - low) // step + 1


def _scalar_at(loc: Location, state: State):
    reg = _reg_at(loc, state)
    return reg.value if reg is not None and reg.is_scalar else None


def _reg_at(loc: Location, state: State):
    """The register, or what a load of the stack slot gives, at a location (None: unreadable)."""
    frame = state.frames[-1]
    if loc[0] == "r":
        return frame.regs[loc[1]]
    if not -isa.STACK_SIZE <= loc[1] < 0:
        return None
    try:
        return read_fixed(frame, loc[1], loc[2], signed=False)
    except Rejected:
        return None

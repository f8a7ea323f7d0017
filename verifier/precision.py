"""Precision: which scalars' exact bounds the safety of a path depended on.

Most scalars a program computes (a sum, a hash, a loop counter compared with an unknown limit)
never decide whether an access is safe. The kernel compares only the scalars that did when it
asks whether an explored state covers a new one, and that is what lets a loop's states converge
instead of differing forever by a counter. A scalar becomes *precise* when its bounds are used
to prove something: added to a pointer, passed as a size, compared where the comparison's
outcome was known, returned where the return range is checked. Its precision is then carried
back along the path to every value it was computed from, up to the states kept at earlier prune
points (:class:`~.check.Checkpoint`), whose later comparisons must respect it (the kernel's
``mark_chain_precision`` / ``backtrack_insn``).

A *place* is ``(frame, "r", regno)`` or ``(frame, "s", slot)``. Each state records the
instructions it ran since its last checkpoint (:class:`Step`); a demand walks them backwards,
turning each place into the places it was computed from, and at each checkpoint adds what is
left to the checkpoint's precise places. Where the walk cannot follow a value (a callback's
arguments, a frame it cannot map), it gives up soundly: every scalar of every state kept on the
path becomes precise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from bpfjit import isa
from bpfjit.isa import Insn

from .state import SLOT_SIZE, Reg, RegType, State

if TYPE_CHECKING:
    from .check import Checkpoint

Place = tuple  # (frame, "r", regno) or (frame, "s", slot)
_ARG_REGS = range(1, 6)


@dataclass(frozen=True, slots=True)
class Step:
    """One instruction a path ran: where, in which frame, the stack slot it accessed at a fixed
    offset (frame, slot), and for a conditional jump the scalars linked to its operands."""
    index: int
    depth: int
    slot: tuple[int, int] | None = None
    linked: frozenset = frozenset()


class Tracker:
    """Precision for one program: what each instruction leaves for a later demand to follow
    (``step``), the backwards walks (``demand``, ``inherit``), and the paths waiting for a loop to
    be done (``backedges``). What the walks ask of an instruction is worked out once per program:
    which register addresses memory, which instructions jump conditionally, which end a frame."""

    def __init__(self, insns: Sequence[Insn]):
        self.insns = insns
        self.conditional_jumps = frozenset(i for i, insn in enumerate(insns) if is_conditional_jump(insn))
        self.boundaries = frozenset(i for i, insn in enumerate(insns)
                                    if insn.opcode == isa.EXIT_OP or _is_local_call(insn))
        self.address_regs = {i: _address_reg(insn) for i, insn in enumerate(insns)
                             if insn.cls in (isa.LDX, isa.ST, isa.STX)}
        # The two kinds most steps are, as (dst, src or None, dst's old value dropped): ALU
        # instructions, whose src feeds dst, and conditional jumps, whose operands feed each other.
        self.alu = {i: (insn.dst, insn.src if insn.source == isa.X and insn.op not in (isa.NEG, isa.END) else None,
                        insn.op == isa.MOV) for i, insn in enumerate(insns) if insn.cls in (isa.ALU, isa.ALU64)}
        self.compares = {i: (insns[i].dst, insns[i].src if insns[i].source == isa.X else None)
                         for i in self.conditional_jumps}
        self._plain: dict[tuple[int, int], Step] = {}  # (index, depth) -> the Step of nothing to note
        self.backedges = Backedges(self)

    def step(self, state: State, index: int) -> Step:
        """What to remember of instruction `index`, run from `state` (taken before the
        instruction changes it)."""
        depth = len(state.frames) - 1
        address = self.address_regs.get(index)
        if address is not None:
            slot = _stack_slot(state.regs[address], self.insns[index].off)
            if slot is not None:
                return Step(index, depth, slot)
        elif index in self.conditional_jumps:
            insn = self.insns[index]
            operands = [state.regs[insn.dst]] + ([state.regs[insn.src]] if insn.source == isa.X else [])
            ids = {reg.id for reg in operands if reg.is_scalar and reg.id}
            if ids:
                return Step(index, depth, None, frozenset(_linked(state, ids)))
        plain = self._plain.get((index, depth))
        if plain is None:
            plain = self._plain[(index, depth)] = Step(index, depth)
        return plain

    def demand(self, state: State, places: Iterable[Place]) -> None:
        """The bounds of `places` in `state` decided something: make them, and every value they
        came from, precise in the checkpoints of the path."""
        boundaries = self.boundaries
        history, checkpoint = state.history, state.parent
        try:
            wanted = {p for p in places if _is_scalar(state, p)}
            while wanted:
                deepest = max(place[0] for place in wanted)  # the deepest frame a wanted place is in
                for record in reversed(history):
                    boundary = record.index in boundaries
                    if deepest > record.depth and not boundary:
                        raise _GiveUp  # a frame this instruction did not run in (a callback's)
                    added = self._backtrack(record, wanted)
                    if not wanted:
                        return
                    if boundary:
                        deepest = max(place[0] for place in wanted)
                    elif added:
                        deepest = max(deepest, record.depth)
                if checkpoint is None:
                    return
                wanted = {p for p in wanted if _is_scalar(checkpoint.state, p)}
                if checkpoint.all_precise or wanted <= checkpoint.precise:
                    return
                checkpoint.precise |= wanted
                history, checkpoint = checkpoint.history, checkpoint.parent
        except _GiveUp:
            give_up(state)

    def _backtrack(self, record: Step, wanted: set[Place]) -> bool:
        """Turn the places wanted after the record's instruction into those wanted before it;
        whether it added any."""
        depth = record.depth
        alu = self.alu.get(record.index)
        if alu is not None:
            dst, src, replaced = alu
            place = (depth, "r", dst)
            if place not in wanted:
                return False
            if replaced:
                wanted.discard(place)
            if src is None:
                return False
            wanted.add((depth, "r", src))
            return True
        compare = self.compares.get(record.index)
        if compare is None:
            return _backtrack_other(self.insns[record.index], record, wanted)
        operands = {(depth, "r", compare[0])}
        if compare[1] is not None:
            operands.add((depth, "r", compare[1]))
        if record.linked:
            operands |= record.linked
        if wanted.isdisjoint(operands):
            return False
        wanted |= operands
        return True

    def inherit(self, state: State, covering: "Checkpoint") -> None:
        """`state` was pruned because `covering` holds it: what `covering`'s paths needed precise
        is needed of `state`'s values too (the kernel's propagate_precision)."""
        if covering.all_precise:
            give_up(state)
        elif covering.precise:
            self.demand(state, covering.precise)


def _address_reg(insn: Insn) -> int:
    """The register holding the address a load or store accesses."""
    load_acquire = insn.cls == isa.STX and insn.mode == isa.ATOMIC and insn.imm == isa.LOAD_ACQ
    return insn.src if insn.cls == isa.LDX or load_acquire else insn.dst


def is_conditional_jump(insn: Insn) -> bool:
    return insn.cls in (isa.JMP, isa.JMP32) and insn.op not in (isa.JA, isa.CALL, isa.EXIT, isa.JCOND)


def _stack_slot(reg: Reg, off: int) -> tuple[int, int] | None:
    if reg.type != RegType.PTR_TO_STACK or not reg.value.is_const:
        return None
    start = reg.off + off + isa.s64(reg.value.const_value)
    return (reg.frameno, (-start - 1) // SLOT_SIZE) if -isa.STACK_SIZE <= start < 0 else None


def _linked(state: State, ids: set[int]) -> Iterable[Place]:
    for depth, frame in enumerate(state.frames):
        for regno, reg in enumerate(frame.regs):
            if reg.is_scalar and reg.id in ids:
                yield (depth, "r", regno)
        for number, slot in frame.stack.items():
            if slot.spilled is not None and slot.spilled.is_scalar and slot.spilled.id in ids:
                yield (depth, "s", number)


class _GiveUp(Exception):
    """The walk met a value it cannot follow."""


def give_up(state: State) -> None:
    """Every scalar of every checkpoint on the path is precise."""
    checkpoint = state.parent
    while checkpoint is not None and not checkpoint.all_precise:
        checkpoint.all_precise = True
        checkpoint = checkpoint.parent


class Backedges:
    """Paths pruned against a state whose own paths were still being explored (a loop's): the
    marks that state's paths add later must reach the pruned paths' checkpoints too, or those
    would later cover states that differ in a scalar the loop depended on (the kernel's
    propagate_backedges). Each such path is marked again when its loop is done, and then, to a
    fixpoint, whenever another loop is done, since marks may keep flowing between loops."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self.waiting: dict[int, list[list]] = {}  # id(loop head) -> [state, covering, marks seen]
        self.settled: list[list] = []

    def add(self, loop: "Checkpoint", state: State, covering: "Checkpoint") -> None:
        """`state` was pruned against `covering`, whose marks are not final until `loop` is done."""
        self.waiting.setdefault(id(loop), []).append([state, covering, -1])

    def finished(self, checkpoint: "Checkpoint") -> None:
        """Every path from `checkpoint` is explored: mark the paths pruned in its loop again."""
        entries = self.waiting.pop(id(checkpoint), None)
        if entries is None:
            return
        self.settled.extend(entries)
        changed = True
        while changed:
            changed = False
            for entry in self.settled:
                state, covering, seen = entry
                marks = _marks(covering)
                if marks != seen:
                    entry[2] = marks
                    self.tracker.inherit(state, covering)
                    changed = True


def _marks(checkpoint: "Checkpoint") -> int:
    """How many marks a checkpoint has (marks are only ever added)."""
    return len(checkpoint.precise) + (1 << 30 if checkpoint.all_precise else 0)


def _is_scalar(state: State, place: Place) -> bool:
    depth, kind, number = place
    if depth >= len(state.frames):
        raise _GiveUp
    frame = state.frames[depth]
    if kind == "r":
        return frame.regs[number].is_scalar
    slot = frame.stack.get(number)
    return slot is not None and (slot.spilled is None or slot.spilled.is_scalar)


def _backtrack_other(insn: Insn, record: Step, wanted: set[Place]) -> bool:
    """Tracker._backtrack for the instructions that are neither ALU nor conditional jumps."""
    depth = record.depth
    cls = insn.cls
    if insn.is_lddw:
        wanted.discard((depth, "r", insn.dst))
        return False
    slot = (record.slot[0], "s", record.slot[1]) if record.slot else None
    if cls == isa.LDX:
        dst = (depth, "r", insn.dst)
        if dst in wanted:
            wanted.discard(dst)
            if slot:
                wanted.add(slot)
                return True
        return False
    if cls in (isa.ST, isa.STX):
        return _backtrack_store(insn, depth, slot, wanted)
    if cls == isa.LD:  # a legacy packet load: r0 from the packet, which the kernel does not follow back
        if (depth, "r", 0) in wanted:
            raise _GiveUp
        return False
    return _backtrack_jump(insn, record, wanted)


def _backtrack_store(insn: Insn, depth: int, slot: Place | None, wanted: set[Place]) -> bool:
    full = isa.SIZE_BYTES[insn.size] == SLOT_SIZE
    if insn.cls == isa.STX and insn.mode == isa.ATOMIC:
        loaded = [(depth, "r", 0)] if insn.imm == isa.CMPXCHG else \
            [(depth, "r", insn.src)] if insn.imm & isa.FETCH else []
        if insn.imm == isa.LOAD_ACQ:
            loaded = [(depth, "r", insn.dst)]
        added = False
        if any(place in wanted for place in loaded):
            wanted.difference_update(loaded)
            if slot:
                wanted.add(slot)
                added = True
        if slot in wanted and insn.imm != isa.LOAD_ACQ:
            wanted.add((depth, "r", insn.src))
            added = True
        return added
    if slot is None or slot not in wanted:
        return False
    if full:
        wanted.discard(slot)
    if insn.cls == isa.STX:
        wanted.add((depth, "r", insn.src))
        return True
    return False


def _is_local_call(insn: Insn) -> bool:
    return insn.opcode == isa.CALLX_OP or (insn.opcode == isa.CALL_OP and insn.src == isa.CALL_LOCAL)


def _backtrack_jump(insn: Insn, record: Step, wanted: set[Place]) -> bool:
    depth = record.depth
    if insn.opcode == isa.EXIT_OP:  # back into the callee: the caller's r0 is the callee's
        if depth and (depth - 1, "r", 0) in wanted:
            wanted.discard((depth - 1, "r", 0))
            wanted.add((depth, "r", 0))
            return True
        return False
    if _is_local_call(insn):  # back into the caller: the callee's arguments are the caller's
        callee = {place for place in wanted if place[0] > depth}
        if any(place[0] != depth + 1 or place[1] != "r" or place[2] not in _ARG_REGS for place in callee):
            raise _GiveUp
        wanted.difference_update(callee)
        wanted.update((depth, "r", place[2]) for place in callee)
        return bool(callee)
    if insn.opcode == isa.CALL_OP:  # a helper: r0 is its result, r1-r5 are gone after it
        wanted.difference_update([(depth, "r", number) for number in range(0, 6)])
        return False
    return False  # gotos and static branches (conditional jumps are Tracker._backtrack's)

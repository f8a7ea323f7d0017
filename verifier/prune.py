"""State pruning: when a new state needs no exploring because an explored one covers it.

An old state explored to the end without error *covers* a new state at the same instruction when
every value the new state can hold, in every register the rest of the function may read and in
every stack slot, is one the old state held: same types, scalar ranges inside the old ones,
pointer offsets equal, packet ranges at least as large, ids related one to one. Then every path
from the new state was already checked (the kernel's ``states_equal`` / ``regsafe`` /
``stacksafe``).

Which registers the rest of a function may read comes from a static liveness analysis over the
control-flow graph (the kernel tracks it dynamically; the static form is coarser but sound). A
register the old state never had initialised covers anything: the old paths never read it.
"""
from __future__ import annotations

from typing import AbstractSet, Sequence

from bpfjit import isa
from bpfjit.isa import Insn

from . import links
from .facts import Facts
from .length import implies
from .scalar import is_subset, synced
from .state import EMPTY_SLOT, PACKET_TYPES, Frame, Reg, RegType, Slot, SlotKind, State, offset_by

_ALL = frozenset(range(11))
_ARGS = frozenset(range(1, 6))
_CLOBBERED = frozenset(range(0, 6))


def _uses_defs(insn: Insn) -> tuple[frozenset[int], frozenset[int]]:
    """The registers an instruction reads and those it writes."""
    cls = insn.cls
    if cls in (isa.ALU, isa.ALU64):
        uses = set() if insn.op == isa.MOV else {insn.dst}
        if insn.source == isa.X and insn.op not in (isa.NEG, isa.END):
            uses.add(insn.src)
        return frozenset(uses), frozenset({insn.dst})
    if insn.is_lddw:
        return frozenset(), frozenset({insn.dst})
    if cls == isa.LD:  # BPF_LD_ABS/IND: the skb in r6 (and src) read, r0-r5 written as by a call
        return frozenset({6, insn.src} if insn.mode == isa.IND else {6}), _CLOBBERED
    if cls == isa.LDX:
        return frozenset({insn.src}), frozenset({insn.dst})
    if cls == isa.ST:
        return frozenset({insn.dst}), frozenset()
    if cls == isa.STX:
        if insn.mode != isa.ATOMIC:
            return frozenset({insn.dst, insn.src}), frozenset()
        if insn.imm == isa.LOAD_ACQ:
            return frozenset({insn.src}), frozenset({insn.dst})
        if insn.imm == isa.CMPXCHG:
            return frozenset({insn.dst, insn.src, 0}), frozenset({0})
        written = {insn.src} if insn.imm & isa.FETCH else set()
        return frozenset({insn.dst, insn.src}), frozenset(written)
    if cls in (isa.JMP, isa.JMP32):
        if insn.opcode == isa.EXIT_OP:
            return frozenset({0}), frozenset()
        if insn.op == isa.CALL:
            uses = _ARGS | ({insn.callx_reg} if insn.source == isa.X else set())
            return frozenset(uses), _CLOBBERED
        if insn.op in (isa.JA, isa.JCOND):
            return frozenset(), frozenset()
        uses = {insn.dst} | ({insn.src} if insn.source == isa.X else set())
        return frozenset(uses), frozenset()
    return frozenset(), frozenset()


class Liveness:
    """For each instruction, the registers that some path from it may read before writing."""

    def __init__(self, insns: Sequence[Insn], facts: Facts):
        self.insns = insns
        effects = {index: _uses_defs(insns[index]) for index in facts.successors}
        live: dict[int, frozenset[int]] = {index: frozenset() for index in facts.successors}
        changed = True
        order = sorted(facts.successors, reverse=True)
        while changed:
            changed = False
            for index in order:
                uses, defs = effects[index]
                out = frozenset().union(*(live.get(s, frozenset()) for s in facts.successors[index]))
                new = uses | (out - defs) | {isa.FRAME_POINTER}
                if new != live[index]:
                    live[index] = new
                    changed = True
        self._live = live

    def live_in(self, index: int) -> frozenset[int]:
        return self._live.get(index, _ALL)

    def frame_live(self, state: State, depth: int, index: int) -> frozenset[int]:
        """Live registers of frame `depth`: the top frame at `index`, a caller after its call."""
        if depth == len(state.frames) - 1:
            return self.live_in(index)
        callee = state.frames[depth + 1]
        if callee.callback_ret is not None:
            return _ALL
        return self.live_in(callee.callsite + 1) - _CLOBBERED


class _Ids:
    """A one-to-one map between the ids of the old state and those of the new one (as the
    kernel's check_ids), or, against a widened state, a map from old ids to new ones: two
    pointers a widened state does not relate may be related in the new one, which then knows
    more, never less."""

    __slots__ = ("forward", "backward")

    def __init__(self, one_to_one: bool = True) -> None:
        self.forward: dict[int, int] = {}
        self.backward: dict[int, int] | None = {} if one_to_one else None

    def same(self, old: int, new: int) -> bool:
        if not old and not new:
            return True
        if self.forward.setdefault(old, new) != new:
            return False
        return self.backward is None or self.backward.setdefault(new, old) == old


def covers(old: State, new: State, liveness: Liveness, index: int, precise: AbstractSet | None = None,
           widened: bool = False) -> bool:
    """Whether every concrete state of `new` at `index` is one of `old` (as far as the rest of
    the program may look). precise: the places (verifier/precision.py) whose scalar bounds the
    paths from `old` depended on; the other scalars of `old` hold any scalar. None: all.
    widened: `old` is a widened state (verifier/widen.py), whose ids and packet pointers are
    compared by what they mean rather than one to one."""
    return _compare(old, new, liveness, index, exact=False, precise=precise, widened=widened)


def equal(old: State, new: State, liveness: Liveness, index: int) -> bool:
    """Whether the two states at `index` are the same (a path that came back unchanged: a loop)."""
    return _compare(old, new, liveness, index, exact=True)


def _compare(old: State, new: State, liveness: Liveness, index: int, exact: bool,
             precise: AbstractSet | None = None, widened: bool = False) -> bool:
    if len(old.frames) != len(new.frames) or len(old.refs) != len(new.refs):
        return False
    if (old.lock is None) != (new.lock is None):
        return False
    ids = _Ids(one_to_one=not widened)
    linked = []  # (old link, new register) of the registers compared (verifier/links.py): checked together
    if old.lock and ((old.lock.map_handle, old.lock.offset) != (new.lock.map_handle, new.lock.offset)
                     or not ids.same(old.lock.reg_id, new.lock.reg_id)):
        return False
    for depth, (a, b) in enumerate(zip(old.frames, new.frames)):
        if a.callsite != b.callsite or a.subprog != b.subprog:
            return False
        old_regs, new_regs = a.regs, b.regs
        for regno in liveness.frame_live(new, depth, index):
            old_reg, new_reg = old_regs[regno], new_regs[regno]
            if old_reg.link is not None:
                linked.append((old_reg.link, new_reg))
            if precise is not None and old_reg.is_scalar and (depth, "r", regno) not in precise:
                if not new_reg.is_scalar:
                    return False
            elif not _reg_covers(old_reg, new_reg, ids, exact):
                return False
        if not _stack_covers(a, b, ids, exact, depth, precise):
            return False
    if linked and not links.covers(linked):
        return False
    return all(ids.same(x.id, y.id) for x, y in zip(old.refs, new.refs))


def _reg_covers(old: Reg, new: Reg, ids: _Ids, exact: bool) -> bool:
    if old is new:  # one register shared by both states (a copy of a state shares its registers)
        return ids.same(old.id, new.id) and ids.same(old.ref_obj_id, new.ref_obj_id)
    if exact:  # equal but for the numbering of ids
        if old.type == new.type == RegType.NOT_INIT:
            return True
        return old.evolve(id=0, ref_obj_id=0) == new.evolve(id=0, ref_obj_id=0) and \
            ids.same(old.id, new.id) and ids.same(old.ref_obj_id, new.ref_obj_id)
    if old.type == RegType.NOT_INIT:
        return True
    if old.type != new.type or old.maybe_null != new.maybe_null:
        return False
    if old.is_scalar:
        if old.id and not ids.same(old.id, new.id):
            return False
        # Against a widened state, a scalar whose ranges were reset (its tnum still knowing
        # better) is judged by the values it holds: else a loop that keeps making one is never
        # covered, and widened again and again to the same state.
        if not (is_subset(old.value, new.value) or (ids.backward is None and is_subset(old.value, synced(new.value)))):
            return False
        return old.length_bound is None or implies(old.length_bound, new.length_bound, new.value)
    if (old.map, old.mem_size, old.frameno, old.subprog, old.targets, old.rdonly, old.ringbuf, old.obj) != \
            (new.map, new.mem_size, new.frameno, new.subprog, new.targets, new.rdonly, new.ringbuf, new.obj):
        return False
    if old.type in PACKET_TYPES and not _packet_covers(old, new, ids.backward is None):
        return False
    if new.range < old.range and old.type == RegType.PTR_TO_MEM:  # fewer proven raw bytes
        return False
    if not (ids.same(old.id, new.id) and ids.same(old.ref_obj_id, new.ref_obj_id)):
        return False
    if old.length_bound is not None and (old.off != new.off or not implies(old.length_bound, new.length_bound,
                                                                           new.value)):
        return False
    if old.off != new.off:  # a widened pointer (verifier/widen.py): compare whole offsets
        return is_subset(offset_by(old.value, old.off), offset_by(new.value, new.off))
    return is_subset(old.value, new.value)


def _packet_covers(old: Reg, new: Reg, widened: bool) -> bool:
    """The new packet pointer may access every byte the old one may: the same offset and a
    range at least as long, or, against a widened pointer, no less room behind and ahead."""
    if old.off == new.off:
        return new.range >= old.range
    return widened and new.off >= old.off and new.range - new.off >= old.range - old.off


def _stack_covers(old: Frame, new: Frame, ids: _Ids, exact: bool, depth: int = 0,
                  precise: AbstractSet | None = None) -> bool:
    for number in old.stack.keys() | new.stack.keys():
        a, b = old.slot(number), new.slot(number)
        if a is b and (a.spilled is None or not (a.spilled.id or a.spilled.ref_obj_id)):
            continue  # one slot shared by both states
        if precise is not None and not exact and a.is_spill and a.spilled.is_scalar \
                and (depth, "s", number) not in precise:
            if not _holds_scalar(b):
                return False
            continue
        if exact:
            if a.kinds != b.kinds or (a.spilled is None) != (b.spilled is None) or \
                    (a.spilled is not None and not _reg_covers(a.spilled, b.spilled, ids, exact=True)):
                return False
            continue
        if not _slot_covers(a, b, ids):
            return False
    return True


def _holds_scalar(slot: Slot) -> bool:
    """A slot a load reads a scalar from: a spilled scalar, or data (the kernel's
    scalar_reg_for_stack)."""
    if slot.is_spill:
        return slot.spilled.is_scalar
    return all(kind in (SlotKind.MISC, SlotKind.ZERO) for kind in slot.kinds)


def _slot_covers(old: Slot, new: Slot, ids: _Ids) -> bool:
    if old == EMPTY_SLOT:
        return True
    if old.is_spill:
        return new.is_spill and _reg_covers(old.spilled, new.spilled, ids, exact=False)
    for a, b in zip(old.kinds, new.kinds):
        if a == SlotKind.INVALID:
            continue
        if a == SlotKind.MISC and b in (SlotKind.MISC, SlotKind.ZERO, SlotKind.SPILL) and \
                (b != SlotKind.SPILL or (new.spilled is not None and new.spilled.is_scalar)):
            continue
        if a == SlotKind.ZERO and b == SlotKind.ZERO:
            continue
        if a == b == SlotKind.SPILL and old.spilled == new.spilled:
            continue
        return False
    return True

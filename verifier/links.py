"""Registers that move in step: a raw program's pointer walking its memory beside the counter
that bounds its loop.

clang -O2 turns ``for (i = 0; i < n; i++) x = p[i]`` into a pointer and a counter that each move
by a constant on every trip (``p += 4; i += 1; if i < n goto``). The loop's test bounds the
counter (verifier/length.py); the access goes through the pointer, whose widened offset no test
bounds, so without more it keeps a run-time check. A :class:`Link` says how such registers stay
related: a register's value (a pointer's whole offset, fixed plus variable) is ``scale * X +
shift`` modulo 2**64, for one number X shared by every register of the state that carries the
same tag, and fixed for the whole path. So:

* a register moved by a constant keeps its link, its shift moved alike (the sum is modulo 2**64,
  so wrapping does not matter); copies, spills and refinements keep it (the value is the same);
  every other write makes a register without one;
* an access through a linked pointer is bounded through any linked scalar: if the pointer is
  ``m * K + e`` for the scalar's value K, what the scalar's bounds and length bound say bounds
  the access (:func:`access_bound`);
* links are made only where a loop head is widened (verifier/widen.py): at two visits on which a
  scalar and a pointer are both known exactly, and the pointer moved a whole multiple of what the
  scalar did, the scale and shift that hold on both are the link (:func:`found`). A later
  widening keeps the links both states have alike once each tag's X is aligned (a trip moves
  every shift); pruning asks the new state for every relation the old one's links say
  (:func:`covers`). Links are kept in registers only: a spill drops them.

This is bpfjit's own rule, for raw programs, whose memory has no size the kernel could know; the
kernel's linked scalars (6.11's BPF_ADD_CONST) relate copies of one scalar with scale 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from bpfjit.isa import MASK64, s64

if TYPE_CHECKING:
    from .state import Reg, State


@dataclass(frozen=True, slots=True)
class Link:
    """value == scale * X + shift (mod 2**64), X the same for every register with this tag."""
    tag: int
    scale: int  # at least 1
    shift: int  # in [0, 2**64)

    def moved(self, delta: int) -> "Link":
        """The link of the register after it moves by delta."""
        return Link(self.tag, self.scale, (self.shift + delta) & MASK64)


def whole_constant(reg: "Reg") -> int | None:
    """The value a scalar, or a raw pointer's whole offset, has if it is known exactly."""
    value = reg.value
    if not value.is_const or not (reg.is_scalar or reg.is_raw):
        return None
    return (value.const_value + reg.off) & MASK64


def found(old: Sequence["Reg"], new: Sequence["Reg"], live: Iterable[int], new_tag: Callable[[], int]) \
        -> dict[int, Link]:
    """Links for the registers of a frame widened from two visits of a loop head (old, new): the
    first live scalar known exactly on both, with different values, leads (scale 1); each other
    live scalar or raw pointer known exactly on both, which moved a positive whole multiple of
    what the leader did, follows it. No links unless a pointer follows (only accesses use them)."""
    pairs = [(number, whole_constant(old[number]), whole_constant(new[number])) for number in sorted(live)
             if old[number].link is None and new[number].link is None]
    pairs = [(number, a, b) for number, a, b in pairs
             if a is not None and b is not None and a != b and old[number].type is new[number].type]
    if len(pairs) < 2:
        return {}
    lead, lead_old, lead_new = next(((n, a, b) for n, a, b in pairs if new[n].is_scalar), (None, 0, 0))
    if lead is None:
        return {}
    step = s64(lead_new - lead_old)
    scales = {}
    for number, a, b in pairs:
        moved = s64(b - a)
        if moved % step == 0 and moved // step >= 1:
            scales[number] = (moved // step, a)
    if not any(new[number].is_raw for number in scales):
        return {}
    tag = new_tag()
    return {number: Link(tag, scale, (start - scale * lead_old) & MASK64) for number, (scale, start) in scales.items()}


Place = tuple[int, int]  # (frame depth, register number)


def _linked(state: "State") -> dict[Place, Link]:
    return {(depth, number): reg.link for depth, frame in enumerate(state.frames)
            for number, reg in enumerate(frame.regs) if reg.link is not None}


def _canonical(linked: dict[Place, Link]) -> dict[Place, Link]:
    """The same relations, with each tag's X moved so that its first register of scale 1 has
    shift 0: two visits of a loop head whose registers moved in step get equal links. (A tag
    with no register of scale 1 is left out: nothing fixes its X.)"""
    bases: dict[int, int] = {}
    for place in sorted(linked):
        link = linked[place]
        if link.scale == 1:
            bases.setdefault(link.tag, link.shift)
    return {place: Link(link.tag, link.scale, (link.shift - link.scale * bases[link.tag]) & MASK64)
            for place, link in linked.items() if link.tag in bases}


def widen(old: "State", new: "State", joined: "State", live: Iterable[int],
          new_tag: Callable[[], int] | None) -> None:
    """Give the registers of a state widened from old and new (verifier/widen.py) the links
    both have, once their tags' X are aligned, and no other (a register both share keeps its
    link only if the others moved with it); with new_tag, link the loop frame's registers that
    moved in step between the two and had none (:func:`found`)."""
    old_links, new_links = _canonical(_linked(old)), _canonical(_linked(new))
    for depth, frame in enumerate(joined.frames):
        regs = frame.regs
        for number, reg in enumerate(regs):
            link = old_links.get((depth, number))
            kept = link if link is not None and new_links.get((depth, number)) == link and (
                reg.is_scalar or reg.is_raw) else None
            if reg.link != kept:
                regs[number] = reg.evolve(link=kept)
    if new_tag is not None:
        in_step(old, new, joined, live, new_tag)


def in_step(old: "State", new: "State", target: "State", live: Iterable[int], new_tag: Callable[[], int]) -> None:
    """Link the registers of target's loop frame that moved in step from old to new, two visits
    of a loop head, and had no link (:func:`found`). target: the state widened from the two, or
    new itself (the links hold on the values both know exactly), so that the trips walked before
    the loop is widened are linked too."""
    depth = len(target.frames) - 1
    if len(old.frames) != len(new.frames) or old.frames[depth].callsite != new.frames[depth].callsite:
        return  # the head reached in another call
    regs = target.frames[depth].regs
    for number, link in found(old.frames[depth].regs, new.frames[depth].regs, live, new_tag).items():
        regs[number] = regs[number].evolve(link=link)


def covers(pairs: Iterable[tuple[Link, "Reg"]]) -> bool:
    """Whether the new state's registers keep the relations the old state's links say, given
    (old link, new register) for each register compared. For each old tag, either the new
    registers are all linked, sharing one tag and their scales, and one X of the old state fits
    each new state's X (X_old = X_new + delta, delta fixed by a register of scale 1, else 0); or
    they are all known exactly (walked before the loop was linked), and one X_old fits their
    values (fixed by a register of scale 1)."""
    groups: dict[int, list[tuple[Link, "Reg"]]] = {}
    for old, new in pairs:
        groups.setdefault(old.tag, []).append((old, new))
    return all(_group_covers(group) for group in groups.values())


def _group_covers(group: list[tuple[Link, "Reg"]]) -> bool:
    if all(new.link is not None for _, new in group):
        tag = group[0][1].link.tag
        delta = next(((new.link.shift - old.shift) for old, new in group if old.scale == 1), 0)
        return all(new.link.tag == tag and new.link.scale == old.scale
                   and not (new.link.shift - old.shift - old.scale * delta) & MASK64 for old, new in group)
    values = [whole_constant(new) for _, new in group]
    x = next((value - old.shift for (old, _), value in zip(group, values) if old.scale == 1 and value is not None),
             None)
    return x is not None and all(value is not None and not (old.scale * x + old.shift - value) & MASK64
                                 for (old, _), value in zip(group, values))


def access_bound(pointer: Link, regs: Sequence["Reg"]) -> Iterable[tuple[int, int, int]]:
    """The ways the pointer's whole offset is m * K + e for the value K of a linked scalar
    register: (register number, m, e), e as a signed number."""
    for number, reg in enumerate(regs):
        link = reg.link
        if link is not None and link.tag == pointer.tag and reg.is_scalar and pointer.scale % link.scale == 0:
            m = pointer.scale // link.scale
            yield number, m, s64(pointer.shift - m * link.shift)

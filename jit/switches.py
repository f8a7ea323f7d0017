"""Recover switches from the compare trees clang emits for them.

BPF has no indirect jump, so clang lowers a C ``switch`` to a binary search tree of compares
against constants (``if w1 > 31 goto``, ``if w1 > 15 goto``, ..., ``if w1 == 5 goto``). Lowered
as it stands, that is one LLVM block per compare, and LLVM does not rebuild the switch: it keeps
the tree, spends most of a compile on it, and never gets to a jump table or a lookup table.

A tree here is a conditional jump on a register against an immediate (the root, anywhere) whose
successors are further such jumps on the same register and width, each alone in its block and
reached only from its parent. Following the tree splits the register's values into intervals per
leaf block; when the root's block masks the register first (``w4 &= 63``, as a switch on
``x & 63`` compiles), only the masked values are split, the others cannot occur. One leaf
becomes the switch's default (the one with the most values); every other leaf's values become
cases, when there are few enough of them. A tree's ordered compares are all unsigned or all
signed (clang's usual choice for an int); a signed tree works on values with their sign bit
flipped, which orders them as unsigned, so every interval lives in one domain.

When every leaf applies the same ALU operation with an immediate to the same register and then
jumps to the same place (``case 3: r += 7; break;``), or is that place itself (the operation's
identity: ``case 0: break;``), the switch only picks the immediate: a :class:`Fold`. Lowered as
a phi of constants, LLVM turns it into a lookup table; lowered as separate blocks, LLVM cannot
sink the operation out of them (one case has none) and keeps a jump table of blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from bpfjit import isa
from bpfjit.isa import Insn
from bpfjit.verifier.facts import Facts

_UNSIGNED = (isa.JGT, isa.JGE, isa.JLT, isa.JLE)
_SIGNED = {isa.JSGT: isa.JGT, isa.JSGE: isa.JGE, isa.JSLT: isa.JLT, isa.JSLE: isa.JLE}
_FOLLOWED = (isa.JEQ, isa.JNE, *_UNSIGNED, *_SIGNED)
_IDENTITY = {isa.ADD: 0, isa.SUB: 0, isa.OR: 0, isa.XOR: 0, isa.AND: -1}  # and MOV, which has none
MIN_TESTS = 3      # a smaller tree is left to LLVM as it is
MAX_CASES = 1 << 16  # values that may become cases (the default takes the rest)

Intervals = list[tuple[int, int]]  # inclusive, disjoint


@dataclass(frozen=True)
class Fold:
    """Every leaf is ``dst op= imm; goto join`` (opcode: the ALU instruction's, with an immediate),
    or ``join`` itself, standing for the operation's identity."""
    opcode: int
    dst: int
    join: int
    imms: tuple[tuple[int, int], ...]  # (leaf slot, its immediate)

    @property
    def bits(self) -> int:
        return 64 if self.opcode & 0x07 == isa.ALU64 else 32


@dataclass(frozen=True)
class Switch:
    """One recovered tree: ``switch reg (as bits) { value -> leaf slot }``, else ``default``."""
    reg: int
    bits: int
    cases: tuple[tuple[int, int], ...]  # (value, leaf slot)
    default: int
    absorbed: frozenset[int]  # slots of the interior compares, which no longer need code
    fold: Fold | None = None
    skipped: frozenset[int] = frozenset()  # folded leaves' slots only the tree reached: no code


def _is_test(insn: Insn, signed: bool | None = None) -> bool:
    """A compare of a register with an immediate; with `signed` given, one a tree of that kind
    may hold (equality compares fit either)."""
    if insn.cls not in (isa.JMP, isa.JMP32) or insn.op not in _FOLLOWED or insn.source != isa.K:
        return False
    return signed is None or insn.op in (isa.JEQ, isa.JNE) or (insn.op in _SIGNED) == signed


def _split(op: int, k: int, top: int) -> tuple[Intervals, Intervals]:
    """The values v in [0, top] for which `v op k` holds, and those for which it does not."""
    below, at, above = (0, k - 1), (k, k), (k + 1, top)
    if op == isa.JEQ:
        taken, not_taken = [at], [below, above]
    elif op == isa.JNE:
        taken, not_taken = [below, above], [at]
    elif op == isa.JGT:
        taken, not_taken = [above], [(0, k)]
    elif op == isa.JGE:
        taken, not_taken = [(k, top)], [below]
    elif op == isa.JLT:
        taken, not_taken = [below], [(k, top)]
    else:  # JLE
        taken, not_taken = [(0, k)], [above]
    return taken, not_taken


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    """The values in both (empty intervals, such as (0, -1) for "below 0", drop out)."""
    out = []
    for lo, hi in a:
        for blo, bhi in b:
            low, high = max(lo, blo), min(hi, bhi)
            if low <= high:
                out.append((low, high))
    return out


def find_switches(insns: Sequence[Insn], start: int, end: int, facts: Facts) -> dict[int, Switch]:
    """The recoverable trees of the function in [start, end), by the slot of their root jump.

    (The second slot of an ld_imm64 has opcode 0, class LD: never a test, never a jump.)
    """
    tests = [index for index in range(start, end) if _is_test(insns[index])]
    if len(tests) < MIN_TESTS:
        return {}
    block_starts = facts.block_starts
    predecessors = facts.predecessor_counts(start, end)
    found: dict[int, Switch] = {}
    absorbed: set[int] = set()
    tried: set[int] = set()  # the interior compares of trees too large to recover
    for index in tests:
        if index in absorbed or index in tried:
            continue
        switch = _recover(insns, index, start, end, block_starts, predecessors, tried)
        if switch is not None:
            found[index] = switch
            absorbed |= switch.absorbed
    return {root: s for root, s in found.items() if root not in absorbed}


def _recover(insns: Sequence[Insn], root: int, start: int, end: int, block_starts: frozenset[int],
             predecessors: dict[int, int], tried: set[int]) -> Switch | None:
    """The switch rooted at `root`, or None. A tree with more than MAX_CASES cases adds its
    interior compares to `tried`: they are not tried as roots again, so the search stays linear
    in the function's size (a chain of n compares would otherwise be walked from each of them)."""
    first = insns[root]
    bits = 32 if first.cls == isa.JMP32 else 64
    top = (1 << bits) - 1
    signed = first.op in _SIGNED
    bias = 1 << (bits - 1) if signed else 0  # value ^ bias orders signed values as unsigned
    leaves: dict[int, Intervals] = {}
    edges: dict[int, int] = {}  # leaf -> how many tree edges enter it
    absorbed: set[int] = set()

    reg, cls = first.dst, first.cls

    def interior(slot: int) -> bool:
        # Reached only from its parent, alone in its block (the next slot starts another one).
        if predecessors.get(slot) != 1 or slot + 1 not in block_starts or slot in (root, start) \
                or slot in absorbed or not start <= slot < end:
            return False
        insn = insns[slot]
        return insn.dst == reg and insn.cls == cls and _is_test(insn, signed)

    limit = _mask_limit(insns, root, block_starts)
    pending = [(root, [(bias, (limit if limit is not None else top) ^ bias)] if limit is not None else [(0, top)])]
    while pending:
        slot, values = pending.pop()
        insn = insns[slot]
        taken, not_taken = _split(_SIGNED.get(insn.op, insn.op), (insn.imm & top) ^ bias, top)
        for successor, part in ((insn.jump_target(slot), _intersect(values, taken)),
                                (slot + 1, _intersect(values, not_taken))):
            if not part:
                continue
            if interior(successor):
                absorbed.add(successor)
                pending.append((successor, part))
            else:
                leaves.setdefault(successor, []).extend(part)
                edges[successor] = edges.get(successor, 0) + 1
    if len(absorbed) + 1 < MIN_TESTS:
        return None
    size = {leaf: sum(hi - lo + 1 for lo, hi in parts) for leaf, parts in leaves.items()}
    default = max(size, key=lambda leaf: (size[leaf], -leaf))
    if sum(size.values()) - size[default] > MAX_CASES:
        tried |= absorbed
        return None
    cases = sorted((value ^ bias, leaf) for leaf, parts in leaves.items() if leaf != default
                   for lo, hi in parts for value in range(lo, hi + 1))
    fold = _fold(insns, sorted(leaves), block_starts)
    skipped: set[int] = set()
    for leaf, _ in fold.imms if fold is not None else ():
        # A leaf only the tree reaches needs no code: its operation and its goto (not a leaf that
        # falls through into the join, whose next slot is the join itself).
        if fold.join not in (leaf, leaf + 1) and predecessors.get(leaf) == edges[leaf] and leaf + 1 not in block_starts:
            skipped |= {leaf, leaf + 1}
    return Switch(first.dst, bits, tuple(cases), default, frozenset(absorbed), fold, frozenset(skipped))


def _fold(insns: Sequence[Insn], leaves: list[int], block_starts: frozenset[int]) -> Fold | None:
    """The Fold of these leaves, if they have that shape."""
    shapes = {}
    for leaf in leaves:
        insn = insns[leaf]
        if not (insn.cls in (isa.ALU, isa.ALU64) and insn.source == isa.K and insn.off == 0
                and (insn.op in _IDENTITY or insn.op == isa.MOV) and leaf + 1 < len(insns)):
            continue
        after = insns[leaf + 1]
        # Then a goto, or a fall-through into the join (clang puts one case right before it).
        join = after.jump_target(leaf + 1) if after.opcode == isa.JA_OP and after.src == 0 else leaf + 1
        shapes[leaf] = (insn.opcode, insn.dst, join, insn.imm)
    # The join itself may look like a leaf of another shape (its own first instruction).
    for opcode, dst, join in sorted({shape[:3] for shape in shapes.values()}):
        if join not in block_starts:
            continue
        # Only a 64-bit operation has an identity: a 32-bit one also clears the upper half.
        identity = _IDENTITY.get(opcode & 0xF0) if opcode & 0x07 == isa.ALU64 else None
        imms = []
        for leaf in leaves:
            if leaf != join and leaf in shapes and shapes[leaf][:3] == (opcode, dst, join):
                imms.append((leaf, shapes[leaf][3]))
            elif leaf == join and identity is not None:
                imms.append((leaf, identity))
            else:
                break
        else:
            return Fold(opcode, dst, join, tuple(imms))
    return None


def _mask_limit(insns: Sequence[Insn], root: int, block_starts: frozenset[int]) -> int | None:
    """K when the root's register was last set by ``reg &= K`` (K >= 0) earlier in the root's
    block, so that it holds 0..K; None when anything else may have set it."""
    reg = insns[root].dst
    index = root
    while index not in block_starts and index > 0:
        index -= 1
        insn = insns[index]
        if isa.is_filler(insns, index):
            continue
        if insn.cls in (isa.JMP, isa.JMP32) or (insn.cls == isa.STX and insn.mode == isa.ATOMIC and insn.src == reg):
            return None  # a call, or an atomic fetch, may have written it
        if insn.cls == isa.LD and reg in (0, insn.dst):
            return None  # ld_imm64 writes dst; legacy packet loads write r0
        if insn.cls in (isa.ALU, isa.ALU64, isa.LDX) and insn.dst == reg:
            if insn.cls != isa.LDX and insn.op == isa.AND and insn.source == isa.K and insn.imm >= 0:
                return insn.imm
            return None
    return None

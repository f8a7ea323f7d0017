"""What analysis proved about a program, handed to the JIT as its licence to drop checks.

The program's shape: its functions and its one control-flow graph (every pass that walks edges,
the ctx rewriting and switch recovery among them, reads them here instead of deriving them
again); and what the verifier proved: whether every access is safe, and which accesses only a
run-time check can make safe. The JIT imports this module and nothing else of the verifier.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


SLOT_SIZE = 8  # a stack slot: slot k is [fp - 8(k+1), fp - 8k) (zeroed_slots; verifier/state.py)


@dataclass(frozen=True)
class Function:
    """A BPF function: slots [start, end). Function 0 is the program's entry."""
    start: int
    end: int
    calls: frozenset[int]  # start slots of the functions it calls directly


@dataclass(frozen=True)
class Facts:
    functions: tuple[Function, ...]
    # Slots that begin a basic block inside their function (jump targets and fall-throughs).
    block_starts: frozenset[int]
    # The control-flow graph: for every instruction slot (not the second slot of an ld_imm64),
    # the slots that may run next inside its function. A call continues at the next slot; exit
    # has none; a conditional jump, a static-branch JA and may_goto have two.
    successors: Mapping[int, tuple[int, ...]]
    # What the verifier proved (bpfjit/program.py fills these in after it accepts the program).
    # Not verified: the JIT checks every memory access against the run's regions (a sandbox).
    verified: bool = False
    # Verified accesses through a raw program's memory (r1, whose size only the run knows): the
    # JIT checks these against [memory, memory + length) at run time; the others need no check.
    checked_accesses: frozenset[int] = frozenset()
    # Whether the verifier proved every helper's pointer arguments (none is raw memory): then
    # helpers, and the JIT's inlined map lookups, need not check them.
    helper_args_proven: bool = False
    # (function start, slot number) of stack slots a path may read before writing them: the JIT
    # zeroes them on entry (slot k is [fp - 8(k+1), fp - 8k)), as the interpreter's stack is.
    zeroed_slots: frozenset[tuple[int, int]] = frozenset()
    # Instructions no path reaches (the verifier walked every path): the JIT lowers each as a
    # trap, as the kernel sanitizes dead code, and they may hold what a live path may not (a
    # write to r10).
    dead: frozenset[int] = frozenset()
    # 64-bit ADD/SUB instructions that move a pointer on some path, by slot: the register that
    # holds the pointer (the destination, or the source of ``scalar += ptr``), -1 when paths
    # differ. The JIT derives the result from that pointer, so that LLVM sees pointer arithmetic
    # (jit/lower.py).
    pointer_moves: Mapping[int, int] = field(default_factory=dict)
    # 64-bit conditional jumps outside loops between two registers that hold pointers (not
    # function pointers, which the JIT keeps as numbers) on every path: the JIT compares their
    # pointers, so that their numbers (and the phis that carry them) can go.
    pointer_compares: frozenset[int] = frozenset()
    # Each callx of a verified program, by slot: the functions the verifier followed it into (those
    # whose prototype fits the pointer's). The JIT reaches only these from it; any other value
    # ends the run (BAD_CALLX), even one written into a function-pointer slot behind the checks.
    callx_sites: Mapping[int, frozenset[int]] = field(default_factory=dict)
    # A raw program's loops are proven safe but not finite (verifier/widen.py): every engine
    # counts the jumps of an invocation along loop_edges (source slot, target slot; verifier/cfg.py
    # loop_edges: one on every cycle) and ends it with LOOP_BUDGET past trip_limit of them
    # (runtime/status.py RAW_LOOP_TRIPS). None: not counted (a typed program's loops were walked
    # to their end, as the kernel walks them).
    trip_limit: int | None = None
    loop_edges: frozenset[tuple[int, int]] = frozenset()

    @property
    def function_starts(self) -> frozenset[int]:
        return frozenset(f.start for f in self.functions)

    def predecessor_counts(self, start: int, end: int) -> dict[int, int]:
        """How many edges of the function in [start, end) enter each of its slots."""
        counts: dict[int, int] = {}
        for index in range(start, end):
            for successor in self.successors.get(index, ()):
                counts[successor] = counts.get(successor, 0) + 1
        return counts

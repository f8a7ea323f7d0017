"""What analysis proved about a program, handed to the JIT as its licence to drop checks.

Today that is the program's shape: its functions and its one control-flow graph (every pass that
walks edges, the ctx rewriting and switch recovery among them, reads them here instead of
deriving them again). The verifier adds register types and bounds per instruction. The JIT
imports this module and nothing else of the verifier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


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

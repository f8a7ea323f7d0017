"""What analysis proved about a program, handed to the JIT as its licence to drop checks.

Today that is the program's shape (its functions); the verifier of a later issue adds register
types and bounds per instruction. The JIT imports this module and nothing else of the verifier.
"""
from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def function_starts(self) -> frozenset[int]:
        return frozenset(f.start for f in self.functions)

    def function_at(self, start: int) -> Function:
        return next(f for f in self.functions if f.start == start)

"""Lowering of ``gotox rX``, the indirect jump of clang's jump tables (cpu v4).

rX holds the slot a jump table's entry names (runtime/jump_tables.py: the table's map holds
slots, and the loads from it were lowered as any load). The gotox becomes one LLVM ``switch`` on
that slot over the targets of its function's tables (Facts.successors: the structure check's
edges), each case the block of its slot; any other value ends the run with BAD_GOTOX, the
interpreters' error. The verifier proved that a verified program's value is one of the entries it
explored, so the default is never taken there, but it costs one compare and keeps a wrong
value from jumping anywhere. LLVM turns the switch into a table of block addresses.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from bpfjit.isa import Insn
from bpfjit.runtime.status import Status

if TYPE_CHECKING:
    from .lower import _FunctionLowering


def lower_gotox(f: "_FunctionLowering", insn: Insn, index: int) -> None:
    target = f.reg(insn.dst)
    bad = f.unique("gotox_bad")
    cases = " ".join(f"i64 {slot}, label %{f.edge(index, slot)}" for slot in f.facts.successors[index])
    f.emit(f"switch i64 {target}, label %{bad} [ {cases} ]")
    f.lines.append(f"{bad}:")
    f.fail(Status.BAD_GOTOX, index, target)

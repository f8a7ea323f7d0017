"""Shared helpers of the per-instruction semantics tests (tests/test_insns_*.py).

Programs are written in the bpf_conformance assembly syntax or built from ``isa.Insn`` lists, and
run through the public ``Program`` API with r1 = the memory buffer, r2 = its length.
"""
from __future__ import annotations

from bpfjit.program import Program

M64 = 0xFFFF_FFFF_FFFF_FFFF
# Junk put in the upper half of 32-bit operands: a correct ALU32/JMP32 never looks at it.
JUNK_HI = 0x5A5A_5A5A_0000_0000


def run(text: str, engine: str, mem: bytes = b"") -> int:
    return Program.from_asm(text).run(mem, engine=engine)


def run_result(text: str, engine: str, mem: bytes = b""):
    """The whole RunResult (retval and the memory after the run)."""
    return Program.from_asm(text).test_run(mem, engine=engine)


def _ids(cases):
    out = []
    for case in cases:
        out.append("-".join(f"{v:#x}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
                            for v in case))
    return out

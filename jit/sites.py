"""Patchable static-branch sites in the generated code.

A static-branch JA (goto_or_nop / nop_or_goto) becomes an LLVM ``callbr`` around inline asm that
emits a 5-byte NOP (``0f 1f 44 00 00``) and appends a record ``{site address, target address,
BPF instruction index}`` to the data section ``.data.bpfjit_sites``. The control-flow graph
LLVM sees has both successors, so the code after either is correct whichever way the site is
patched, and the hot path has no load, compare or flag test.

LLVM may copy a site (inlining a function into two callers, unrolling a loop); every copy adds
its own record, so all copies are patched. The records of a module lie between the symbol
``bpfjit_sites_begin`` (module asm, emitted before any function) and the global
``bpfjit_sites_end`` (emitted after the functions). ``.p2align 3,,4`` keeps the 5 bytes of each
site inside one aligned 8-byte word, so the runtime can patch a site with a single atomic store.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import llvmlite.binding as llvm

SECTION = ".data.bpfjit_sites"
RECORD = ctypes.c_uint64 * 3

MODULE_PROLOGUE = [
    f'module asm ".pushsection {SECTION},\\22aw\\22"',
    'module asm ".balign 8"',
    'module asm ".globl bpfjit_sites_begin"',
    'module asm "bpfjit_sites_begin:"',
    'module asm ".popsection"',
    f'@bpfjit_sites_end = global i64 0, section "{SECTION}", align 8',
]


@dataclass(frozen=True)
class Site:
    """One patchable 5-byte site of the machine code."""
    index: int  # the BPF instruction (a goto_or_nop / nop_or_goto) it implements
    address: int
    target: int  # where the jump goes when the site is patched to jmp


def site_asm(index: int, fallthrough: str, taken: str) -> str:
    """The callbr instruction of the site for instruction `index` (LLVM IR text)."""
    body = (f".p2align 3, , 4\\0A1: .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\\0A"
            f".pushsection {SECTION},\\22aw\\22\\0A.quad 1b, ${{0:l}}, {index}\\0A.popsection")
    return (f'callbr void asm sideeffect "{body}", "!i,~{{dirflag}},~{{fpsr}},~{{flags}}"() '
            f"to label %{fallthrough} [label %{taken}]")


def read_sites(engine: llvm.ExecutionEngine) -> list[Site]:
    """Every site copy the compiled module holds, from its record table."""
    begin = engine.get_global_value_address("bpfjit_sites_begin")
    end = engine.get_global_value_address("bpfjit_sites_end")
    sites = []
    for address in range(begin, end, ctypes.sizeof(RECORD)):
        site, target, index = RECORD.from_address(address)
        sites.append(Site(index, site, target))
    return sites

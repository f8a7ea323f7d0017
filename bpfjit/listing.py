"""Listings of a loaded program, as bpftool shows a program in the kernel: the BPF that runs
(``--xlated``, with the functions each function pointer and callx may lead to), the x86-64 code
the JIT made (``--jited``), and the maps a program uses.

They live here, beside the orchestration, because they read what only a loaded object knows (the
linker's function placement, BTF line info, the map table) and what only the JIT can print (LLVM's
assembly); the CLI only formats their text.
"""
from __future__ import annotations

import ctypes
import re
from typing import Sequence


from . import disasm, isa
from .errors import BPFError
from .isa import Insn
from .jit.sites import Site
from .object import Object
from .program import Program
from .runtime.elf import JUMP_TABLES_SECTION
from .runtime.elf_tables import read_sections
from .runtime.static_keys import NOP5

_MAP_SOURCES = (isa.PSEUDO_MAP_IDX, isa.PSEUDO_MAP_IDX_VALUE)


# The llvm-objdump syntax a listing gives: LLVM 22's for the objects clang-22 builds, LLVM 19's
# otherwise. Jump tables are what tells them apart: only LLVM 22 emits them for BPF (cpu v4), and
# the objects that use them are the ones whose listings are compared with llvm-objdump-22.
_LLVM_WITH_JUMP_TABLES, _LLVM_DEFAULT = 22, 19


def elf_objdump_version(data: bytes, name: str) -> int:
    """The llvm-objdump version whose syntax an ELF object's listing takes: 22 when it has a
    ``.jumptables`` section."""
    has_tables = any(s.name == JUMP_TABLES_SECTION for s in read_sections(data, name))
    return _LLVM_WITH_JUMP_TABLES if has_tables else _LLVM_DEFAULT


def objdump_version(obj: Object) -> int:
    """The llvm-objdump version whose syntax a loaded object's listings take: 22 when one of its
    programs loads a jump table."""
    return _LLVM_WITH_JUMP_TABLES if obj.elf.jump_tables else _LLVM_DEFAULT


def _map_index(obj: Object, insn: Insn) -> int | None:
    """The object's map an ld_imm64 loads (the map or an address in its value), or None."""
    if insn.is_lddw and insn.src in _MAP_SOURCES and 0 <= insn.imm < len(obj.elf.map_names):
        return insn.imm
    return None


def map_references(obj: Object, program: Program) -> list[str]:
    """The maps a program references through ld_imm64 (the map, or its value), in first-use order."""
    names: list[str] = []
    insns = program.insns
    for index, insn in enumerate(insns):
        found = None if isa.is_filler(insns, index) else _map_index(obj, insn)
        if found is not None and obj.elf.map_names[found] not in names:
            names.append(obj.elf.map_names[found])
    return names


def _map_note(obj: Object, insn: Insn) -> str:
    """What an ld_imm64 of a map loads, bpftool style: ``map[counts]``, ``map[.bss][0]+4``."""
    found = _map_index(obj, insn)
    if found is None:
        return ""
    name = obj.elf.map_names[found]
    return f"\t; map[{name}]" if insn.src == isa.PSEUDO_MAP_IDX else f"\t; map[{name}][0]+{insn.next_imm}"


def _callx_targets(program: Program, index: int) -> list[int]:
    """The functions the engines let the callx at ``index`` reach: those the verifier followed it
    into (whose prototype fits the pointer's; none when no path reaches it), or, in a program
    that was not verified, every function whose address is taken."""
    if program.facts.verified:
        return sorted(program.facts.callx_sites.get(index, ()))
    return program.env.callx_targets(program.facts.function_starts)


def _call_note(names: dict[int, str], program: Program, index: int) -> str:
    """Where a function pointer leads: the function an ld_imm64 of one names, or the functions a
    callx may reach."""
    insn = program.insns[index]
    if insn.is_lddw and insn.src == isa.PSEUDO_FUNC:
        return f"\t; func {names.get(index + 1 + insn.imm, '?')}"
    if insn.opcode == isa.CALLX_OP and insn.source == isa.X:
        targets = _callx_targets(program, index)
        if not targets:
            return "\t; never reached"
        return "\t; may call " + ", ".join(names.get(start, f"f{start}") for start in targets)
    return ""


def xlated_listing(obj: Object, program: Program) -> str:
    """The program as it runs (ctx accesses rewritten, subprograms appended), with the names of its
    functions and, where BTF line info has them, the source lines (``; ...``) above their code."""
    linked = next((p for p in obj.elf.programs if p.name == program.name), None)
    names = {f.number: f.name for f in obj.elf.functions}
    symbols = [(0, program.name)]
    if linked is not None:
        symbols = sorted((start, names.get(number, f"f{start}")) for number, start in linked.function_tokens.items())
    text = disasm.listing(program.insns, symbols, llvm=objdump_version(obj))
    lines = (obj.source_lines(program.name) if linked is not None else None) or ()
    out, last = [], None
    for line in text.splitlines():
        match = re.match(r"\s*(\d+):\t", line)
        if match:
            index = int(match.group(1))
            source = lines[index] if index < len(lines) else None
            if source is not None and source != last:
                out.append(f"; {source.text}")
                last = source
            line += _map_note(obj, program.insns[index]) + _call_note(dict(symbols), program, index)
        out.append(line)
    return "\n".join(out) + "\n"


def annotated_ir(program: Program, ir: str) -> str:
    """The lowered IR with each instruction's comment (``; insn N``) given its disassembly."""
    from .jit.lower import INSN_COMMENT
    lines = []
    for line in ir.splitlines():
        marker = line.strip()
        if marker.startswith(INSN_COMMENT) and marker[len(INSN_COMMENT):].isdigit():
            index = int(marker[len(INSN_COMMENT):])
            line = f"{line}: {disasm.insn_text(program.insns[index])}"
        lines.append(line)
    return "\n".join(lines)


def jited_listing(program: Program) -> str:
    """x86-64 assembly of the program's optimised module, as LLVM's code generator emits it, then
    the live bytes of its static-branch sites."""
    from .jit.engine import assembly_of  # only a listing of jitted code needs LLVM
    compiled = program.compile()
    try:
        listing = assembly_of(compiled.optimised_ir)
    except RuntimeError as exc:
        raise BPFError(f"{program.name}: LLVM could not emit assembly: {exc}") from None
    return listing + _static_site_listing(program, compiled.sites)


def _static_site_listing(program: Program, sites: Sequence[Site]) -> str:
    """The live machine code of each static-branch site, as it is patched now."""
    if not sites:
        return ""
    lines = ["", "; static-branch sites, as patched now:"]
    for site in sorted(sites, key=lambda s: (s.index, s.address)):
        code = ctypes.string_at(site.address, 5)
        key = program.env.static_keys.get(site.index)
        state = f"key {key.name} {'on' if key.enabled else 'off'}" if key else "no key"
        if code == NOP5:
            text = "nopl 0x0(%rax,%rax,1)"
        else:
            text = f"jmp {site.address + 5 + int.from_bytes(code[1:], 'little', signed=True):#x}"
        lines.append(f"{site.address:#x}:  {code.hex(' ')}    {text:<28} ; insn {site.index}, {state}")
    return "\n".join(lines) + "\n"

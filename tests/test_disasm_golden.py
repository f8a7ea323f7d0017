"""The disassembler against LLVM: every conformance program, and the bpfjit disasm verb on ELF.

tests/golden/conformance.objdump.txt holds what llvm-objdump-19 prints for the bytes bpfjit's
assembler produces for each conformance program (made by tests/golden/make_conformance_golden.py),
so this runs without LLVM installed. The conformance suite itself is outside data
(BPFJIT_CONFORMANCE_DIR, see conftest.py).
"""
from __future__ import annotations

import pathlib
import re

import pytest

from bpfjit import asm, disasm, isa
from bpfjit.cli import main

from conftest import conformance_case, conformance_dir, conformance_params

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "conformance.objdump.txt"
PROGS = pathlib.Path(__file__).resolve().parent / "progs"


def golden_programs() -> dict[str, list[tuple[int, bytes, str]]]:
    programs: dict[str, list[tuple[int, bytes, str]]] = {}
    current: list[tuple[int, bytes, str]] = []
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("== "):
            current = programs.setdefault(line[3:], [])
            continue
        index, raw, text = line.split("\t", 2)
        current.append((int(index), bytes.fromhex(raw), re.sub(r" <[\w.]+(\+0x[0-9a-f]+)?>$", "", text)))
    return programs


GOLDEN_PROGRAMS = golden_programs()


def test_golden_covers_the_whole_suite():
    assert sorted(GOLDEN_PROGRAMS) == sorted(p.stem for p in conformance_dir().glob("*.data"))


@pytest.mark.parametrize("path", conformance_params())
def test_disasm_matches_llvm_on_assembled_conformance_program(path):
    code = asm.assemble(conformance_case(path).asm)
    insns = isa.decode(code)
    ours = dict(disasm.disassemble(insns))
    expected = GOLDEN_PROGRAMS[path.stem]
    assert sorted(ours) == [index for index, _, _ in expected]
    for index, raw, text in expected:
        width = len(raw)
        assert code[index * 8:index * 8 + width] == raw, f"{path.stem}: assembler changed at insn {index}"
        assert ours[index] == text, f"{path.stem} insn {index}"


# clang-19's objects (golden: llvm-objdump-19) and clang-22's (golden: llvm-objdump-22, whose
# syntax the verb picks for an object with jump tables).
@pytest.mark.parametrize("obj", sorted(PROGS.glob("*.o")) + sorted(PROGS.glob("clang22/*.o")),
                         ids=lambda p: str(p.relative_to(PROGS)))
def test_disasm_verb_prints_what_llvm_objdump_prints(obj, capsys):
    assert main(["disasm", str(obj)]) == 0
    out = capsys.readouterr().out
    golden = obj.with_suffix(".objdump.txt").read_text()
    assert out == golden

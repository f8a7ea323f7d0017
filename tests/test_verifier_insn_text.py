"""The kernel log's instruction text (verifier/insn_text.py), checked against the format strings
of the kernel's kernel/bpf/disasm.c worked out by hand, and against every instruction the Linux
6.12 verifier selftests quote in their expected messages."""
from __future__ import annotations

import json
import re

import pytest
from conftest import kernel_verifier_dir

from bpfjit import isa
from bpfjit.asm import assemble_insns
from bpfjit.isa import Insn
from bpfjit.verifier.insn_text import insn_text

CASES = [
    ("mov %r1, %r10", "(bf) r1 = r10"),
    ("mov %r0, 0", "(b7) r0 = 0"),
    ("mov32 %r0, -1", "(b4) w0 = -1"),
    ("add %r1, -8", "(07) r1 += -8"),
    ("and %r0, 255", "(57) r0 &= 255"),
    ("arsh32 %r2, %r3", "(cc) w2 s>>= w3"),
    ("neg %r2", "(87) r2 = -r2"),
    ("neg32 %r2", "(84) w2 = -w2"),
    ("le16 %r2", "(d4) r2 = le16 r2"),
    ("be32 %r2", "(dc) r2 = be32 r2"),
    ("sdiv %r1, %r2", "(3f) r1 s/= r2"),
    ("smod32 %r1, 3", "(94) w1 s%= 3"),
    ("movsx864 %r1, %r2", "(bf) r1 = (s8)r2"),
    ("movsx1632 %r1, %r2", "(bc) w1 = (s16)w2"),
    ("ldxb %r2, [%r10-1]", "(71) r2 = *(u8 *)(r10 -1)"),
    ("ldxw %r2, [%r1+0]", "(61) r2 = *(u32 *)(r1 +0)"),
    ("stxdw [%r10-16], %r0", "(7b) *(u64 *)(r10 -16) = r0"),
    ("stw [%r10-8], 1", "(62) *(u32 *)(r10 -8) = 1"),
    ("jgt %r1, 7, +0", "(25) if r1 > 0x7 goto pc+0"),
    ("jle %r2, %r10, +3", "(bd) if r2 <= r10 goto pc+3"),
    ("jsgt32 %r1, -1, -2", "(66) if w1 s> 0xffffffff goto pc-2"),
    ("jset %r1, 2, +1", "(45) if r1 & 0x2 goto pc+1"),
    ("ja +1", "(05) goto pc+1"),
    ("call 1", "(85) call bpf_map_lookup_elem#1"),
    ("call 999", "(85) call unknown#999"),
    ("exit", "(95) exit"),
    ("lddw %r1, 0x123456789", "(18) r1 = 0x123456789"),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_each_class_prints_as_the_kernel_does(text: str, expected: str) -> None:
    assert insn_text(assemble_insns(text)[0]) == expected


ATOMICS = [
    (isa.ADD, isa.DW, "(db) lock *(u64 *)(r1 +8) += r2"),
    (isa.OR, isa.W, "(c3) lock *(u32 *)(r1 +8) |= r2"),
    (isa.ADD | isa.FETCH, isa.DW, "(db) r2 = atomic64_fetch_add((u64 *)(r1 +8), r2)"),
    (isa.XOR | isa.FETCH, isa.W, "(c3) r2 = atomic_fetch_xor((u32 *)(r1 +8), r2)"),
    (isa.XCHG, isa.DW, "(db) r2 = atomic64_xchg((u64 *)(r1 +8), r2)"),
    (isa.CMPXCHG, isa.W, "(c3) r0 = atomic_cmpxchg((u32 *)(r1 +8), r0, r2)"),
]


@pytest.mark.parametrize("imm, size, expected", ATOMICS)
def test_atomics(imm: int, size: int, expected: str) -> None:
    insn = Insn(isa.STX | isa.ATOMIC | size, 1, 2, 8, imm)
    assert insn_text(insn) == expected


def test_local_call_and_map_load_use_the_callers_names() -> None:
    call = Insn(isa.CALL_OP, 0, isa.CALL_LOCAL, 0, 2)
    assert insn_text(call) == "(85) call pc+2"
    (load, _) = isa.lddw(1, 7, isa.PSEUDO_MAP_FD)
    assert insn_text(load, lambda insn: "map[id:3]") == "(18) r1 = map[id:3]"


# --- every instruction quoted by the kernel's own selftests -------------------------------------

_QUOTED = re.compile(r"(?:^|before )(\d+): (\(\w\w\) [^;]*?)\s*(?:;.*)?$")


def test_instructions_quoted_by_the_kernel_selftests() -> None:
    corpus = kernel_verifier_dir()
    from bpfjit.runtime import elf
    tests = json.loads((corpus / "manifest.json").read_text())["tests"]
    checked, mismatches = 0, []
    programs: dict[str, dict[str, list[Insn]]] = {}
    for entry in tests:
        quoted = [m for m in map(_QUOTED.search, entry["msgs"]) if m]
        if not quoted:
            continue
        if entry["file"] not in programs:
            linked = elf.read_object(corpus / "objs" / entry["file"]).programs
            programs[entry["file"]] = {program.name: list(program.insns) for program in linked}
        insns = programs[entry["file"]][entry["program"]]
        for match in quoted:
            text = insn_text(insns[int(match.group(1))], lambda insn: "map[id:0]")
            checked += 1
            if not text.startswith(match.group(2)):
                mismatches.append((entry["program"], match.group(2), text))
    assert not mismatches
    assert checked >= 150

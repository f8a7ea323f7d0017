"""Jump tables and gotox (cpu v4): a clang-22 switch over opcodes, loaded, verified and run.

tests/progs/clang22/opcode_vm.c is a tiny bytecode VM over the packet: two-byte instructions
(opcode, operand) on a 64-bit accumulator, dispatched by a C switch that clang-22 compiles to a
jump table (.jumptables) and ``gotox``; the comparison opcodes go through a second switch in a
.text function of its own. Every result below is worked out by hand from the C source.

The golden listing of the object is llvm-objdump-22's (tests/progs/build.sh).
"""
from __future__ import annotations

import pathlib
import re
import shutil
import struct
import subprocess
from dataclasses import replace

import pytest

import bpfjit
from bpfjit import disasm, isa
from bpfjit.errors import BPFRuntimeError, ObjectError, ProgramError, VerifierError
from bpfjit.isa import Insn
from bpfjit.listing import xlated_listing
from bpfjit.program import Program
from bpfjit.runtime import elf
from bpfjit.runtime.elf_tables import read_sections
from bpfjit.verifier import cfg

from conftest import ENGINES

PROGS = pathlib.Path(__file__).resolve().parent / "progs" / "clang22"
VM = PROGS / "opcode_vm.o"
CLANG22_FLAGS = ["-O2", "-g", "-target", "bpf", "-mcpu=v4", "-mllvm", "-bpf-min-jump-table-entries=4",
                 "-I/usr/include/x86_64-linux-gnu", "-c"]
XDP_DROP, XDP_PASS = 1, 2
HALT, LOAD, ADD, SUB, MUL, XOR, SHL, SHR, AND, OR, NOT = range(11)
CMP_EQ, CMP_LT, CMP_GT, CMP_NE, CMP_LE, CMP_GE = (0x80 | n for n in range(6))
MASK64 = (1 << 64) - 1

# The linked program (opcode_vm.objdump.txt): the main function is slots 0-61, compare() from
# .text follows at 62. The dispatch: `if w1 > 0xa` at 19, the table's ld_imm64 at 21, the load
# of the entry at 24, gotox at 25.
DISPATCH_BOUND, TABLE_LOAD, ENTRY_LOAD, GOTOX = 19, 21, 24, 25
COMPARE = 62
# Each opcode's case, read off the listing: HALT leaves the loop (48: `w6 += 0x1`, then the
# stores of `out`), LOAD is `r0 = r3` at 26, NOT `r0 ^= -0x1` at 28, SUB 30, MUL 32, AND 34,
# SHL 36 (`r3 &= 0x3f`), ADD 39, SHR 41, OR 44, XOR 46.
DISPATCH_TARGETS = (48, 26, 39, 30, 32, 46, 36, 41, 34, 44, 28)
# compare()'s cases, at .text slots 9 (EQ), 21 (LT), 15 (GT), 18 (NE), 12 (LE), 24 (GE).
COMPARE_TARGETS = tuple(COMPARE + slot for slot in (9, 21, 15, 18, 12, 24))


def _code(*pairs: int) -> bytes:
    """A VM program: opcode, operand, ...; padded with HALT to the 14 bytes XDP needs at least."""
    return bytes(pairs).ljust(14, b"\0")


def _vm():
    obj = bpfjit.load(VM)
    return obj, obj.programs["opcode_vm"]


# --- the object as built -------------------------------------------------------------------------

def test_disassembly_matches_llvm_objdump_22():
    golden = VM.with_suffix(".objdump.txt").read_text()
    ours = "".join(f"\nDisassembly of section {section.name}:\n\n"
                   + disasm.listing(isa.decode(section.code), section.symbols, llvm=22)
                   for section in elf.code_sections(VM))
    start = golden.index("Disassembly of section")
    assert ours[ours.index("Disassembly of section"):] == golden[start:]
    assert "gotox r1" in golden  # what the object is meant to exercise


def test_the_xlated_listing_of_a_clang_22_object_takes_llvm_22_syntax():
    """prog dump --xlated shows the program as llvm-objdump-22 would (the verb picks it for an
    object with jump tables): the program's narrow loads and stores name w registers."""
    obj, program = _vm()
    lines = {line.split("\t")[0].strip(): line.split("\t")[-1]
             for line in xlated_listing(obj, program).splitlines() if re.match(r"\s*\d+:\t", line)}
    assert lines["6:"] == "w3 = *(u8 *)(r8 - 0x1)"
    assert lines["56:"] == "*(u32 *)(r2 + 0x0) = w1"


def test_llvm_22_names_the_32_bit_register_of_narrow_loads_and_stores():
    load = Insn(isa.LDX | isa.MEM | isa.W, dst=3, src=1, off=4)
    store = Insn(isa.STX | isa.MEM | isa.B, dst=2, src=1)
    wide = Insn(isa.LDX | isa.MEM | isa.DW, dst=3, src=1)
    signed = Insn(isa.LDX | isa.MEMSX | isa.B, dst=2, src=8, off=-2)
    assert disasm.insn_text(load) == "r3 = *(u32 *)(r1 + 0x4)"
    assert disasm.insn_text(load, llvm=22) == "w3 = *(u32 *)(r1 + 0x4)"
    assert disasm.insn_text(store, llvm=22) == "*(u8 *)(r2 + 0x0) = w1"
    assert disasm.insn_text(wide, llvm=22) == "r3 = *(u64 *)(r1 + 0x0)"
    assert disasm.insn_text(signed, llvm=22) == "r2 = *(s8 *)(r8 - 0x2)"
    with pytest.raises(ValueError, match="no llvm-objdump 20 syntax"):
        disasm.insn_text(load, llvm=20)


def test_committed_object_is_fresh(tmp_path: pathlib.Path):
    clang, objdump = shutil.which("clang-22"), shutil.which("llvm-objdump-22")
    if clang is None or objdump is None:
        pytest.skip("clang-22 / llvm-objdump-22 not installed: freshness of tests/progs/clang22 not checked")
    for source in sorted(PROGS.glob("*.c")):
        fresh = tmp_path / source.with_suffix(".o").name
        done = subprocess.run([clang, *CLANG22_FLAGS, source.name, "-o", str(fresh)], cwd=PROGS,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert elf.code_sections(fresh) == elf.code_sections(source.with_suffix(".o")), \
            f"{source.name} no longer compiles to the committed object: run tests/progs/build.sh"
        listing = subprocess.run([objdump, "-d", str(fresh)], capture_output=True, text=True).stdout
        golden = source.with_suffix(".objdump.txt").read_text()
        assert listing[listing.index("Disassembly"):] == golden[golden.index("Disassembly"):]


# --- loading: each table a map of the program's slots --------------------------------------------

def test_the_loader_turns_each_table_into_the_program_s_slots():
    linked = elf.read_object(VM).programs[0]
    tables = {table.symbol: table for table in linked.jump_tables}
    assert tables["BPF.JT.0.0"].targets == DISPATCH_TARGETS
    assert tables["BPF.JT.1.0"].targets == COMPARE_TARGETS  # .text offsets moved to where compare() is linked
    load = linked.insns[TABLE_LOAD]
    assert (load.src, load.next_imm) == (isa.PSEUDO_MAP_IDX_VALUE, 0)
    assert elf.read_object(VM).map_names[load.imm] == tables["BPF.JT.0.0"].name


def test_table_maps_are_read_only_and_not_among_the_object_s_maps():
    obj, prog = _vm()
    assert set(obj.maps) == {".bss"}
    with pytest.raises(BPFRuntimeError, match="invalid write"):  # the table's value is read-only memory
        Program(prog.original_insns[:ENTRY_LOAD] + [Insn(isa.STX | isa.MEM | isa.DW, dst=2, src=3)]
                + prog.original_insns[ENTRY_LOAD + 1:], prog.env, "opcode_vm", "xdp",
                verify=False).test_run(_code(LOAD, 1), engine="reference")


def _with_jump_table_entry(entry: int, number: int = 0) -> bytes:
    """opcode_vm.o with entry `number` of its first table replaced."""
    data = bytearray(VM.read_bytes())
    section = next(s for s in read_sections(bytes(data), "vm") if s.name == ".jumptables")
    struct.pack_into("<Q", data, section.offset + 8 * number, entry)
    return bytes(data)


def test_a_table_entry_off_an_instruction_boundary_is_refused():
    with pytest.raises(ObjectError, match=r"invalid jump table value 0x181 at offset 0"):
        elf.read_object(_with_jump_table_entry(0x181))


def test_a_table_entry_outside_its_function_is_refused_at_load(tmp_path: pathlib.Path):
    path = tmp_path / "outside.o"
    path.write_bytes(_with_jump_table_entry(62 * 8, number=1))  # past opcode_vm's end (compare() is in .text)
    with pytest.raises(ProgramError, match=r"jump table for insn 25 points outside of the subprog \[0,62\]"):
        bpfjit.load(path)
    path.write_bytes(_with_jump_table_entry(62 * 8))  # the first entry decides whose table it is
    with pytest.raises(ProgramError, match="no jump tables found for subprog starting at 0"):
        bpfjit.load(path)


# --- the structure check -------------------------------------------------------------------------

def test_gotox_successors_are_its_function_s_table_entries():
    linked = elf.read_object(VM).programs[0]
    tables = [table.targets for table in linked.jump_tables]
    facts = cfg.analyse(list(linked.insns), helper_ids=range(256), jump_tables=tables)
    assert facts.successors[GOTOX] == tuple(sorted(DISPATCH_TARGETS))
    gotox_in_compare = COMPARE + 8
    assert facts.successors[gotox_in_compare] == tuple(sorted(COMPARE_TARGETS))
    assert set(DISPATCH_TARGETS) | set(COMPARE_TARGETS) <= facts.block_starts


def test_gotox_without_tables_is_refused():
    insns = [Insn(isa.ALU64 | isa.MOV | isa.K, dst=0), Insn(isa.GOTOX_OP, dst=1), Insn(isa.EXIT_OP)]
    with pytest.raises(ProgramError, match="no jump tables found for subprog starting at 0"):
        cfg.analyse(insns, helper_ids=())


# --- running: every engine, hand-derived results --------------------------------------------------

VM_CASES = [
    # (program, verdict, result, instructions run)
    (_code(LOAD, 5, ADD, 3, MUL, 7, HALT, 0), XDP_PASS, 56, 4),  # (5 + 3) * 7
    (_code(LOAD, 200, SUB, 201, HALT, 0), XDP_PASS, MASK64, 3),  # 200 - 201 wraps
    (_code(LOAD, 0x0F, XOR, 0xFF, AND, 0x3C, OR, 0x01, HALT, 0), XDP_PASS, 0x31, 5),  # 0xf0 & 0x3c | 1
    (_code(LOAD, 1, SHL, 70, SHR, 3, HALT, 0), XDP_PASS, 8, 4),  # 1 << (70 & 63) = 64, >> 3
    (_code(LOAD, 0, NOT, 0, HALT, 0), XDP_PASS, MASK64, 3),
    (_code(LOAD, 9, CMP_GT, 8, HALT, 0), XDP_PASS, 1, 3),  # the .text switch: 9 > 8
    (_code(LOAD, 9, CMP_LE, 8, HALT, 0), XDP_PASS, 0, 3),
    (_code(LOAD, 7, CMP_EQ, 7, ADD, 1, CMP_NE, 2, HALT, 0), XDP_PASS, 0, 5),  # (7 == 7) + 1 = 2, 2 != 2
    (_code(LOAD, 3, CMP_GE, 3, CMP_LT, 1, HALT, 0), XDP_PASS, 0, 4),  # 1, then 1 < 1
    (_code(LOAD, 4, 0x8F, 0, HALT, 0), XDP_PASS, 0, 3),  # an unknown comparison gives 0
    (_code(LOAD, 4, 11, 0, ADD, 1), XDP_DROP, None, 2),  # opcode 11: no case, dropped
    (bytes([ADD, 2] * 7), XDP_PASS, 14, 7),  # runs off the packet's end: 7 x += 2
    (bytes([ADD, 1] * 40), XDP_PASS, 32, 32),  # MAX_STEPS instructions at most
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("code, verdict, result, executed", VM_CASES)
def test_the_vm_computes_the_hand_derived_result(engine, code, verdict, result, executed):
    obj, prog = _vm()
    obj.bss.result = 0x5A5A  # a dropped packet leaves it as it was
    assert prog.test_run(code, engine=engine).retval == verdict
    assert obj.bss.executed == executed
    assert obj.bss.result == (0x5A5A if result is None else result)


def _variant(prog: Program, index: int, insn: Insn, verify: bool = True) -> Program:
    insns = list(prog.original_insns)
    insns[index] = insn
    return Program(insns, prog.env, "opcode_vm", "xdp", verify=verify)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_gotox_to_a_slot_no_table_holds_stops_the_run(engine):
    _, prog = _vm()
    # r1 = 27 (a `goto`, not a case) instead of the table's entry; unverified, so it runs.
    bad = _variant(prog, ENTRY_LOAD, Insn(isa.ALU64 | isa.MOV | isa.K, dst=1, imm=27), verify=False)
    with pytest.raises(BPFRuntimeError, match="insn 25: gotox to a slot no jump table of its function holds"):
        bad.test_run(_code(LOAD, 1), engine=engine)


# --- the verifier's rules, with the kernel's messages ----------------------------------------------

VERIFIER_CASES = [
    # gotox through a number, not a table entry
    ("scalar", ENTRY_LOAD, Insn(isa.ALU64 | isa.MOV | isa.X, dst=1, src=3),
     "R1 has type scalar, expected PTR_TO_INSN"),
    # an entry is read whole
    ("narrow read", ENTRY_LOAD, Insn(isa.LDX | isa.MEM | isa.W, dst=1, src=2),
     "Invalid read of 4 bytes from insn_array"),
    ("write", ENTRY_LOAD, Insn(isa.STX | isa.MEM | isa.DW, dst=2, src=3), "writes into insn_array not allowed"),
    # the index bounded one entry too far: 11 * 8 = 88 is past the 11 entries
    ("past the end", DISPATCH_BOUND, Insn(isa.JMP32 | isa.JGT | isa.K, dst=1, off=38, imm=11),
     "invalid access to map value, value_size=88 off=88 size=8"),
    # index * 4: half the offsets fall between two entries
    ("misaligned", DISPATCH_BOUND + 1, Insn(isa.ALU64 | isa.LSH | isa.K, dst=1, imm=2),
     r"misaligned value access off \(0x0; 0x3c\)\+0\+0 size 8"),
]


@pytest.mark.parametrize("name, index, insn, message", VERIFIER_CASES, ids=[c[0] for c in VERIFIER_CASES])
def test_the_verifier_refuses_what_the_kernel_refuses(name, index, insn, message):
    _, prog = _vm()
    with pytest.raises(VerifierError, match=message) as caught:
        _variant(prog, index, insn)
    assert caught.value.index in (ENTRY_LOAD, GOTOX)


def test_the_verifier_walks_only_the_entries_the_index_can_name():
    _, prog = _vm()
    # `if w1 > 0x1`: the index is 0 or 1, so only HALT's and LOAD's cases are reached from the
    # gotox; the others are dead (the JIT traps them, as the kernel's dead-code sanitizing).
    narrowed = _variant(prog, DISPATCH_BOUND, replace(prog.original_insns[DISPATCH_BOUND], imm=1))
    assert {48, 26} & narrowed.facts.dead == set()
    assert {30, 32, 34, 36, 39, 41, 44, 46, 28} <= narrowed.facts.dead
    assert narrowed.test_run(_code(LOAD, 3, HALT, 0)).retval == XDP_PASS

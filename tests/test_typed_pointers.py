"""Pointers the JIT derives from one another (jit/lower.py: typed_pointers), on every engine.

The JIT gives each register a pointer twin, moved by getelementptr where the verifier saw a
pointer move (Facts.pointer_moves), and names each global from its region (Symbols), so that
LLVM sees accesses through one buffer as such. These programs (tests/progs/typed_pointers.c)
are the shapes where a wrong derivation would show: two names for one global, byte loops that
LLVM turns into vector copies (apart, and overlapping, where a copy must keep the loop's
front-to-back order), the stack through a copy of r10, a loop over the packet. Every expected
value is worked out by hand in the comment beside it.
"""
from __future__ import annotations

import pathlib

import pytest

import bpfjit
from bpfjit import isa
from bpfjit.isa import Insn

PROGS = pathlib.Path(__file__).parent / "progs"
# buf[i] = (i + 9) % 256: buf[0] = 9, buf[101] = 110.
BUF = bytes((i + 9) % 256 for i in range(256))


@pytest.fixture(scope="module")
def obj():
    return bpfjit.load(PROGS / "typed_pointers.o")


def run(obj, name: str, engine: str, data: bytes = bytes(64)) -> int:
    obj.globals["buf"] = BUF
    obj.globals["pair"] = {"first": 0, "second": 0}
    return obj.programs[name].test_run(data, engine=engine).retval


def test_a_store_through_one_name_of_a_global_is_seen_through_the_other(obj, engine):
    assert run(obj, "alias_two_names", engine) == 7  # *second = 5, then whole[1] = 7 over it


def test_a_copy_between_apart_ranges(obj, engine):
    # buf[128..191] = buf[0..63] = 9..72: their sum is 64 * (9 + 72) / 2
    assert run(obj, "copy_apart", engine) == 2592


def test_an_overlapping_copy_keeps_the_loops_order(obj, engine):
    # front to back, buf[0] = 9 reaches buf[100]; buf[101] is untouched (110); a copy of the
    # range as one block (memmove) would give buf[100] = 108 instead
    assert run(obj, "copy_overlapping", engine) == 9 * 1000 + 110


def test_the_stack_through_a_pointer_copy(obj, engine):
    assert run(obj, "stack_through_copies", engine) == 3 * sum(range(32))  # 1488


def test_a_loop_over_the_packet(obj, engine):
    assert run(obj, "packet_sum", engine, bytes(range(40))) == sum(range(40))  # 780: 40 of the 64
    assert run(obj, "packet_sum", engine, bytes([1]) * 100) == 64  # stops after 64 bytes


# buf[8192 + i] = buf[64 + i] for i < 4096, in a raw program's memory, as clang writes the loop;
# the length test first proves every access (verifier/jumps.py), so none is checked at run time.
REGION_COPY = """
    mov %r0, 0
    jlt %r2, 0x3000, +8
    mov %r2, 0
    mov %r0, 0x1000
    mov %r3, %r1
    add %r3, %r2
    ldxb %r4, [%r3+0x40]
    stxb [%r3+0x2000], %r4
    add %r2, 1
    jne %r2, 0x1000, -6
    exit
"""


def test_llvm_sees_a_byte_loop_as_a_block_copy(engine):
    """The point of the twins: the byte loop is vectorized (or becomes a memcpy); through
    integer addresses LLVM could not tell its two ranges apart and kept it bytewise."""
    prog = bpfjit.Program.from_asm(REGION_COPY)
    data = bytes(i % 251 for i in range(0x3000))
    result = prog.test_run(data, engine=engine)
    assert result.retval == 0x1000
    assert result.data_out[0x2000:0x3000] == data[0x40:0x1040]  # the copy, byte for byte
    assert result.data_out[:0x2000] == data[:0x2000]  # nothing else written
    if engine == "jit":
        ir = prog.compile().optimised_ir
        assert "x i8>" in ir or "llvm.memcpy" in ir or "llvm.memmove" in ir


def test_touching_regions_keep_their_own_names_and_overlapping_ones_share_one():
    """Whether two allocations touch differs from process to process, and the IR names addresses
    from their regions: names that depended on it would make the IR (the object-code cache's key)
    differ too. Overlapping regions must share a name (LLVM takes distinct globals never to
    alias)."""
    from bpfjit.jit.lower import Symbols
    touching = Symbols.over([(0x1000, 0x100), (0x1100, 0x100)])
    assert touching.pointer(0x1100) != touching.pointer(0x10F0)
    assert touching.pointer(0x1110) == "getelementptr (i8, ptr @bpfjit_a0, i64 16)"  # its own region's
    overlapping = Symbols.over([(0x1000, 0x100), (0x1080, 0x100)])
    assert overlapping.pointer(0x1100) == "getelementptr (i8, ptr @bpfjit_a0, i64 256)"
    assert overlapping.pointer(0x1000) == "@bpfjit_a0"


# An XDP program: data + 20 against data_end compares two pointers on every path; the second
# jump compares r4 with data_end where r4 is a pointer on one path and the number 1000 on the
# other (a packet whose byte 12 is 0), so it must compare numbers: compared as the pointer it
# was before, a 20-byte packet would end with 2.
POINTER_COMPARES = """
    ldxw %r2, [%r1+0]
    ldxw %r3, [%r1+4]
    mov %r0, 1
    mov %r4, %r2
    add %r4, 20
    jgt %r4, %r3, out
    ldxb %r5, [%r2+12]
    jne %r5, 0, keep
    mov %r4, 1000
keep:
    mov %r0, 2
    jge %r4, %r3, out
    mov %r0, 3
out:
    exit
"""


@pytest.mark.parametrize("data, verdict", [(bytes(16), 1), (bytes([1] * 20), 2), (bytes([1] * 24), 3),
                                           (bytes(20), 3)],
                         ids=["short", "pointer_at_the_end", "pointer_with_room", "number_on_one_path"])
def test_jumps_between_two_pointers_compare_their_pointers_and_only_those(data, verdict, engine):
    """The JIT compares the ptr twins where the verifier saw two pointers on every path
    (Facts.pointer_compares), and the numbers where one path had a number."""
    prog = bpfjit.Program.from_asm(POINTER_COMPARES, prog_type="xdp")
    assert prog.facts.pointer_compares == frozenset({5})
    assert prog.test_run(data, engine=engine).retval == verdict
    if engine == "jit":
        ir = prog.compile().ir
        assert ir.count("icmp ugt ptr") == 1 and "icmp uge ptr" not in ir


def test_a_packet_loop_compares_numbers_so_llvm_can_count_its_trips():
    """Inside a loop the JIT keeps comparing numbers (Facts.pointer_compares leaves loops out):
    checksum's word loop tests each pointer against data_end, a pointer of another base, and
    compared as pointers LLVM could not count its trips and no longer vectorized it (37 to 220 ns)."""
    obj = bpfjit.load(pathlib.Path(__file__).parent.parent / "bench" / "progs" / "checksum.bpf.o")
    prog = next(iter(obj.programs.values()))
    assert 29 not in prog.facts.pointer_compares and 5 in prog.facts.pointer_compares
    ir = prog.compile().optimised_ir
    assert "x i16>" in ir or "x i64>" in ir


def test_two_function_pointers_compare_as_the_numbers_they_are(engine):
    """A function's address (ld_imm64 src 4) is a number to the JIT, with no pointer twin: a jump
    between two of them stays a comparison of numbers (compared as twins, &fn == &fn was false)."""
    insns = [Insn(isa.LDDW, 2, isa.PSEUDO_FUNC, 0, 7), Insn(0),  # 0-1: r2 = &fn (0 + 1 + 7 = 8)
             Insn(isa.LDDW, 3, isa.PSEUDO_FUNC, 0, 5), Insn(0),  # 2-3: r3 = &fn (2 + 1 + 5 = 8)
             Insn(isa.ALU64 | isa.MOV | isa.K, 0, 0, 0, 1),     # 4
             Insn(isa.JMP | isa.JEQ | isa.X, 2, 3, 1),           # 5: if r2 == r3 goto 7
             Insn(isa.ALU64 | isa.MOV | isa.K, 0, 0, 0, 2),     # 6
             Insn(isa.EXIT_OP),                                  # 7
             Insn(isa.ALU64 | isa.MOV | isa.K, 0, 0, 0, 0),     # 8: fn
             Insn(isa.EXIT_OP)]
    prog = bpfjit.Program(insns)
    assert 5 not in prog.facts.pointer_compares
    assert prog.run(b"abc", engine=engine) == 1

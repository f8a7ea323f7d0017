"""Decoder, encoder, assembler and disassembler, checked against hand-written encodings.

Byte strings below are written out by hand from the slot format (docs/semantics.md#instruction-set:
opcode, dst | src << 4, off as s16 LE, imm as s32 LE); the disassembler texts are llvm-objdump-19
output for the same bytes. The round trips over the bpf_conformance suite need that suite
(BPFJIT_CONFORMANCE_DIR, see conftest.py); everything else uses only what is in the repository.
"""
from __future__ import annotations

import pathlib
import struct

import pytest

from bpfjit import asm, disasm, isa
from bpfjit.errors import AsmError, DecodeError
from bpfjit.isa import Insn

from conftest import conformance_case, conformance_params

DATA = pathlib.Path(__file__).resolve().parent / "data"


def slot(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One 8-byte slot, packed independently of bpfjit."""
    return struct.pack("<BBhi", opcode, (src << 4) | dst, off, imm)


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def error_of(parse, source, error: type[Exception]) -> Exception:
    """The error that parsing ``source`` must raise, for the test to check where it points."""
    with pytest.raises(error) as info:
        parse(source)
    return info.value


MOV_R0_0 = slot(0xB7)  # r0 = 0
MOV_R1_1 = slot(0xB7, 1, imm=1)  # r1 = 1
EXIT = slot(0x95)
PREFIX = MOV_R0_0 + MOV_R1_1  # two valid slots, so the bad one is insn 2


# =============================================================================================
# Round trips over the conformance suite
# =============================================================================================

@pytest.mark.parametrize("path", conformance_params())
def test_conformance_round_trip(path):
    case = conformance_case(path)
    insns = asm.assemble_insns(case.asm)
    code = asm.assemble(case.asm)
    assert code == isa.encode(insns)
    assert len(code) % 8 == 0
    decoded = isa.decode(code)
    assert decoded == insns  # decode is the inverse of encode, slot for slot
    assert isa.encode(decoded) == code  # ... and re-encodes to the same bytes
    if case.raw is not None:
        assert code == case.raw
        assert isa.encode(isa.decode(case.raw)) == case.raw
    # The disassembler prints every real instruction (the filler half of ld_imm64 is skipped).
    listing = disasm.disassemble(decoded)
    fillers = sum(1 for i in range(len(decoded)) if isa.is_filler(decoded, i))
    assert len(listing) == len(decoded) - fillers
    assert all(text and "\n" not in text for _, text in listing)
    assert disasm.listing(decoded).count("\n") == len(listing) + 1  # header line + one per insn


def test_lddw_file_raw_bytes():
    # tests/data/lddw_raw.data carries its raw encoding (one little-endian u64 per slot, as the
    # file format writes it); check it against a hand-packed copy
    expected = (slot(0x18, 6, imm=-0x21524111) + slot(0, imm=0x0BADF00D) + slot(0xBF, 0, 6) + slot(0x95))
    case = asm.parse_test_file((DATA / "lddw_raw.data").read_text())
    assert case.raw == expected
    assert asm.assemble(case.asm) == expected
    assert case.result == 0x0BADF00D_DEADBEEF


# =============================================================================================
# Decode errors
# =============================================================================================

DECODE_ERRORS = [
    # (id, bytes, index of the offending instruction)
    ("truncated-after-2", PREFIX + b"\x95\x00\x00", 2),  # 19 bytes: not a multiple of 8
    ("truncated-1-byte", b"\x95", 0),
    ("truncated-15-bytes", EXIT + b"\x95" * 7, 1),
    ("lddw-no-second-slot", PREFIX + slot(0x18, 1, imm=5), 2),
    ("lddw-no-second-slot-first", slot(0x18), 0),
    ("lddw-second-slot-opcode", PREFIX + slot(0x18, 1, imm=5) + slot(0x95) + EXIT, 3),  # the bad slot
    ("lddw-second-slot-dst", PREFIX + slot(0x18, 1) + slot(0, dst=1) + EXIT, 3),
    ("lddw-second-slot-off", PREFIX + slot(0x18, 1) + slot(0, off=1) + EXIT, 3),
    ("lddw-off", PREFIX + slot(0x18, 1, off=1) + slot(0) + EXIT, 2),
    ("lddw-bad-pseudo-src", PREFIX + slot(0x18, 1, src=7) + slot(0) + EXIT, 2),
    ("exit-imm", PREFIX + slot(0x95, imm=1), 2),
    ("exit-dst", PREFIX + slot(0x95, dst=1), 2),
    ("exit-off", PREFIX + slot(0x95, off=1), 2),
    ("neg64-src", PREFIX + slot(0x87, 1, src=2) + EXIT, 2),
    ("neg64-imm", PREFIX + slot(0x87, 1, imm=1) + EXIT, 2),
    ("neg32-imm", PREFIX + slot(0x84, 1, imm=1) + EXIT, 2),
    ("neg-off", PREFIX + slot(0x87, 1, off=1) + EXIT, 2),
    ("end-imm-17", PREFIX + slot(0xD4, 1, imm=17) + EXIT, 2),
    ("end-be-imm-0", PREFIX + slot(0xDC, 1, imm=0) + EXIT, 2),
    ("bswap-imm-8", PREFIX + slot(0xD7, 1, imm=8) + EXIT, 2),
    ("end-src", PREFIX + slot(0xD4, 1, src=2, imm=16) + EXIT, 2),
    ("alu64-k-src", PREFIX + slot(0x07, 1, src=2, imm=1) + EXIT, 2),  # add r1, 1 with src set
    ("alu32-k-src", PREFIX + slot(0x04, 1, src=2, imm=1) + EXIT, 2),
    ("alu64-x-imm", PREFIX + slot(0x0F, 1, src=2, imm=1) + EXIT, 2),
    ("alu-off", PREFIX + slot(0x07, 1, off=1, imm=1) + EXIT, 2),  # off only for div/mod/movsx
    ("div-off-2", PREFIX + slot(0x3F, 1, 2, off=2) + EXIT, 2),
    ("movsx32-in-alu32", PREFIX + slot(0xBC, 1, 2, off=32) + EXIT, 2),  # ALU32 MOVSX is 8/16 only
    ("ja-imm", PREFIX + slot(0x05, imm=1) + EXIT, 2),
    ("ja-dst", PREFIX + slot(0x05, dst=1) + EXIT, 2),
    ("gotol-off", PREFIX + slot(0x06, off=1) + EXIT, 2),
    ("callx-dst-and-imm", PREFIX + slot(0x8D, dst=1, imm=2) + EXIT, 2),
    ("call-dst", PREFIX + slot(0x85, dst=1, imm=1) + EXIT, 2),
    ("jmp-k-src", PREFIX + slot(0x15, 1, src=2, off=0, imm=1) + EXIT, 2),
    ("jmp-x-imm", PREFIX + slot(0x1D, 1, src=2, imm=1) + EXIT, 2),
    ("ldx-imm", PREFIX + slot(0x61, 0, 1, imm=1) + EXIT, 2),
    ("st-src", PREFIX + slot(0x62, 10, 1, off=-8, imm=1) + EXIT, 2),
    ("stx-imm", PREFIX + slot(0x63, 10, 1, off=-8, imm=1) + EXIT, 2),
    ("atomic-bad-op", PREFIX + slot(0xDB, 1, 2, imm=0x02) + EXIT, 2),
    ("atomic-fetch-byte", PREFIX + slot(0xD3, 1, 2, imm=0x01) + EXIT, 2),  # RMW needs W or DW
    ("bad-dst-r11", PREFIX + slot(0xB7, 11) + EXIT, 2),
    ("bad-src-r15", PREFIX + slot(0xBF, 0, 15) + EXIT, 2),
    ("unknown-0x00-alone", PREFIX + slot(0x00) + EXIT, 2),
    ("unknown-0x00-first", slot(0x00) + EXIT, 0),
    ("unknown-0xff", PREFIX + slot(0xFF) + EXIT, 2),
    ("unknown-0x8f", PREFIX + slot(0x8F, 1) + EXIT, 2),  # NEG has no X form
    ("unknown-0xe0-alu32", PREFIX + slot(0xE4, 1) + EXIT, 2),  # ALU op 0xe0 does not exist
    ("unknown-ldxsdw", PREFIX + slot(0x99, 0, 1) + EXIT, 2),  # MEMSX has no DW
    ("unknown-jmp32-call", PREFIX + slot(0x86, imm=1) + EXIT, 2),
    ("unknown-jmp32-exit", PREFIX + slot(0x96) + EXIT, 2),
    ("unknown-st-atomic", PREFIX + slot(0xDA, 1) + EXIT, 2),
    # index counts slots: an ld_imm64 before the bad insn takes two
    ("after-lddw", slot(0x18, 1, imm=1) + slot(0) + slot(0xFF) + EXIT, 2),
    ("after-mov-lddw", MOV_R0_0 + slot(0x18, 1) + slot(0) + slot(0x95, imm=3), 3),
]


@pytest.mark.parametrize("code,index", [c[1:] for c in DECODE_ERRORS], ids=[c[0] for c in DECODE_ERRORS])
def test_decode_error(code, index):
    assert error_of(isa.decode, code, DecodeError).index == index


VALID_ENCODINGS = [
    # (id, bytes): decode accepts these, and encode gives the same bytes back
    ("callx-dst", slot(0x8D, dst=8)),  # LLVM >= 19
    ("callx-imm", slot(0x8D, imm=8)),  # LLVM <= 18
    ("sdiv", slot(0x3F, 1, 2, off=1)),
    ("smod32-k", slot(0x94, 1, off=1, imm=-3)),
    ("movsx-64-32", slot(0xBF, 1, 2, off=32)),
    ("movsx-32-16", slot(0xBC, 1, 2, off=16)),
    ("bswap16", slot(0xD7, 1, imm=16)),
    ("le64", slot(0xD4, 1, imm=64)),
    ("gotol", slot(0x06, imm=-5)),
    ("may_goto", slot(0xE5, off=4)),
    ("ldxsw", slot(0x81, 0, 1, off=-4)),
    ("ld-acq-b", slot(0xD3, 0, 1, imm=0x100)),
    ("st-rel-h", slot(0xCB, 1, 2, off=2, imm=0x110)),
    ("cmpxchg32", slot(0xC3, 1, 2, imm=0xF1)),
    ("lddw-pseudo-func", slot(0x18, 2, 4, imm=3) + slot(0)),
    ("lddw-neg", slot(0x18, 4, imm=-1) + slot(0, imm=-1)),
    ("call-local", slot(0x85, src=1, imm=-7)),
    ("jset32-x", slot(0x4E, 1, 2, off=-2)),
    ("zero-second-slot-is-fine", slot(0x18) + slot(0)),
]


@pytest.mark.parametrize("code", [c[1] for c in VALID_ENCODINGS], ids=[c[0] for c in VALID_ENCODINGS])
def test_valid_encoding_round_trip(code):
    insns = isa.decode(code)
    assert len(insns) == len(code) // 8
    assert isa.encode(insns) == code


def test_decode_fields():
    insns = isa.decode(slot(0x18, 4, imm=-2) + slot(0, imm=-1) + slot(0x7B, 10, 2, off=-8))
    assert insns[0] == Insn(0x18, 4, 0, 0, -2, -1)
    assert insns[0].imm64 == 0xFFFF_FFFF_FFFF_FFFE  # next_imm << 32 | (u32)imm
    assert isa.is_filler(insns, 1)
    assert insns[2] == Insn(0x7B, 10, 2, -8, 0)


def test_callx_register_field():
    assert isa.decode(slot(0x8D, dst=8))[0].callx_reg == 8
    assert isa.decode(slot(0x8D, imm=3))[0].callx_reg == 3


def test_decode_empty():
    assert isa.decode(b"") == []


# =============================================================================================
# Assembler errors
# =============================================================================================

ASM_ERRORS = [
    # (id, text, line)
    ("unknown-mnemonic", "mov %r0, 1\nfrobnicate %r0\nexit", 2),
    ("unknown-mnemonic-first", "movz %r0, 1\nexit", 1),
    ("bad-register-r11", "mov %r0, 1\n\nmov %r11, 2\nexit", 3),
    ("bad-register-src", "mov %r0, %r12\nexit", 1),
    ("bad-register-mem", "ldxw %r0, [%r11+4]\nexit", 1),
    ("bad-register-name", "mov %x0, 1\nexit", 1),
    ("undefined-label", "mov %r0, 1\njeq %r0, 1, nowhere\nexit", 2),
    ("undefined-label-ja", "ja missing\nexit", 1),
    ("undefined-call-local", "# comment\ncall local nothere\nexit", 2),
    ("duplicate-label", "a:\nmov %r0, 1\na:\nexit", 3),
    ("duplicate-label-inline", "x: mov %r0, 1\nx: exit", 2),
    ("operands-alu-1", "add %r0\nexit", 1),
    ("operands-alu-3", "mov %r0, 1\nadd %r0, %r1, %r2\nexit", 2),
    ("operands-exit", "mov %r0, 1\nexit %r0", 2),
    ("operands-neg", "neg %r0, %r1\nexit", 1),
    ("operands-jump", "jeq %r0, 1\nexit", 1),
    ("operands-ldx", "ldxw %r0\nexit", 1),
    ("operands-lddw", "lddw %r0\nexit", 1),
    ("imm-too-big", "mov %r0, 1\nmov %r0, 0x100000000\nexit", 2),  # > u32 spelling
    ("imm-too-small", "add32 %r0, -0x80000001\nexit", 1),
    ("jump-imm-too-big", "jeq %r0, 0x100000000, +1\nexit\nexit", 1),
    ("lddw-too-big", "lddw %r0, 0x10000000000000000\nexit", 1),  # 2^64
    ("lddw-too-small", "lddw %r0, -0x8000000000000001\nexit", 1),
    ("offset-too-big", "ldxw %r0, [%r1+0x8000]\nexit", 1),
    ("offset-too-small", "mov %r0, 0\nstw [%r10-0x8001], 1\nexit", 2),
    ("jump-offset-too-big", "ja +0x8000\nexit", 1),
    ("bad-number", "mov %r0, 12abc\nexit", 1),
]


@pytest.mark.parametrize("text,line", [c[1:] for c in ASM_ERRORS], ids=[c[0] for c in ASM_ERRORS])
def test_asm_error(text, line):
    assert error_of(asm.assemble, text, AsmError).line == line


# =============================================================================================
# Assembler features: exact encodings
# =============================================================================================

ASM_ENCODINGS = [
    # (assembly, hand-written bytes)
    ("mov %r0, 0", "b7 00 0000 00000000"),
    ("mov %r0, 0xffffffff", "b7 00 0000 ffffffff"),  # u32 spelling of -1
    ("mov32 %r3, -1", "b4 03 0000 ffffffff"),
    ("add32 %r1, -5", "04 01 0000 fbffffff"),
    ("add %r1, %r2", "0f 21 0000 00000000"),
    ("sub %r9, 0x7fffffff", "17 09 0000 ffffff7f"),
    ("div32 %r0, %r1", "3c 10 0000 00000000"),
    ("sdiv32 %r0, -3", "34 00 0100 fdffffff"),  # off = 1 selects signed
    ("sdiv %r1, %r2", "3f 21 0100 00000000"),
    ("mod %r1, 7", "97 01 0000 07000000"),
    ("smod %r0, %r1", "9f 10 0100 00000000"),
    ("lsh32 %r1, 31", "64 01 0000 1f000000"),
    ("arsh %r1, %r2", "cf 21 0000 00000000"),
    ("xor32 %r0, %r10", "ac a0 0000 00000000"),
    ("neg %r3", "87 03 0000 00000000"),
    ("neg32 %r3", "84 03 0000 00000000"),
    ("movsx832 %r1, %r2", "bc 21 0800 00000000"),
    ("movsx1664 %r0, %r1", "bf 10 1000 00000000"),
    ("movsx3264 %r0, %r1", "bf 10 2000 00000000"),
    ("le16 %r1", "d4 01 0000 10000000"),
    ("le32 %r1", "d4 01 0000 20000000"),
    ("be16 %r1", "dc 01 0000 10000000"),
    ("be64 %r1", "dc 01 0000 40000000"),
    ("bswap32 %r2", "d7 02 0000 20000000"),
    ("bswap64 %r1", "d7 01 0000 40000000"),
    ("ldxb %r0, [%r1]", "71 10 0000 00000000"),
    ("ldxw %r0, [%r1+4]", "61 10 0400 00000000"),
    ("ldxdw %r3, [%r10-8]", "79 a3 f8ff 00000000"),
    ("ldxsh %r0, [%r10-2]", "89 a0 feff 00000000"),
    ("ldxsb %r0, [%r1+0]", "91 10 0000 00000000"),
    ("stw [%r10-4], 7", "62 0a fcff 07000000"),
    ("stdw [%r1+8], -1", "7a 01 0800 ffffffff"),
    ("stxdw [%r1], %r2", "7b 21 0000 00000000"),
    ("stxh [%r1-2], %r3", "6b 31 feff 00000000"),
    ("lock add [%r10-8], %r1", "db 1a f8ff 00000000"),
    ("lock add32 [%r1+4], %r2", "c3 21 0400 00000000"),
    ("lock fetch add32 [%r1+4], %r2", "c3 21 0400 01000000"),
    ("lock fetch or [%r1], %r2", "db 21 0000 41000000"),
    ("lock and32 [%r1], %r2", "c3 21 0000 50000000"),
    ("lock fetch xor [%r1], %r2", "db 21 0000 a1000000"),
    ("lock xchg [%r1], %r2", "db 21 0000 e1000000"),
    ("lock xchg32 [%r1], %r2", "c3 21 0000 e1000000"),
    ("lock cmpxchg [%r1], %r2", "db 21 0000 f1000000"),
    ("lock cmpxchg32 [%r1], %r2", "c3 21 0000 f1000000"),
    ("ldacqw %r0, [%r1+4]", "c3 10 0400 00010000"),  # dst = destination, src = base
    ("ldacqdw %r0, [%r1]", "db 10 0000 00010000"),
    ("strelb [%r1+1], %r2", "d3 21 0100 10010000"),
    ("strelh [%r1], %r2", "cb 21 0000 10010000"),
    ("jeq %r1, 5, +2", "15 01 0200 05000000"),
    ("jne32 %r1, %r2, +3", "5e 21 0300 00000000"),
    ("jsge %r1, -7, -1", "75 01 ffff f9ffffff"),
    ("jset32 %r1, 0x80000000, +0", "46 01 0000 00000080"),
    ("ja +1", "05 00 0100 00000000"),
    ("ja32 +5", "06 00 0000 05000000"),  # gotol: target in imm
    ("may_goto +4", "e5 00 0400 00000000"),
    ("call 5", "85 00 0000 05000000"),
    ("call helper 1", "85 00 0000 01000000"),
    ("call %r2", "8d 02 0000 00000000"),  # callx, register in dst (LLVM >= 19)
    ("exit", "95 00 0000 00000000"),
    ("lddw %r0, 0x1122334455667788", "18 00 0000 88776655 0000 0000 44332211"),
    ("lddw %r4, -1", "18 04 0000 ffffffff 0000 0000 ffffffff"),
    ("lddw %r0, -2", "18 00 0000 feffffff 0000 0000 ffffffff"),
    ("lddw %r1, 0x8000000000000001", "18 01 0000 01000000 0000 0000 00000080"),  # > 2^63
    ("lddw %r1, 0xffffffffffffffff", "18 01 0000 ffffffff 0000 0000 ffffffff"),
    ("lddw %r2, -0x8000000000000000", "18 02 0000 00000000 0000 0000 00000080"),
    ("lddw %r1, 0x80000000", "18 01 0000 00000080 0000 0000 00000000"),
]


@pytest.mark.parametrize("text,expected", ASM_ENCODINGS, ids=[c[0] for c in ASM_ENCODINGS])
def test_asm_encoding(text, expected):
    # A jump's target must be inside the program for the structural check, so pad with exits.
    code = asm.assemble(text + "\nexit" * 8)
    want = hexbytes(expected)
    assert code[:len(want)] == want
    assert isa.encode(isa.decode(code)) == code


def test_labels_forward_and_backward():
    text = """
    start:
        mov %r0, 1
        jne %r0, 0, end      # 1 -> 3: off = 3 - 1 - 1 = 1
        ja start             # 2 -> 0: off = 0 - 2 - 1 = -3
    end:
        exit
    """
    insns = asm.assemble_insns(text)
    assert insns[1].off == 1
    assert insns[2].off == -3
    assert asm.assemble(text) == slot(0xB7, 0, imm=1) + slot(0x55, 0, off=1) + slot(0x05, off=-3) + EXIT


def test_label_on_the_same_line_and_counting_lddw():
    text = "ja over\nlddw %r0, 5\nover: exit"  # lddw takes two slots: over = 3, off = 3 - 0 - 1
    insns = asm.assemble_insns(text)
    assert insns[0].off == 2
    assert len(insns) == 4


def test_implicit_exit_label():
    # `exit` names the first exit instruction
    insns = asm.assemble_insns("ja exit\nmov %r0, 1\nexit\nexit")
    assert insns[0].off == 1  # target 2


def test_explicit_exit_label_wins():
    insns = asm.assemble_insns("ja exit\nexit\nexit:\nmov %r0, 2\nexit")
    assert insns[0].off == 1  # the label at 2, not the first exit at 1


def test_ja32_label():
    insns = asm.assemble_insns("ja32 target\nmov %r0, 1\ntarget:\nexit")
    assert insns[0] == Insn(0x06, 0, 0, 0, 1)  # gotol: off 0, target in imm
    back = asm.assemble_insns("top:\nmov %r0, 1\nja32 top\nexit")
    assert back[1].imm == -2 and back[1].off == 0


def test_call_local_label():
    code = asm.assemble("call local f\nexit\nf:\nmov %r0, 1\nexit")
    assert code[:8] == slot(0x85, src=1, imm=1)  # callee = 0 + 1 + 1 = 2


def test_call_local_backward():
    insns = asm.assemble_insns("ja main\nf: mov %r0, 1\nexit\nmain: call local f\nexit")
    assert insns[3] == Insn(0x85, 0, 1, 0, -3)  # 1 = 3 + 1 + imm


def test_comments_and_blank_lines():
    text = "# header\n\n  mov %r0, 3   # three\n\n exit # done\n"
    assert asm.assemble(text) == slot(0xB7, imm=3) + EXIT


# =============================================================================================
# Disassembler: llvm-objdump-19 reference texts
# =============================================================================================

OBJDUMP = [
    # (bytes, llvm-objdump -d text)
    ("04 01 0000 fbffffff", "w1 += -0x5"),
    ("3f 21 0100 00000000", "r1 s/= r2"),
    ("bc 21 0800 00000000", "w1 = (s8)w2"),
    ("bf 21 2000 00000000", "r1 = (s32)r2"),
    ("dc 01 0000 10000000", "r1 = be16 r1"),
    ("d7 01 0000 40000000", "r1 = bswap64 r1"),
    ("75 01 0300 f9ffffff", "if r1 s>= -0x7 goto +0x3"),
    ("4e 21 feff 00000000", "if w1 & w2 goto -0x2"),
    ("06 00 0000 05000000", "gotol +0x5"),
    ("85 00 0000 01000000", "call 0x1"),
    ("8d 08 0000 00000000", "callx r8"),
    ("95 00 0000 00000000", "exit"),
    ("e5 00 0400 00000000", "may_goto +0x4"),
    ("61 10 0400 00000000", "r0 = *(u32 *)(r1 + 0x4)"),
    ("62 0a f8ff fdffffff", "*(u32 *)(r10 - 0x8) = -0x3"),
    ("7b 2a f8ff 00000000", "*(u64 *)(r10 - 0x8) = r2"),
    ("89 10 0400 00000000", "r0 = *(s16 *)(r1 + 0x4)"),
    ("db 21 f8ff 00000000", "lock *(u64 *)(r1 - 0x8) += r2"),
    ("db 21 f8ff a1000000", "r2 = atomic_fetch_xor((u64 *)(r1 - 0x8), r2)"),
    ("db 21 f8ff e1000000", "r2 = xchg_64(r1 - 0x8, r2)"),
    ("db 21 f8ff f1000000", "r0 = cmpxchg_64(r1 - 0x8, r0, r2)"),
    ("18 01 0000 88776655 0000 0000 44332211", "r1 = 0x1122334455667788 ll"),
    ("18 04 0000 ffffffff 0000 0000 ffffffff", "r4 = -0x1 ll"),
    ("18 12 0000 05000000 0000 0000 00000000", "ld_pseudo\tr2, 0x1, 0x5"),
]


@pytest.mark.parametrize("code,text", OBJDUMP, ids=[c[1] for c in OBJDUMP])
def test_insn_text_matches_llvm_objdump(code, text):
    insns = isa.decode(hexbytes(code))
    assert disasm.insn_text(insns[0]) == text


def test_disassemble_skips_lddw_filler():
    insns = isa.decode(hexbytes("18 01 0000 88776655 0000 0000 44332211") + EXIT)
    assert disasm.disassemble(insns) == [(0, "r1 = 0x1122334455667788 ll"), (2, "exit")]


def test_assemble_then_disassemble():
    text = "add32 %r1, -5\nsdiv %r1, %r2\njsge %r1, -7, +3\nlock fetch xor [%r1-8], %r2\nexit\nexit\nexit\nexit"
    insns = asm.assemble_insns(text)
    assert [t for _, t in disasm.disassemble(insns)][:5] == [
        "w1 += -0x5",
        "r1 s/= r2",
        "if r1 s>= -0x7 goto +0x3",
        "r2 = atomic_fetch_xor((u64 *)(r1 - 0x8), r2)",
        "exit",
    ]

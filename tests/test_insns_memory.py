"""Per-instruction semantics on both engines: loads, stores, the stack, atomics and ld_imm64.

Every expected value below is a literal worked out by hand from docs/semantics.md
(#instruction-set and #pitfalls; the comment next to it says why); none is computed by bpfjit.
Programs are run on both engines through tests/insn_cases.py.
"""
from __future__ import annotations

import textwrap

import pytest

from bpfjit import isa
from bpfjit.isa import Insn
from bpfjit.program import Program

from insn_cases import M64, _ids, run, run_result


# =============================================================================================
# Loads and stores
# =============================================================================================

# bytes 0..7 = 81..88, bytes 8..15 = 7f 01 02 03 04 05 06 07
LOAD_MEM = bytes(range(0x81, 0x89)) + bytes([0x7F, 1, 2, 3, 4, 5, 6, 7])

LOAD_CASES = [
    ("ldxb", 0, 0x81),  # zero-extended
    ("ldxh", 0, 0x8281),  # little-endian, zero-extended
    ("ldxw", 0, 0x8483_8281),
    ("ldxdw", 0, 0x8887_8685_8483_8281),
    ("ldxh", 3, 0x8584),  # unaligned offset
    ("ldxw", 6, 0x017F_8887),  # bytes 6..9 = 87 88 7f 01
    ("ldxsb", 0, 0xFFFF_FFFF_FFFF_FF81),  # sign-extended to 64
    ("ldxsh", 0, 0xFFFF_FFFF_FFFF_8281),
    ("ldxsw", 0, 0xFFFF_FFFF_8483_8281),
    ("ldxsb", 8, 0x7F),  # positive: no extension
    ("ldxsh", 8, 0x017F),
    ("ldxsw", 8, 0x0302_017F),
    ("ldxdw", 8, 0x0706_0504_0302_017F),
    # load-acquire zero-extends like LDX (its dst is the destination and src the base: reversed
    # against the other atomics)
    ("ldacqb", 1, 0x82),
    ("ldacqh", 2, 0x8483),
    ("ldacqw", 4, 0x8887_8685),
    ("ldacqdw", 0, 0x8887_8685_8483_8281),
]


@pytest.mark.parametrize("mn,off,expected", LOAD_CASES, ids=_ids(LOAD_CASES))
def test_ldx(engine, mn, off, expected):
    # r0 starts as -1: a narrow load replaces all 64 bits
    text = f"lddw %r0, -1\n{mn} %r0, [%r1+{off}]\nexit"
    assert run(text, engine, LOAD_MEM) == expected


def test_ldx_negative_offset(engine):
    text = "mov %r3, %r1\nadd %r3, 8\nldxb %r0, [%r3-1]\nexit"
    assert run(text, engine, LOAD_MEM) == 0x88  # byte 7


# (store, expected first 10 bytes of a 10-byte 0xaa buffer)
STORE_CASES = [
    ("stb [%r1+0], -1", b"\xff" + b"\xaa" * 9),
    ("stb [%r1+1], 0x1234", b"\xaa\x34" + b"\xaa" * 8),  # truncated to the low byte
    ("sth [%r1+0], 0x12345", b"\x45\x23" + b"\xaa" * 8),  # truncated to 16 bits
    ("stw [%r1+0], -2", b"\xfe\xff\xff\xff" + b"\xaa" * 6),
    ("stw [%r1+4], 0x11223344", b"\xaa" * 4 + b"\x44\x33\x22\x11" + b"\xaa" * 2),
    ("stdw [%r1+0], -2", b"\xfe" + b"\xff" * 7 + b"\xaa" * 2),  # ST DW sign-extends the imm
    ("stdw [%r1+0], 0x7fffffff", b"\xff\xff\xff\x7f\x00\x00\x00\x00" + b"\xaa" * 2),
    ("stdw [%r1+2], -0x80000000", b"\xaa\xaa\x00\x00\x00\x80\xff\xff\xff\xff"),
    ("stxb [%r1+0], %r2", b"\x88" + b"\xaa" * 9),  # r2 = 0x1122334455667788, low byte
    ("stxh [%r1+0], %r2", b"\x88\x77" + b"\xaa" * 8),
    ("stxw [%r1+0], %r2", b"\x88\x77\x66\x55" + b"\xaa" * 6),
    ("stxdw [%r1+0], %r2", b"\x88\x77\x66\x55\x44\x33\x22\x11" + b"\xaa" * 2),
    ("stxdw [%r1+2], %r2", b"\xaa\xaa\x88\x77\x66\x55\x44\x33\x22\x11"),
    # store-release writes the low bits of src like STX (aligned, as the kernel requires)
    ("strelb [%r1+1], %r2", b"\xaa\x88" + b"\xaa" * 8),
    ("strelh [%r1+2], %r2", b"\xaa\xaa\x88\x77" + b"\xaa" * 6),
    ("strelw [%r1+4], %r2", b"\xaa" * 4 + b"\x88\x77\x66\x55" + b"\xaa" * 2),
    ("streldw [%r1+0], %r2", b"\x88\x77\x66\x55\x44\x33\x22\x11" + b"\xaa" * 2),
]


@pytest.mark.parametrize("store,expected", STORE_CASES, ids=[c[0] for c in STORE_CASES])
def test_store(engine, store, expected):
    text = f"lddw %r2, 0x1122334455667788\n{store}\nmov %r0, 0\nexit"
    result = run_result(text, engine, b"\xaa" * 10)
    assert result.retval == 0
    assert result.data_out == expected


def test_store_negative_offset(engine):
    text = "mov %r3, %r1\nadd %r3, 4\nsth [%r3-2], 0x4142\nmov %r0, 0\nexit"
    assert run_result(text, engine, b"\x00" * 4).data_out == b"\x00\x00\x42\x41"


STACK_CASES = [
    # after `*(u64 *)(r10 - 8) = 0x8877665544332211` (little-endian: byte r10-8 = 0x11 ... r10-1 = 0x88)
    ("ldxdw %r0, [%r10-8]", 0x8877_6655_4433_2211),
    ("ldxw %r0, [%r10-8]", 0x4433_2211),  # low word
    ("ldxw %r0, [%r10-4]", 0x8877_6655),  # high word
    ("ldxb %r0, [%r10-1]", 0x88),  # most significant byte, zero-extended
    ("ldxsh %r0, [%r10-2]", 0xFFFF_FFFF_FFFF_8877),  # s16 0x8877 sign-extended
    ("ldxsb %r0, [%r10-8]", 0x11),
]


@pytest.mark.parametrize("load,expected", STACK_CASES, ids=[c[0] for c in STACK_CASES])
def test_stack_round_trip(engine, load, expected):
    text = f"lddw %r2, 0x8877665544332211\nstxdw [%r10-8], %r2\n{load}\nexit"
    assert run(text, engine) == expected


def test_stack_st_then_partial_overwrite(engine):
    text = """
        stdw [%r10-16], -1
        sth [%r10-14], 0
        ldxdw %r0, [%r10-16]
        exit
    """
    assert run(text, engine) == 0xFFFF_FFFF_0000_FFFF  # bytes r10-14, r10-13 cleared


# =============================================================================================
# Atomics
# =============================================================================================

# Memory: bytes 0..7 = target (u64 LE, or u32 LE + 4 sentinel bytes 0xcc for 32-bit ops),
# bytes 8..15 = sentinel 0xaa, bytes 16..23 = where the program stores src after the op.
# r0 is preset to 0x7777 and must be untouched by everything but cmpxchg.

def _atomic_program(op: str, src: int, r0: int = 0x7777) -> str:
    return textwrap.dedent(f"""\
        lddw %r2, {src:#x}
        lddw %r0, {r0:#x}
        lock {op} [%r1+0], %r2
        stxdw [%r1+16], %r2
        exit
    """)


def _mem64(value: int) -> bytes:
    return value.to_bytes(8, "little") + b"\xaa" * 8 + b"\x00" * 8


def _mem32(value: int) -> bytes:
    return value.to_bytes(4, "little") + b"\xcc" * 4 + b"\xaa" * 8 + b"\x00" * 8


# (op, initial target, src, expected src after, expected target after)
ATOMIC64 = [
    ("add", 0x10, 5, 5, 0x15),  # non-fetch: src unchanged
    ("add", 0xFFFF_FFFF, 1, 1, 0x1_0000_0000),  # carry into the high half
    ("fetch add", 0x10, 5, 0x10, 0x15),  # fetch: src = old
    ("or", 0xF0, 0x0F, 0x0F, 0xFF),
    ("fetch or", 0xF0, 0x0F, 0xF0, 0xFF),
    ("and", 0xFF_00FF, 0x0FF0, 0x0FF0, 0xF0),
    ("fetch and", 0xFF_00FF, 0x0FF0, 0xFF_00FF, 0xF0),
    ("xor", M64, 0x1_0000_0001, 0x1_0000_0001, 0xFFFF_FFFE_FFFF_FFFE),
    ("fetch xor", M64, 0x1_0000_0001, M64, 0xFFFF_FFFE_FFFF_FFFE),
    ("xchg", 0x1122_3344_5566_7788, 0x99, 0x1122_3344_5566_7788, 0x99),
]

# 32-bit: (op, initial u32, src, expected src, expected u32). Results zero-extended; bytes 4..7
# (0xcc) never touched.
ATOMIC32 = [
    ("add32", 0xFFFF_FFFF, 0xFFFF_FFFF_0000_0001, 0xFFFF_FFFF_0000_0001, 0),  # no carry out of 32 bits
    ("fetch add32", 0xFFFF_FFFE, 0xDEAD_BEEF_0000_0001, 0xFFFF_FFFE, 0xFFFF_FFFF),  # old, zero-extended
    ("or32", 0x8000_0000, 0x1_0000_0001, 0x1_0000_0001, 0x8000_0001),
    ("fetch or32", 0x8000_0000, 0x1_0000_0001, 0x8000_0000, 0x8000_0001),  # not sign-extended
    ("and32", 0xF0F0_F0F0, 0xFFFF_FFFF_0000_FFFF, 0xFFFF_FFFF_0000_FFFF, 0xF0F0),
    ("fetch and32", 0xF0F0_F0F0, 0xFFFF_FFFF_0000_FFFF, 0xF0F0_F0F0, 0xF0F0),
    ("xor32", 0x8000_0000, M64, M64, 0x7FFF_FFFF),
    ("fetch xor32", 0x8000_0000, M64, 0x8000_0000, 0x7FFF_FFFF),
    ("xchg32", 0x8000_0000, 0xFFFF_FFFF_1234_5678, 0x8000_0000, 0x1234_5678),
]


@pytest.mark.parametrize("op,init,src,src_after,mem_after", ATOMIC64, ids=_ids(ATOMIC64))
def test_atomic64(engine, op, init, src, src_after, mem_after):
    result = run_result(_atomic_program(op, src), engine, _mem64(init))
    assert result.retval == 0x7777  # r0 untouched
    assert result.data_out[16:24] == src_after.to_bytes(8, "little")
    assert result.data_out[:16] == mem_after.to_bytes(8, "little") + b"\xaa" * 8


@pytest.mark.parametrize("op,init,src,src_after,mem_after", ATOMIC32, ids=_ids(ATOMIC32))
def test_atomic32(engine, op, init, src, src_after, mem_after):
    result = run_result(_atomic_program(op, src), engine, _mem32(init))
    assert result.retval == 0x7777
    assert result.data_out[16:24] == src_after.to_bytes(8, "little")
    assert result.data_out[:16] == mem_after.to_bytes(4, "little") + b"\xcc" * 4 + b"\xaa" * 8


# (op, initial target, r0, src, expected r0, expected target)
CMPXCHG64 = [
    ("cmpxchg", 5, 5, 9, 5, 9),  # equal: store src, r0 = old
    ("cmpxchg", 5, 6, 9, 5, 5),  # different: no store, r0 = old
    ("cmpxchg", 0x1_0000_0005, 5, 9, 0x1_0000_0005, 0x1_0000_0005),  # 64-bit compare: high half differs
    ("cmpxchg", M64, M64, 0x1234_5678_9ABC_DEF0, M64, 0x1234_5678_9ABC_DEF0),
]
CMPXCHG32 = [
    # compare with the low 32 bits of r0; r0 = old u32, zero-extended
    ("cmpxchg32", 0x8000_0005, 0xFFFF_FFFF_8000_0005, 0xAAAA_1234_5678, 0x8000_0005, 0x1234_5678),
    ("cmpxchg32", 7, 0x1_0000_0008, 9, 7, 7),
    ("cmpxchg32", 0xFFFF_FFFF, 0xFFFF_FFFE, 1, 0xFFFF_FFFF, 0xFFFF_FFFF),
]


@pytest.mark.parametrize("op,init,r0,src,r0_after,mem_after", CMPXCHG64, ids=_ids(CMPXCHG64))
def test_cmpxchg64(engine, op, init, r0, src, r0_after, mem_after):
    result = run_result(_atomic_program(op, src, r0), engine, _mem64(init))
    assert result.retval == r0_after
    assert result.data_out[16:24] == src.to_bytes(8, "little")  # src is not written
    assert result.data_out[:16] == mem_after.to_bytes(8, "little") + b"\xaa" * 8


@pytest.mark.parametrize("op,init,r0,src,r0_after,mem_after", CMPXCHG32, ids=_ids(CMPXCHG32))
def test_cmpxchg32(engine, op, init, r0, src, r0_after, mem_after):
    result = run_result(_atomic_program(op, src, r0), engine, _mem32(init))
    assert result.retval == r0_after
    assert result.data_out[16:24] == src.to_bytes(8, "little")
    assert result.data_out[:16] == mem_after.to_bytes(4, "little") + b"\xcc" * 4 + b"\xaa" * 8


def test_atomic_with_offset_on_stack(engine):
    text = """
        stdw [%r10-16], 40
        mov %r2, 2
        mov %r3, %r10
        lock fetch add [%r3-16], %r2
        ldxdw %r0, [%r10-16]
        lsh %r0, 8
        or %r0, %r2
        exit
    """
    assert run(text, engine) == (42 << 8) | 40  # memory 40+2, r2 = old 40


# =============================================================================================
# ld_imm64
# =============================================================================================

# (imm, next_imm, expected): value = (u64)(u32)next_imm << 32 | (u32)imm
LDDW_CASES = [
    (-1, 0, 0xFFFF_FFFF),  # low half is not sign-extended
    (-0x8000_0000, 0, 0x8000_0000),
    (0, -1, 0xFFFF_FFFF_0000_0000),
    (-0x8000_0000, 0x1234_5678, 0x1234_5678_8000_0000),
    (0x5566_7788, 0x1122_3344, 0x1122_3344_5566_7788),
    (-1, -1, M64),
]


@pytest.mark.parametrize("imm,next_imm,expected", LDDW_CASES, ids=_ids(LDDW_CASES))
def test_ld_imm64_insns(engine, imm, next_imm, expected):
    insns = [Insn(isa.LDDW, 0, 0, 0, imm, next_imm), Insn(0, 0, 0, 0, next_imm), Insn(isa.EXIT_OP)]
    assert Program(insns).run(b"", engine=engine) == expected
    assert Program.from_bytes(isa.encode(insns)).run(b"", engine=engine) == expected


@pytest.mark.parametrize("text,expected", [
    ("0x80000000", 0x8000_0000),  # not sign-extended
    ("0xffffffff", 0xFFFF_FFFF),
    ("-1", M64),
    ("0x8000000000000000", 0x8000_0000_0000_0000),
    ("-0x8000000000000000", 0x8000_0000_0000_0000),
])
def test_lddw_asm(engine, text, expected):
    assert run(f"lddw %r0, {text}\nexit", engine) == expected

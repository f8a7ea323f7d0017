"""Per-instruction semantics on both engines (interpreter and JIT).

Every expected value below is a literal worked out by hand from docs/semantics.md
(#instruction-set and #pitfalls; the comment next to it says why); none is computed by bpfjit.
Programs are written in the bpf_conformance assembly syntax or built from ``isa.Insn`` lists, and
run through the public ``Program`` API with r1 = the memory buffer, r2 = its length.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bpfjit import isa
from bpfjit.errors import BPFError, BPFRuntimeError
from bpfjit.isa import Insn
from bpfjit.program import Program

from conftest import conformance_helpers

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


# =============================================================================================
# ALU64
# =============================================================================================

# (mnemonic, dst, imm, expected). Run as the K form (imm in the instruction, sign-extended to 64
# bits) and as the X form (src register = the sign-extended imm), which must agree.
ALU64_K = [
    # ADD: plain 64-bit wrap-around
    ("add", 0x7FFF_FFFF_FFFF_FFFF, 1, 0x8000_0000_0000_0000),  # INT64_MAX + 1 wraps to INT64_MIN
    ("add", M64, 1, 0),  # 2^64 - 1 + 1 wraps to 0
    ("add", 5, -3, 2),  # imm sign-extended: 5 + 0xffff..fffd = 2
    ("add", 0x1_0000_0000, -1, 0xFFFF_FFFF),  # 2^32 - 1: borrow crosses into the high half
    # SUB
    ("sub", 5, 7, 0xFFFF_FFFF_FFFF_FFFE),  # -2
    ("sub", 0, -1, 1),  # 0 - (-1)
    ("sub", 0x1_0000_0000, 1, 0xFFFF_FFFF),
    # MUL: low 64 bits of the product
    ("mul", 0x1_0000_0000, 0x10, 0x10_0000_0000),
    ("mul", 3, -1, 0xFFFF_FFFF_FFFF_FFFD),  # -3
    ("mul", 0x8000_0000_0000_0001, 2, 2),  # bit 64 of the product is dropped
    ("mul", 0x1_2345_6789, 0x10000, 0x1_2345_6789_0000),
    # DIV: unsigned, imm sign-extended to 64 bits (imm = -1 is the divisor 2^64 - 1)
    ("div", 100, 7, 14),
    ("div", M64, 2, 0x7FFF_FFFF_FFFF_FFFF),  # unsigned, not -1/2
    ("div", M64, -1, 1),  # (2^64-1) / (2^64-1)
    ("div", 0xFFFF_FFFF_FFFF_FFFE, -1, 0),  # divisor 2^64-1 is larger than dst
    ("div", 0xFFFF_FFFF, -1, 0),  # a u32 divisor 0xffffffff would give 1; 64-bit sign-extension gives 0
    ("div", 0x1_0000_0000, 0x10, 0x1000_0000),
    # SDIV (off = 1): signed, truncating toward zero
    ("sdiv", 0xFFFF_FFFF_FFFF_FFF9, 2, 0xFFFF_FFFF_FFFF_FFFD),  # -7 / 2 = -3
    ("sdiv", 7, -2, 0xFFFF_FFFF_FFFF_FFFD),  # 7 / -2 = -3
    ("sdiv", 0xFFFF_FFFF_FFFF_FFF9, -2, 3),  # -7 / -2 = 3
    ("sdiv", 0x8000_0000_0000_0000, -1, 0x8000_0000_0000_0000),  # INT64_MIN / -1 wraps to INT64_MIN
    ("sdiv", 0x8000_0000_0000_0000, 2, 0xC000_0000_0000_0000),  # -2^63 / 2 = -2^62
    ("sdiv", M64, 0x7FFF_FFFF, 0),  # -1 / big = 0 (truncation), unsigned would be 0x200000004
    ("sdiv", 5, -1, 0xFFFF_FFFF_FFFF_FFFB),  # x / -1 = -x
    ("sdiv", 0xFFFF_FFFF_FFFF_FFFB, -1, 5),  # -5 / -1 = 5
    # MOD: unsigned
    ("mod", 100, 7, 2),
    ("mod", M64, -1, 0),  # (2^64-1) % (2^64-1)
    ("mod", 5, -1, 5),  # divisor 2^64-1 > 5
    ("mod", 0xFFFF_FFFF_FFFF_FFF3, 3, 0),  # 2^64 - 13: 2^64 = 1 (mod 3) and 13 = 1 (mod 3), so 0
    # SMOD (off = 1): signed, truncating (sign of the dividend)
    ("smod", 0xFFFF_FFFF_FFFF_FFF3, 3, M64),  # -13 % 3 = -1
    ("smod", 13, -3, 1),  # 13 % -3 = 1
    ("smod", 0xFFFF_FFFF_FFFF_FFF3, -3, M64),  # -13 % -3 = -1
    ("smod", 0x8000_0000_0000_0000, -1, 0),  # INT64_MIN % -1 = 0 (no trap)
    ("smod", 0x8000_0000_0000_0000, 3, 0xFFFF_FFFF_FFFF_FFFE),  # 2^63 = 2 (mod 3) so -2^63 % 3 = -2
    ("smod", 5, -1, 0),  # x % -1 = 0
    ("smod", 0xFFFF_FFFF_FFFF_FFFB, -1, 0),
    # OR / AND / XOR with sign-extended imm
    ("or", 0x12, -0x100, 0xFFFF_FFFF_FFFF_FF12),  # imm = 0xffff..ff00
    ("or", 0x1_0000_0000, 1, 0x1_0000_0001),
    ("and", 0x1234_5678_9ABC_DEF0, -1, 0x1234_5678_9ABC_DEF0),  # `and r, -1` keeps the high half
    ("and", 0x1234_5678_9ABC_DEFF, -0x10, 0x1234_5678_9ABC_DEF0),  # imm = 0xffff..fff0
    ("and", 0x1234_5678_9ABC_DEF0, 0xFF00, 0xDE00),
    ("and", M64, 0x7FFF_FFFF, 0x7FFF_FFFF),  # positive imm: high half cleared
    ("xor", 0x1234_5678_9ABC_DEF0, -1, 0xEDCB_A987_6543_210F),  # ~dst
    ("xor", 0xFF, 0x0F, 0xF0),
    # Shifts (counts in range for the K form)
    ("lsh", 1, 63, 0x8000_0000_0000_0000),
    ("lsh", 0x1234_5678_9ABC_DEF0, 4, 0x2345_6789_ABCD_EF00),  # top nibble shifted out
    ("lsh", 0xFFFF_FFFF, 32, 0xFFFF_FFFF_0000_0000),
    ("rsh", 0x8000_0000_0000_0000, 63, 1),  # logical: zero fill
    ("rsh", M64, 4, 0x0FFF_FFFF_FFFF_FFFF),
    ("rsh", 0x1234_5678_9ABC_DEF0, 32, 0x1234_5678),
    ("arsh", 0x8000_0000_0000_0000, 63, M64),  # sign fill
    ("arsh", 0xFFFF_FFFF_FFFF_FFF0, 2, 0xFFFF_FFFF_FFFF_FFFC),  # -16 >> 2 = -4
    ("arsh", 0x7000_0000_0000_0000, 60, 7),  # positive: zero fill
    ("arsh", 0x8000_0000_0000_0000, 32, 0xFFFF_FFFF_8000_0000),
    # MOV: imm sign-extended
    ("mov", 0x1122_3344_5566_7788, -1, M64),
    ("mov", 0x1122_3344_5566_7788, 0x7FFF_FFFF, 0x7FFF_FFFF),
    ("mov", 0x1122_3344_5566_7788, -0x8000_0000, 0xFFFF_FFFF_8000_0000),
]

# (mnemonic, dst, src register value, expected): X form only, src values beyond 32 bits.
ALU64_X = [
    ("add", 0x1_0000_0000, 0x2_0000_0000, 0x3_0000_0000),
    ("sub", 0x1_0000_0000, 0x2_0000_0000, 0xFFFF_FFFF_0000_0000),  # -2^32
    ("mul", 0x1_0000_0000, 0x1_0000_0000, 0),  # 2^64 wraps to 0
    ("div", M64, 0x1_0000_0000, 0xFFFF_FFFF),  # (2^64-1) / 2^32
    ("div", 0x3_0000_0000, 0x1_0000_0000, 3),  # divisor's low half is 0 but ALU64 uses all 64 bits
    ("div", 1234, 0, 0),  # division by zero gives 0
    ("div", M64, 0, 0),
    ("sdiv", 0x123, 0, 0),  # signed division by zero gives 0
    ("sdiv", 0x8000_0000_0000_0000, M64, 0x8000_0000_0000_0000),  # INT64_MIN / -1 (register form)
    ("sdiv", 0xFFFF_FFFE_0000_0000, 0x1_0000_0000, 0xFFFF_FFFF_FFFF_FFFE),  # -2^33 / 2^32 = -2
    ("sdiv", 0x10, 0xFFFF_FFFF_0000_0000, 0),  # 16 / -2^32 = 0 (the divisor is not truncated to 32 bits)
    ("mod", 0x1234, 0, 0x1234),  # modulo by zero keeps dst
    ("mod", 0xFEDC_BA98_7654_3210, 0, 0xFEDC_BA98_7654_3210),  # ... all 64 bits of it
    ("mod", 0x7_0000_0005, 0x1_0000_0000, 5),  # 64-bit divisor
    ("smod", 0xFEDC_BA98_7654_3210, 0, 0xFEDC_BA98_7654_3210),  # signed modulo by zero keeps dst
    ("smod", 0x8000_0000_0000_0000, M64, 0),  # INT64_MIN % -1 = 0
    ("smod", 0xFFFF_FFFF_FFFF_FFF3, 3, M64),  # -13 % 3 = -1
    ("smod", 0x13, 0xFFFF_FFFF_0000_0000, 0x13),  # |divisor| > |dst|: remainder is dst
    ("lsh", 1, 64, 1),  # count masked with 63: 64 -> 0
    ("lsh", 1, 65, 2),  # 65 & 63 = 1
    ("lsh", 1, M64, 0x8000_0000_0000_0000),  # (2^64-1) & 63 = 63
    ("rsh", 0x8000_0000_0000_0000, 0x1_0000_003F, 1),  # & 63 = 63
    ("rsh", 0xF0, 0x44, 0xF),  # 0x44 & 63 = 4
    ("arsh", 0x8000_0000_0000_0000, 0x44, 0xF800_0000_0000_0000),  # 68 & 63 = 4, sign fill
    ("arsh", 0xFFFF_FFFF_FFFF_FFF0, 0x42, 0xFFFF_FFFF_FFFF_FFFC),  # 66 & 63 = 2: -16 >> 2 = -4
    ("mov", 0, 0x1122_3344_5566_7788, 0x1122_3344_5566_7788),
    ("and", M64, 0x1_0000_0000, 0x1_0000_0000),
    ("or", 0x1_0000_0000, 0x8000_0000_0000_0000, 0x8000_0001_0000_0000),
    ("xor", 0xFFFF_0000_FFFF_0000, 0xFFFF_FFFF_0000_0000, 0x0000_FFFF_FFFF_0000),
]


def _alu_k(mn: str, dst: int, imm: int) -> str:
    return f"lddw %r0, {dst:#x}\n{mn} %r0, {imm:#x}\nexit"


def _alu_x(mn: str, dst: int, src: int) -> str:
    # dst and src in other registers than r0 so both operands really come from registers
    return f"lddw %r3, {dst:#x}\nlddw %r4, {src:#x}\n{mn} %r3, %r4\nmov %r0, %r3\nexit"


@pytest.mark.parametrize("mn,dst,imm,expected", ALU64_K, ids=_ids(ALU64_K))
def test_alu64_k(engine, mn, dst, imm, expected):
    assert run(_alu_k(mn, dst, imm), engine) == expected


@pytest.mark.parametrize("mn,dst,imm,expected", ALU64_K, ids=_ids(ALU64_K))
def test_alu64_x_same_as_k(engine, mn, dst, imm, expected):
    # The register holds the 64-bit sign extension of the imm, so the result is the same.
    assert run(_alu_x(mn, dst, imm & M64), engine) == expected


@pytest.mark.parametrize("mn,dst,src,expected", ALU64_X, ids=_ids(ALU64_X))
def test_alu64_x(engine, mn, dst, src, expected):
    assert run(_alu_x(mn, dst, src), engine) == expected


def test_alu64_same_register(engine):
    # r3 = r3 * r3 and r3 -= r3 read the same register as both operands
    assert run("lddw %r3, 0x100000001\nmul %r3, %r3\nmov %r0, %r3\nexit", engine) == 0x2_0000_0001  # (2^32+1)^2 mod 2^64
    assert run("lddw %r3, 0x123456789\nsub %r3, %r3\nmov %r0, %r3\nexit", engine) == 0


# =============================================================================================
# ALU (32-bit)
# =============================================================================================

# (mnemonic, dst (upper half is junk that must be ignored and cleared), imm, expected). Run as the
# K form and as the X form (src = (u32)imm with junk in the upper half).
ALU32_K = [
    ("add32", 0xDEAD_BEEF_FFFF_FFFF, 1, 0),  # low half wraps to 0, upper half cleared
    ("add32", 0x1_0000_0005, -3, 2),
    ("add32", 0xFFFF_FFFF_7FFF_FFFF, 1, 0x8000_0000),  # no sign extension into the upper half
    ("sub32", 0xFFFF_0000_0000_0005, 7, 0xFFFF_FFFE),  # -2 as u32
    ("sub32", 0x1234_0000_0000, 1, 0xFFFF_FFFF),  # 0 - 1 in 32 bits
    ("mul32", 0x1234_5678_0001_0000, 0x10000, 0),  # 2^32 truncated to 0
    ("mul32", 0xABCD_EF00_0000_0003, -1, 0xFFFF_FFFD),  # 3 * -1 = -3 as u32
    ("mul32", 0x5_0000_1234, 0x10, 0x1_2340),
    # DIV32: unsigned, imm taken as u32
    ("div32", 0xFFFF_FFFF_0000_0064, 7, 14),  # 100 / 7
    ("div32", 0xFFFF_FFFE, -1, 0),  # divisor 0xffffffff > 0xfffffffe
    ("div32", 0xDEAD_FFFF_FFFF, -1, 1),  # 0xffffffff / 0xffffffff
    ("div32", 0xFFFF_FFFF, -0x8000_0000, 1),  # 0xffffffff / 0x80000000 = 1 (signed would give 0)
    ("div32", 0x1_0000_0010, 2, 8),  # upper half of dst ignored: 0x10 / 2
    # SDIV32: imm taken as s32
    ("sdiv32", 0xFFFF_FFF9, 2, 0xFFFF_FFFD),  # -7 / 2 = -3
    ("sdiv32", 0x7_0000_0007, -2, 0xFFFF_FFFD),  # 7 / -2 = -3
    ("sdiv32", 0xFFFF_FFF9, -2, 3),  # -7 / -2 = 3
    ("sdiv32", 0x8000_0000, -1, 0x8000_0000),  # INT32_MIN / -1 wraps to INT32_MIN, zero-extended
    ("sdiv32", 0xFFFF_FFFF_8000_0000, -1, 0x8000_0000),  # same with junk above
    ("sdiv32", 0xFFFF_FFFF, -0x8000_0000, 0),  # -1 / INT32_MIN = 0
    ("sdiv32", 0xFFFF_FFF0, 0x7FFF_FFFF, 0),  # -16 / INT32_MAX = 0 (unsigned would be 2)
    ("sdiv32", 0xFFFF_FFFF_0000_0005, -1, 0xFFFF_FFFB),  # 5 / -1 = -5, zero-extended
    ("sdiv32", 0xFFFF_FFFB, -1, 5),  # -5 / -1 = 5
    # MOD32: unsigned, imm taken as u32
    ("mod32", 0xDEAD_0000_0064, 7, 2),  # 100 % 7
    ("mod32", 0xFFFF_FFFE, -1, 0xFFFF_FFFE),  # % 0xffffffff
    ("mod32", 0xFFFF_FFFF, -1, 0),
    ("mod32", 0xFFFF_FFF3, 3, 0),  # 2^32 - 13: 2^32 = 1 (mod 3), 13 = 1 (mod 3)
    # SMOD32
    ("smod32", 0xFFFF_FFF3, 3, 0xFFFF_FFFF),  # -13 % 3 = -1, zero-extended
    ("smod32", 0x1_0000_000D, -3, 1),  # 13 % -3 = 1
    ("smod32", 0xFFFF_FFF3, -3, 0xFFFF_FFFF),  # -13 % -3 = -1
    ("smod32", 0x8000_0000, -1, 0),  # INT32_MIN % -1 = 0
    ("smod32", 0xFFFF_FFFF_8000_0000, 3, 0xFFFF_FFFE),  # 2^31 = 2 (mod 3) so -2^31 % 3 = -2
    ("smod32", 0x1_0000_0005, -1, 0),  # x % -1 = 0
    # Bitwise
    ("or32", 0xFFFF_FFFF_0000_0000, 0x12, 0x12),
    ("or32", 0x1_0000_0000, -0x100, 0xFFFF_FF00),  # (u32)imm, no sign extension to 64
    ("and32", 0x1234_5678_9ABC_DEF0, -1, 0x9ABC_DEF0),  # and32 with -1 still clears the upper half
    ("and32", M64, 0xFF00, 0xFF00),
    ("xor32", 0xFFFF_FFFF_0000_FFFF, -1, 0xFFFF_0000),
    ("xor32", 0x1_0000_00FF, 0x0F, 0xF0),
    # Shifts
    ("lsh32", 1, 31, 0x8000_0000),
    ("lsh32", 0x1_8000_0000, 1, 0),  # bit 31 shifted out of the 32-bit result
    ("lsh32", 0xFFFF_FFFF_1234_5678, 4, 0x2345_6780),
    ("rsh32", 0xFFFF_FFFF_8000_0000, 4, 0x0800_0000),  # logical, upper half never shifted in
    ("rsh32", 0x1_0000_0000, 1, 0),
    ("arsh32", 0x8000_0000, 4, 0xF800_0000),  # s32 shift, then zero-extended (not 0xffffffff_f8000000)
    ("arsh32", 0xFFFF_FFFF_7FFF_FFF0, 4, 0x07FF_FFFF),  # positive s32: zero fill
    ("arsh32", 0x1_FFFF_FFF0, 2, 0xFFFF_FFFC),  # -16 >> 2 = -4, zero-extended
    ("arsh32", 0x8000_0000, 31, 0xFFFF_FFFF),
    # MOV32
    ("mov32", 0x1122_3344_5566_7788, -1, 0xFFFF_FFFF),  # imm as u32, zero-extended
    ("mov32", 0x1122_3344_5566_7788, 0x7FFF_FFFF, 0x7FFF_FFFF),
    ("mov32", 0x1122_3344_5566_7788, -0x8000_0000, 0x8000_0000),
]

# Identity operations must still zero-extend: dst = 0xdeadbeef_12345678 -> 0x12345678. (An
# optimiser that drops `x + 0` or `x << 0` must keep the truncation.)
ALU32_IDENTITY = [
    ("add32", 0), ("sub32", 0), ("mul32", 1), ("div32", 1), ("sdiv32", 1),
    ("mod32", -1),  # 0x12345678 % 0xffffffff
    ("smod32", 0x7FFF_FFFF),  # 0x12345678 % INT32_MAX
    ("or32", 0), ("and32", -1), ("xor32", 0), ("lsh32", 0), ("rsh32", 0), ("arsh32", 0),
    ("mov32", 0x1234_5678),
]
ALU32_K += [(mn, 0xDEAD_BEEF_1234_5678, imm, 0x1234_5678) for mn, imm in ALU32_IDENTITY]
ALU32_K += [("arsh32", 0xFFFF_FFFF_8000_0000, 0, 0x8000_0000)]  # shift by 0 of a negative s32

# (mnemonic, dst, src register value, expected): X form only.
ALU32_X = [
    # The divisor-zero test is on the low 32 bits of src (selftest "DIV32 by 0, zero check 2").
    ("div32", 0x1234, 0xFFFF_FFFF_0000_0000, 0),
    ("div32", 0xFFFF_FFFF_0000_1234, 0, 0),
    ("sdiv32", 0x1234, 0x5_0000_0000, 0),
    ("mod32", 0xDEAD_BEEF_1234_5678, 0xFFFF_FFFF_0000_0000, 0x1234_5678),  # keep low half, zero upper
    ("mod32", 0xDEAD_BEEF_1234_5678, 0, 0x1234_5678),
    ("smod32", 0xDEAD_BEEF_8765_4321, 0x1_0000_0000, 0x8765_4321),  # signed mod by zero: same
    ("mod32", 0x5_0000_0007, 0x1_0000_0003, 1),  # 7 % 3 on the low halves
    ("div32", 0x1_0000_0000, 0x1_0000_0000, 0),  # 0 / 0 on the low halves (64-bit would give 1)
    ("sdiv32", 0x8000_0000, 0x1_FFFF_FFFF, 0x8000_0000),  # low half of src is -1: INT32_MIN / -1
    ("smod32", 0x8000_0000, 0x1_FFFF_FFFF, 0),  # INT32_MIN % -1 = 0
    ("lsh32", 1, 33, 2),  # count masked with 31: 33 -> 1
    ("lsh32", 1, 32, 1),  # 32 & 31 = 0
    ("lsh32", 1, M64, 0x8000_0000),  # & 31 = 31
    ("rsh32", 0x8000_0000, 0x1_0000_0023, 0x1000_0000),  # 0x23 & 31 = 3
    ("arsh32", 0x8000_0000, 36, 0xF800_0000),  # 36 & 31 = 4
    ("arsh32", 0xFFFF_FFFF_4000_0000, 0x3E, 1),  # 62 & 31 = 30: 0x40000000 >> 30 = 1
    ("mov32", 0, 0xDEAD_BEEF_CAFE_BABE, 0xCAFE_BABE),  # w0 = w1 takes the low half only
    ("add32", 0xFFFF_FFFF, 0x1_0000_0001, 0),  # 0xffffffff + 1 on the low halves
    ("mul32", 0x1_0000_0002, 0x1_0000_0003, 6),  # 2 * 3 on the low halves
    ("sub32", 0x1_0000_0000, 0x1_0000_0000, 0),
    ("lsh32", 0xDEAD_BEEF_1234_5678, 0x20, 0x1234_5678),  # count 32 & 31 = 0: still zero-extends
    ("rsh32", 0xDEAD_BEEF_1234_5678, 0xFFFF_FFE0, 0x1234_5678),  # & 31 = 0
    ("arsh32", 0xDEAD_BEEF_8765_4321, 0x40, 0x8765_4321),  # & 31 = 0
]


@pytest.mark.parametrize("mn,dst,imm,expected", ALU32_K, ids=_ids(ALU32_K))
def test_alu32_k(engine, mn, dst, imm, expected):
    assert run(_alu_k(mn, dst, imm), engine) == expected


@pytest.mark.parametrize("mn,dst,imm,expected", ALU32_K, ids=_ids(ALU32_K))
def test_alu32_x_same_as_k(engine, mn, dst, imm, expected):
    # Only the low 32 bits of src take part, so junk above them must not change anything.
    assert run(_alu_x(mn, dst, (imm & 0xFFFF_FFFF) | JUNK_HI), engine) == expected


@pytest.mark.parametrize("mn,dst,src,expected", ALU32_X, ids=_ids(ALU32_X))
def test_alu32_x(engine, mn, dst, src, expected):
    assert run(_alu_x(mn, dst, src), engine) == expected


@pytest.mark.parametrize("mn,dst,expected", [
    ("div32", 0xFFFF_FFFF_0000_0007, 1),  # w1 / w1 = 1
    ("div32", 0x7_0000_0000, 0),  # low half 0: divide by zero
    ("mod32", 0x7_0000_0000, 0),  # mod by zero keeps the low half (0), upper cleared
    ("sub32", 0xFFFF_FFFF_FFFF_FFFF, 0),
    ("mul32", 0x1_0001_0001, 0x2_0001),  # 0x10001^2 = 0x100020001, low half
    ("add", 0x8000_0000_0000_0001, 2),  # 64-bit: top bit carried out
    ("smod", 0x8000_0000_0000_0000, 0),
    ("sdiv", 0x8000_0000_0000_0000, 1),
    ("xor32", 0xFFFF_FFFF_FFFF_FFFF, 0),
])
def test_alu_same_register(engine, mn, dst, expected):
    assert run(f"lddw %r1, {dst:#x}\n{mn} %r1, %r1\nmov %r0, %r1\nexit", engine) == expected


def test_mov32_self_zero_extends(engine):
    # `w1 = w1` is the zero-extension idiom
    assert run("lddw %r1, -1\nmov32 %r1, %r1\nmov %r0, %r1\nexit", engine) == 0xFFFF_FFFF


def test_w2_div_w1_with_r1_high_only_is_div_by_zero(engine):
    # docs/semantics.md#instruction-set: `w2 /= w1` with r1 = 0xffffffff00000000 divides by zero -> 0
    text = """
        lddw %r1, 0xffffffff00000000
        mov %r2, 77
        div32 %r2, %r1
        mov %r0, %r2
        exit
    """
    assert run(text, engine) == 0


# --- NEG ----------------------------------------------------------------------------------------
NEG_CASES = [
    ("neg", 5, 0xFFFF_FFFF_FFFF_FFFB),  # -5
    ("neg", 0x8000_0000_0000_0000, 0x8000_0000_0000_0000),  # -INT64_MIN wraps
    ("neg", 0, 0),
    ("neg", M64, 1),
    ("neg", 0x1_0000_0000, 0xFFFF_FFFF_0000_0000),
    ("neg32", 0xFFFF_FFFF_0000_0005, 0xFFFF_FFFB),  # -5 as u32, zero-extended
    ("neg32", 0x8000_0000, 0x8000_0000),  # -INT32_MIN wraps, zero-extended
    ("neg32", 0x1_0000_0000, 0),  # low half is 0
    ("neg32", 0xDEAD_FFFF_FFFF, 1),  # -(-1)
]


@pytest.mark.parametrize("mn,dst,expected", NEG_CASES, ids=_ids(NEG_CASES))
def test_neg(engine, mn, dst, expected):
    assert run(f"lddw %r5, {dst:#x}\n{mn} %r5\nmov %r0, %r5\nexit", engine) == expected


# --- MOVSX --------------------------------------------------------------------------------------
MOVSX_CASES = [
    ("movsx832", 0xFFFF_FFFF_FFFF_FF80, 0xFFFF_FF80),  # s8 -128 -> s32, then zero-extended
    ("movsx832", 0x1234_5680, 0xFFFF_FF80),  # only the low byte counts
    ("movsx832", 0xFFFF_FFFF_FFFF_FF7F, 0x7F),  # positive byte
    ("movsx1632", 0x8000, 0xFFFF_8000),
    ("movsx1632", 0xABCD_7FFF, 0x7FFF),
    ("movsx1632", 0x1_0000_FFFF, 0xFFFF_FFFF),  # -1 as s16 -> 0xffffffff, not 64-bit -1
    ("movsx864", 0x80, 0xFFFF_FFFF_FFFF_FF80),
    ("movsx864", 0xFF_FF7F, 0x7F),
    ("movsx1664", 0x8001, 0xFFFF_FFFF_FFFF_8001),
    ("movsx1664", 0xFFFF_FFFF_FFFF_7FFF, 0x7FFF),
    ("movsx3264", 0x8000_0000, 0xFFFF_FFFF_8000_0000),
    ("movsx3264", 0xFFFF_FFFF_7FFF_FFFF, 0x7FFF_FFFF),
    ("movsx3264", 0x1_FFFF_FFFF, M64),
]


@pytest.mark.parametrize("mn,src,expected", MOVSX_CASES, ids=_ids(MOVSX_CASES))
def test_movsx(engine, mn, src, expected):
    # dst starts with junk: MOVSX overwrites all 64 bits of it
    text = f"lddw %r3, 0x1111111111111111\nlddw %r4, {src:#x}\n{mn} %r3, %r4\nmov %r0, %r3\nexit"
    assert run(text, engine) == expected


def test_movsx_same_register(engine):
    assert run("mov %r3, 0xff\nmovsx864 %r3, %r3\nmov %r0, %r3\nexit", engine) == M64  # s8 -1


# --- END / byte swaps ---------------------------------------------------------------------------
END_CASES = [
    ("le16", 0x1122_3344_5566_7788, 0x7788),  # to-LE on x86 is a truncation
    ("le32", 0x1122_3344_5566_7788, 0x5566_7788),
    ("le64", 0x1122_3344_5566_7788, 0x1122_3344_5566_7788),  # no-op
    ("le16", 0xFFFF_FFFF_FFFF_8001, 0x8001),  # no sign extension
    ("be16", 0x1122_3344_5566_7788, 0x8877),  # bswap of the low 16 bits, zero-extended
    ("be32", 0x1122_3344_5566_7788, 0x8877_6655),
    ("be64", 0x1122_3344_5566_7788, 0x8877_6655_4433_2211),
    ("be16", 0xFFFF_FFFF_FFFF_0080, 0x8000),
    ("bswap16", 0x1122_3344_5566_7788, 0x8877),  # ALU64 END: unconditional swaps
    ("bswap32", 0x1122_3344_5566_7788, 0x8877_6655),
    ("bswap64", 0x1122_3344_5566_7788, 0x8877_6655_4433_2211),
    ("bswap32", 0xFFFF_FFFF_0000_0080, 0x8000_0000),  # zero-extended, not sign-extended
    ("bswap64", 0x0000_0000_0000_0080, 0x8000_0000_0000_0000),
]


@pytest.mark.parametrize("mn,dst,expected", END_CASES, ids=_ids(END_CASES))
def test_end(engine, mn, dst, expected):
    assert run(f"lddw %r6, {dst:#x}\n{mn} %r6\nmov %r0, %r6\nexit", engine) == expected


# =============================================================================================
# JMP / JMP32
# =============================================================================================

def _jump_program(mn: str, a: int, b, is_reg: bool) -> str:
    operand = "%r2" if is_reg else f"{b:#x}"
    setup = f"lddw %r2, {b:#x}\n" if is_reg else ""
    return textwrap.dedent(f"""\
        lddw %r1, {a:#x}
        {setup}mov %r0, 0
        {mn} %r1, {operand}, taken
        exit
        taken:
        mov %r0, 1
        exit
    """)


# (mnemonic, dst, imm, taken). X form: src register = sign-extended imm.
JMP_K = [
    ("jeq", 5, 5, True), ("jeq", 5, 6, False),
    ("jeq", M64, -1, True),  # imm sign-extended to 64 bits
    ("jeq", 0xFFFF_FFFF, -1, False),  # ... so it is not 0xffffffff
    ("jeq", 0x1_0000_0005, 5, False),  # all 64 bits compared
    ("jne", 5, 5, False), ("jne", 0x1_0000_0005, 5, True), ("jne", M64, -1, False),
    ("jgt", M64, 1, True),  # unsigned
    ("jgt", 1, -1, False),  # -1 is 2^64-1 unsigned
    ("jgt", 0x1_0000_0000, -1, False),  # `jgt r1, -1`: sign-extended (zero-extended would be taken)
    ("jgt", 5, 5, False), ("jgt", 6, 5, True),
    ("jge", 5, 5, True), ("jge", 4, 5, False), ("jge", M64, -1, True),
    ("jge", 0xFFFF_FFFF_FFFF_FFFE, -1, False),
    ("jlt", 1, -1, True), ("jlt", 0x1_0000_0000, -1, True), ("jlt", 5, 5, False),
    ("jlt", M64, 1, False),
    ("jle", 5, 5, True), ("jle", 6, 5, False), ("jle", M64, -1, True), ("jle", 0, 0, True),
    ("jsgt", M64, 1, False),  # -1 s> 1 is false
    ("jsgt", 1, -1, True), ("jsgt", 0x8000_0000_0000_0000, 0, False),
    ("jsgt", 0xFFFF_FFFF, 0, True),  # positive in 64 bits
    ("jsgt", 5, 5, False),
    ("jsge", M64, -1, True), ("jsge", 0xFFFF_FFFF_FFFF_FFFE, -1, False), ("jsge", 0, -1, True),
    ("jslt", M64, 0, True), ("jslt", 0, -1, False),
    ("jslt", 0xFFFF_FFFF, 0, False),  # positive in 64 bits (JMP32 would see -1)
    ("jslt", 0x8000_0000_0000_0000, -0x8000_0000, True),  # INT64_MIN < -2^31
    ("jsle", M64, -1, True), ("jsle", 0, -1, False), ("jsle", 0x8000_0000_0000_0000, 0x7FFF_FFFF, True),
    ("jset", 0x10, 0x30, True),  # tests &, not ==
    ("jset", 0x10, 0x20, False),
    ("jset", 0x1_0000_0000, -1, True),  # sign-extended imm covers bit 32
    ("jset", 0x1_0000_0000, 0x7FFF_FFFF, False),
]

# (mnemonic, dst, src register value, taken): X form only.
JMP_X = [
    ("jeq", 0x1_0000_0005, 0x1_0000_0005, True), ("jeq", 0x1_0000_0005, 0x2_0000_0005, False),
    ("jne", 0x1_0000_0005, 0x2_0000_0005, True),
    ("jgt", 0x2_0000_0000, 0x1_FFFF_FFFF, True), ("jgt", 0x1_FFFF_FFFF, 0x2_0000_0000, False),
    ("jge", 0x2_0000_0000, 0x2_0000_0000, True),
    ("jlt", 0x1_0000_0000, 0xFFFF_FFFF, False), ("jlt", 0xFFFF_FFFF, 0x1_0000_0000, True),
    ("jle", 0x1_0000_0001, 0x1_0000_0000, False),
    ("jsgt", 0x1_0000_0000, 0xFFFF_FFFF_0000_0000, True),  # 2^32 s> -2^32
    ("jsge", 0x8000_0000_0000_0000, 0x8000_0000_0000_0000, True),
    ("jslt", 0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, True),
    ("jsle", 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, False),
    ("jset", 0x1_0000_0000, 0x3_0000_0000, True), ("jset", 0x1_0000_0000, 0x2_0000_0000, False),
]

# (mnemonic, dst (upper half junk), imm, taken). Compares low 32 bits with (u32)imm.
JMP32_K = [
    ("jeq32", 0xDEAD_0000_0005, 5, True),  # upper half ignored
    ("jeq32", 5, 6, False),
    ("jeq32", 0x1_FFFF_FFFF, -1, True),  # (u32)-1 = 0xffffffff
    ("jne32", 0x1_0000_0000, 0, False), ("jne32", 0xFFFF_FFFF_0000_0001, 0, True),
    ("jgt32", 0xFFFF_FFFF, -1, False),  # 0xffffffff > 0xffffffff
    ("jgt32", 0xFFFF_FFFF, 1, True),  # unsigned
    ("jgt32", 0xFFFF_FFFF_0000_0001, 2, False),  # 1 > 2 (a 64-bit compare would be taken)
    ("jgt32", 0x8000_0000, 0x7FFF_FFFF, True),
    ("jge32", 0x7_0000_0005, 5, True), ("jge32", 0xFFFF_FFFF_0000_0004, 5, False),
    ("jlt32", 0x1_0000_0000, 1, True),  # 0 < 1
    ("jlt32", 5, -1, True),  # 5 < 0xffffffff
    ("jlt32", 0xFFFF_FFFF, 1, False),
    ("jle32", 0xFFFF_FFFF_0000_0005, 5, True), ("jle32", 6, 5, False),
    ("jsgt32", 0x8000_0000, 0, False),  # low half is negative as s32
    ("jsgt32", 0x7FFF_FFFF, -1, True),
    ("jsgt32", 0xFFFF_FFFF_0000_0001, 0, True),  # 1 s> 0 (64-bit would see a negative number)
    ("jsge32", 0xFFFF_FFFF, -1, True), ("jsge32", 0xFFFF_FFFE, -1, False),
    ("jslt32", 0xFFFF_FFFF, 0, True),  # -1 s< 0
    ("jslt32", 0x1_0000_0000, -1, False),  # 0 s< -1 is false
    ("jslt32", 0xFFFF_FFFF_7FFF_FFFF, 0, False),
    ("jsle32", 0x7FFF_FFFF_8000_0000, -0x8000_0000, True), ("jsle32", 1, 0, False),
    ("jset32", 0xFF_0000_0001, 1, True),
    ("jset32", 0x1_0000_0000, -1, False),  # low half is 0
]

# (mnemonic, dst, src register value, taken): X form only.
JMP32_X = [
    ("jeq32", 0x1_0000_0005, 0x2_0000_0005, True),  # low halves equal
    ("jne32", 0x1_0000_0005, 0x2_0000_0005, False),
    ("jset32", 0x1_0000_0000, 0x1_0000_0000, False),  # only bit 32 in common
    ("jgt32", 1, 0x1_0000_0000, True),  # 1 > 0
    ("jlt32", 0x1_0000_0000, 1, True),  # 0 < 1
    ("jsgt32", 0x1_0000_0000, 0xFFFF_FFFF, True),  # 0 s> -1
    ("jsge32", 0x8000_0000, 0x1_8000_0000, True),
    ("jslt32", 0xFFFF_FFFF_FFFF_FFFE, 0xFFFF_FFFF, True),  # -2 s< -1
    ("jsle32", 0, 0xFFFF_FFFF_8000_0000, False),  # 0 s<= INT32_MIN is false
    ("jle32", 0xFFFF_FFFF, 0x1_0000_0000, False),  # 0xffffffff <= 0 is false
    ("jge32", 0, 0xFFFF_FFFF_0000_0000, True),  # 0 >= 0
]


@pytest.mark.parametrize("mn,a,imm,taken", JMP_K, ids=_ids(JMP_K))
def test_jmp_k(engine, mn, a, imm, taken):
    assert run(_jump_program(mn, a, imm, False), engine) == int(taken)


@pytest.mark.parametrize("mn,a,imm,taken", JMP_K, ids=_ids(JMP_K))
def test_jmp_x_same_as_k(engine, mn, a, imm, taken):
    assert run(_jump_program(mn, a, imm & M64, True), engine) == int(taken)


@pytest.mark.parametrize("mn,a,b,taken", JMP_X, ids=_ids(JMP_X))
def test_jmp_x(engine, mn, a, b, taken):
    assert run(_jump_program(mn, a, b, True), engine) == int(taken)


@pytest.mark.parametrize("mn,a,imm,taken", JMP32_K, ids=_ids(JMP32_K))
def test_jmp32_k(engine, mn, a, imm, taken):
    assert run(_jump_program(mn, a, imm, False), engine) == int(taken)


@pytest.mark.parametrize("mn,a,imm,taken", JMP32_K, ids=_ids(JMP32_K))
def test_jmp32_x_same_as_k(engine, mn, a, imm, taken):
    assert run(_jump_program(mn, a, (imm & 0xFFFF_FFFF) | JUNK_HI, True), engine) == int(taken)


@pytest.mark.parametrize("mn,a,b,taken", JMP32_X, ids=_ids(JMP32_X))
def test_jmp32_x(engine, mn, a, b, taken):
    assert run(_jump_program(mn, a, b, True), engine) == int(taken)


@pytest.mark.parametrize("mn,taken", [
    ("jeq", True), ("jne", False), ("jgt", False), ("jge", True), ("jlt", False), ("jle", True),
    ("jsgt", False), ("jsge", True), ("jslt", False), ("jsle", True), ("jset", True),
    ("jeq32", True), ("jset32", False),  # low half of r1 is 0
])
def test_jump_same_register(engine, mn, taken):
    text = f"lddw %r1, 0x8000000100000000\nmov %r0, 0\n{mn} %r1, %r1, yes\nexit\nyes:\nmov %r0, 1\nexit"
    assert run(text, engine) == int(taken)


def test_backward_jump_loop(engine):
    # sum 1..10 with a backward conditional jump
    text = """
        mov %r0, 0
        mov %r1, 10
    loop:
        add %r0, %r1
        sub %r1, 1
        jne %r1, 0, loop
        exit
    """
    assert run(text, engine) == 55  # 10+9+...+1


def test_ja_counts_lddw_as_two_slots(engine):
    # `ja +2` skips the two slots of the ld_imm64
    assert run("mov %r0, 1\nja +2\nlddw %r0, 5\nexit", engine) == 1


def test_gotol(engine):
    # ja32 (gotol, JMP32|JA, target in imm) skips the mov
    assert run("mov %r0, 1\nja32 done\nmov %r0, 2\ndone:\nexit", engine) == 1


def test_gotol_backward(engine):
    text = """
        mov %r0, 0
    again:
        add %r0, 3
        jgt %r0, 8, out
        ja32 again
    out:
        exit
    """
    assert run(text, engine) == 9  # 3, 6, 9 (> 8 stops)


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


# =============================================================================================
# Local calls
# =============================================================================================

def test_call_args_and_result(engine):
    text = """
        mov %r1, 3
        mov %r2, 4
        mov %r3, 5
        mov %r4, 6
        mov %r5, 7
        call local fn
        exit
    fn:
        mov %r0, %r1
        lsh %r0, 4
        or %r0, %r2
        lsh %r0, 4
        or %r0, %r3
        lsh %r0, 4
        or %r0, %r4
        lsh %r0, 4
        or %r0, %r5
        exit
    """
    assert run(text, engine) == 0x34567  # r1..r5 passed through


def test_call_preserves_r6_to_r9(engine):
    text = """
        mov %r6, 0x16
        mov %r7, 0x17
        mov %r8, 0x18
        mov %r9, 0x19
        call local fn
        mov %r0, %r9
        lsh %r0, 8
        or %r0, %r8
        lsh %r0, 8
        or %r0, %r7
        lsh %r0, 8
        or %r0, %r6
        exit
    fn:
        mov %r6, 0
        mov %r7, 0
        mov %r8, 0
        mov %r9, 0
        mov %r0, 0
        exit
    """
    assert run(text, engine) == 0x1918_1716  # the callee's writes to r6-r9 are not visible


def test_callee_has_its_own_stack(engine):
    text = """
        stdw [%r10-8], 0x55
        call local fn
        ldxdw %r1, [%r10-8]
        lsh %r1, 8
        or %r0, %r1
        exit
    fn:
        stdw [%r10-8], 0x77
        ldxdw %r0, [%r10-8]
        exit
    """
    assert run(text, engine) == 0x5577  # caller still reads 0x55, callee read back 0x77


def test_callee_reaches_caller_stack_through_pointer(engine):
    text = """
        stdw [%r10-8], 0x10
        mov %r1, %r10
        add %r1, -8
        call local fn
        ldxdw %r0, [%r10-8]
        exit
    fn:
        ldxdw %r2, [%r1+0]
        add %r2, 5
        stxdw [%r1+0], %r2
        mov %r0, 0
        exit
    """
    assert run(text, engine) == 0x15  # 0x10 + 5 written through the pointer


def test_nested_calls(engine):
    text = """
        mov %r6, 1
        mov %r1, 2
        call local f
        add %r0, %r6
        exit
    f:
        mov %r6, 10
        stdw [%r10-8], 100
        call local g
        ldxdw %r1, [%r10-8]
        add %r0, %r1
        add %r0, %r6
        exit
    g:
        mov %r6, 1000
        stdw [%r10-8], 10000
        mov %r0, %r1
        exit
    """
    # g returns r1 = 2; f adds its own stack value 100 and its r6 = 10; main adds its r6 = 1
    assert run(text, engine) == 2 + 100 + 10 + 1


def test_eight_frames_deep(engine):
    # MAX_CALL_FRAMES = 8: main + 7 nested calls is allowed; each callee adds 1 to its own result
    lines = ["mov %r0, 0", "call local f1", "exit"]
    for level in range(1, 8):
        call = [f"call local f{level + 1}"] if level < 7 else ["mov %r0, 0"]
        lines += [f"f{level}:", f"stdw [%r10-8], {level}"] + call + [
            "ldxdw %r1, [%r10-8]", "add %r0, %r1", "exit"]
    assert run("\n".join(lines), engine) == 28  # 1 + 2 + ... + 7, each read from its own frame


# =============================================================================================
# may_goto
# =============================================================================================

def test_may_goto_is_a_nop_in_a_short_loop(engine):
    text = """
        mov %r0, 0
    loop:
        may_goto out
        add %r0, 1
        jlt %r0, 10, loop
    out:
        exit
    """
    assert run(text, engine) == 10  # ten iterations never exhaust the budget


def _may_goto_unbounded(engine):
    text = """
        mov %r0, 0
    loop:
        may_goto out
        add %r0, 1
        ja loop
    out:
        exit
    """
    count = run(text, engine)
    assert count >= 1  # the loop ran and then may_goto ended it (the budget is the runtime's choice)
    assert count < 1 << 40


def test_may_goto_terminates_loop_jit():
    _may_goto_unbounded("jit")


@pytest.mark.slow
def test_may_goto_terminates_loop_interp():
    # The interpreter needs millions of steps here (about 75 s): only with -m slow.
    _may_goto_unbounded("interp")


# =============================================================================================
# callx
# =============================================================================================

def _callx_program(dst_form: bool = True, call_reg: int = 2, extra: list[Insn] | None = None) -> list[Insn]:
    # 0-1: r2 = &fn (ld_imm64 src=4, rel = 7 - (0 + 1) = 6)
    # 2: r1 = 7   3: r6 = 100   [extra]   callx r2   r0 += r6   exit
    # fn: r0 = r1 * 3 ; r6 = 0 ; exit
    head = [Insn(isa.LDDW, 2, isa.PSEUDO_FUNC, 0, 0), Insn(0)]
    body = [Insn(isa.ALU64 | isa.MOV | isa.K, 1, 0, 0, 7), Insn(isa.ALU64 | isa.MOV | isa.K, 6, 0, 0, 100)]
    body += extra or []
    callx = Insn(isa.CALLX_OP, dst=call_reg) if dst_form else Insn(isa.CALLX_OP, imm=call_reg)
    body += [callx, Insn(isa.ALU64 | isa.ADD | isa.X, 0, 6), Insn(isa.EXIT_OP)]
    fn_index = len(head) + len(body)
    head[0] = Insn(isa.LDDW, 2, isa.PSEUDO_FUNC, 0, fn_index - 1)
    fn = [Insn(isa.ALU64 | isa.MOV | isa.X, 0, 1), Insn(isa.ALU64 | isa.MUL | isa.K, 0, 0, 0, 3),
          Insn(isa.ALU64 | isa.MOV | isa.K, 6, 0, 0, 0), Insn(isa.EXIT_OP)]
    return head + body + fn


def test_callx_pseudo_func_dst_form(engine):
    insns = _callx_program(dst_form=True)
    assert insns[0].imm == 6  # fn at index 7
    assert Program(insns).run(b"", engine=engine) == 7 * 3 + 100  # fn(7) + preserved r6


def test_callx_pseudo_func_imm_form(engine):
    # LLVM <= 18 puts the register number in imm
    assert Program(_callx_program(dst_form=False)).run(b"", engine=engine) == 121


def test_callx_from_bytes(engine):
    code = isa.encode(_callx_program())
    assert Program.from_bytes(code).run(b"", engine=engine) == 121


def test_callx_function_pointer_through_stack(engine):
    # store the function pointer on the stack, reload it into r5 and call through r5
    extra = [Insn(isa.STX | isa.MEM | isa.DW, 10, 2, -8), Insn(isa.ALU64 | isa.MOV | isa.K, 2, 0, 0, 0),
             Insn(isa.LDX | isa.MEM | isa.DW, 5, 10, -8)]
    insns = _callx_program(call_reg=5, extra=extra)
    assert Program(insns).run(b"", engine=engine) == 121


def test_callx_helper_id(engine):
    # bpf_conformance convention: a register holding a helper id calls that helper (#5 returns r1)
    prog = Program.from_asm("mov %r1, 42\nmov %r3, 5\ncall %r3\nexit", helpers=conformance_helpers())
    assert prog.run(b"", engine=engine) == 42


@pytest.mark.parametrize("bad", [0x1234, 0, M64, 0x8000_0000_0000_0000])
def test_callx_bad_value_raises(engine, bad):
    extra = [Insn(isa.LDDW, 2, 0, 0, isa.s32(bad), isa.s32(bad >> 32)), Insn(0, 0, 0, 0, isa.s32(bad >> 32))]
    prog = Program(_callx_program(extra=extra))
    with pytest.raises(BPFRuntimeError):
        prog.run(b"", engine=engine)


def test_callx_function_pointer_plus_one_raises(engine):
    # &fn + 1 is not the address of a function (fn's second instruction)
    extra = [Insn(isa.ALU64 | isa.ADD | isa.K, 2, 0, 0, 1)]
    prog = Program(_callx_program(extra=extra))
    with pytest.raises(BPFRuntimeError):
        prog.run(b"", engine=engine)


_RECURSION_SCRIPT = """
import sys
from bpfjit import isa
from bpfjit.errors import BPFRuntimeError
from bpfjit.isa import Insn
from bpfjit.program import Program
insns = [
    Insn(isa.CALL_OP, 0, isa.CALL_LOCAL, 0, 1),          # 0: call fn (0 + 1 + 1 = 2)
    Insn(isa.EXIT_OP),                                   # 1
    Insn(isa.LDDW, 2, isa.PSEUDO_FUNC, 0, -1), Insn(0),  # 2-3 fn: r2 = &fn (2 + 1 - 1 = 2)
    Insn(isa.CALLX_OP, dst=2),                           # 4: callx r2 -> fn again, forever
    Insn(isa.EXIT_OP),                                   # 5
]
try:
    Program(insns).run(b"", engine=sys.argv[1])
except BPFRuntimeError:
    print("runtime-error")
else:
    print("returned")
"""


def test_callx_unbounded_recursion_is_a_runtime_error(engine):
    # MAX_CALL_FRAMES = 8 (docs/semantics.md#calls); recursion through callx escapes the static call-graph check,
    # so it must be caught at run time. Run in a subprocess so that a crash cannot take pytest down.
    proc = subprocess.run([sys.executable, "-c", _RECURSION_SCRIPT, engine], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "runtime-error"


def test_runtime_errors_are_bpf_errors():
    assert issubclass(BPFRuntimeError, BPFError)

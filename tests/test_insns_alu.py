"""Per-instruction semantics on both engines: ALU64, ALU32, NEG, MOVSX and byte swaps.

Every expected value below is a literal worked out by hand from docs/semantics.md
(#instruction-set and #pitfalls; the comment next to it says why); none is computed by bpfjit.
Programs are run on both engines through tests/insn_cases.py.
"""
from __future__ import annotations

import pytest

from insn_cases import JUNK_HI, M64, _ids, run


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
    # (2^32+1)^2 mod 2^64
    assert run("lddw %r3, 0x100000001\nmul %r3, %r3\nmov %r0, %r3\nexit", engine) == 0x2_0000_0001
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

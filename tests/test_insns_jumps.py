"""Per-instruction semantics on both engines: JMP, JMP32, loops and gotol.

Every expected value below is a literal worked out by hand from docs/semantics.md
(#instruction-set and #pitfalls; the comment next to it says why); none is computed by bpfjit.
Programs are run on both engines through tests/insn_cases.py.
"""
from __future__ import annotations

import textwrap

import pytest

from insn_cases import JUNK_HI, M64, _ids, run


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
    # `ja +2` skips the two slots of the ld_imm64, which a non-empty memory (r2 != 0) reaches
    text = "mov %r0, 1\njne %r2, 0, +1\nja +2\nlddw %r0, 5\nexit"
    assert (run(text, engine), run(text, engine, b"x")) == (1, 5)


def test_gotol(engine):
    # ja32 (gotol, JMP32|JA, target in imm) skips the mov, which a non-empty memory reaches
    text = "mov %r0, 1\njne %r2, 0, +1\nja32 done\nmov %r0, 2\ndone:\nexit"
    assert (run(text, engine), run(text, engine, b"x")) == (1, 2)


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

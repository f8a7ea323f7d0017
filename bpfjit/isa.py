"""The BPF instruction set: opcode constants, the one instruction type, decoding and encoding.

Everything else in bpfjit (assembler, disassembler, interpreter, verifier, JIT) speaks in terms of
:class:`Insn`. Decoding is strict: an encoding the kernel would reject for reserved fields or an
unknown opcode raises :class:`~bpfjit.errors.DecodeError` naming the instruction index, so the later
stages can rely on every field they read being meaningful.

A program is a list with one entry per 8-byte slot. ``ld_imm64`` keeps its two slots: the first
entry carries the whole 64-bit immediate (``imm`` and ``next_imm``), the second is a filler entry
(``opcode == 0``) so that instruction indexes and jump offsets match the kernel and llvm-objdump.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from .errors import DecodeError

# --- instruction classes (low 3 bits of the opcode) ---------------------------------------------
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)

# --- ALU / JMP source bit -----------------------------------------------------------------------
K = 0x00  # operand is the immediate
X = 0x08  # operand is src_reg

# --- ALU operations (high 4 bits) ---------------------------------------------------------------
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
NEG, MOD, XOR, MOV, ARSH, END = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0

# --- JMP operations (high 4 bits) ---------------------------------------------------------------
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
CALL, EXIT, JLT, JLE, JSLT, JSLE, JCOND = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0

# --- load/store sizes and modes -----------------------------------------------------------------
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {W: 4, H: 2, B: 1, DW: 8}
IMM, ABS, IND, MEM, MEMSX, ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0

# --- atomic operations (in imm of STX|ATOMIC) ---------------------------------------------------
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH
LOAD_ACQ = 0x100
STORE_REL = 0x110
ATOMIC_RMW_OPS = {ADD, OR, AND, XOR}
ATOMIC_IMMS = {op | f for op in ATOMIC_RMW_OPS for f in (0, FETCH)} | {XCHG, CMPXCHG, LOAD_ACQ, STORE_REL}

# --- well-known opcodes -------------------------------------------------------------------------
LDDW = LD | IMM | DW  # 0x18
EXIT_OP = JMP | EXIT  # 0x95
CALL_OP = JMP | CALL  # 0x85
CALLX_OP = JMP | CALL | X  # 0x8d
JA_OP = JMP | JA  # 0x05
GOTOL_OP = JMP32 | JA  # 0x06
GOTOX_OP = JMP | JA | X  # 0x0d
MAY_GOTO_OP = JMP | JCOND  # 0xe5

# --- pseudo sources -----------------------------------------------------------------------------
# ld_imm64 src_reg
PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, PSEUDO_BTF_ID, PSEUDO_FUNC, PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE = range(1, 7)
# call src_reg
CALL_HELPER, CALL_LOCAL, CALL_KFUNC = 0, 1, 2
# JA src_reg: static-branch flavours (docs/semantics.md#static-branches)
STATIC_BRANCH_JA = 1
STATIC_BRANCH_NOP = 2
JA_FLAVOURS = {0, STATIC_BRANCH_JA, STATIC_BRANCH_JA | STATIC_BRANCH_NOP}

MAX_REG = 10
FRAME_POINTER = 10
STACK_SIZE = 512
MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1


def u64(value: int) -> int:
    """Reduce a Python int to its unsigned 64-bit representation."""
    return value & MASK64


def s64(value: int) -> int:
    """Interpret the low 64 bits of value as signed."""
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def s32(value: int) -> int:
    """Interpret the low 32 bits of value as signed."""
    value &= MASK32
    return value - (1 << 32) if value >> 31 else value


def sign_extend(value: int, bits: int) -> int:
    """Sign-extend the low `bits` bits of value to a signed Python int."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass(frozen=True, slots=True)
class Insn:
    """One instruction slot. For ld_imm64 the first slot also carries the second slot's imm."""

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    next_imm: int = 0

    # The opcode broken into the parts each class uses.
    @property
    def cls(self) -> int:
        return self.opcode & 0x07

    @property
    def op(self) -> int:
        """ALU/JMP operation (high 4 bits)."""
        return self.opcode & 0xF0

    @property
    def source(self) -> int:
        """K or X for ALU/JMP classes."""
        return self.opcode & 0x08

    @property
    def size(self) -> int:
        return self.opcode & 0x18

    @property
    def mode(self) -> int:
        return self.opcode & 0xE0

    @property
    def is_lddw(self) -> bool:
        return self.opcode == LDDW

    @property
    def imm64(self) -> int:
        """The 64-bit immediate of ld_imm64 (unsigned)."""
        return ((self.next_imm & MASK32) << 32) | (self.imm & MASK32)

    @property
    def is_alu(self) -> bool:
        return self.cls in (ALU, ALU64)

    @property
    def is_jump(self) -> bool:
        return self.cls in (JMP, JMP32)

    @property
    def is_local_call(self) -> bool:
        return self.opcode == CALL_OP and self.src == CALL_LOCAL

    @property
    def is_signed_divmod(self) -> bool:
        return self.is_alu and self.op in (DIV, MOD) and self.off == 1

    @property
    def is_movsx(self) -> bool:
        return self.is_alu and self.op == MOV and self.source == X and self.off in (8, 16, 32)

    @property
    def callx_reg(self) -> int:
        """Register of a callx: in dst_reg (LLVM >= 19, GCC) or in imm (LLVM <= 18)."""
        return self.dst if self.imm == 0 else self.imm

    def jump_target(self, index: int) -> int:
        """Index of the slot a jump at `index` goes to when taken (gotol uses imm)."""
        if self.opcode == GOTOL_OP:
            return index + 1 + self.imm
        return index + 1 + self.off

    def call_target(self, index: int) -> int:
        """Index of the callee of a local call at `index`."""
        return index + 1 + self.imm


def is_filler(insns: Sequence[Insn], index: int) -> bool:
    """True when slot `index` is the second half of an ld_imm64."""
    return index > 0 and insns[index - 1].is_lddw


def slots(insns: Sequence[Insn], start: int = 0, end: int | None = None) -> Iterator[int]:
    """The indices of the instructions in [start, end), each ld_imm64's second slot skipped
    (start must not be one)."""
    index, end = start, len(insns) if end is None else end
    while index < end:
        yield index
        index += 2 if insns[index].opcode == LDDW else 1


_SLOT = struct.Struct("<BBhi")


def decode(code: bytes | bytearray | memoryview, checked: bool = True) -> list[Insn]:
    """Decode a bytecode stream into one Insn per slot; raise DecodeError on malformed input
    (checked=False: only on a stream that cannot be split into slots, for a loader that reads
    where each instruction is and leaves their fields to be checked per program)."""
    code = bytes(code)
    if len(code) % 8:
        raise DecodeError(len(code) // 8, f"truncated instruction: {len(code)} bytes is not a multiple of 8")
    slots = list(_SLOT.iter_unpack(code))
    insns: list[Insn] = []
    index = 0
    while index < len(slots):
        opcode, regs, off, imm = slots[index]
        if opcode == LDDW:
            if index + 1 >= len(slots):
                raise DecodeError(index, "ld_imm64 is missing its second slot")
            op2, regs2, off2, next_imm = slots[index + 1]
            if op2 or regs2 or off2:
                raise DecodeError(index + 1, "second slot of ld_imm64 uses reserved fields")
            insn = Insn(opcode, regs & 0x0F, regs >> 4, off, imm, next_imm)
            if checked:
                check(insn, index)
            insns += [insn, Insn(0, 0, 0, 0, next_imm)]
            index += 2
            continue
        insn = Insn(opcode, regs & 0x0F, regs >> 4, off, imm)
        if checked:
            check(insn, index)
        insns.append(insn)
        index += 1
    return insns


def encode(insns: Iterable[Insn]) -> bytes:
    """Encode slots back to bytes (the exact inverse of decode)."""
    out = bytearray()
    for insn in insns:
        out += _SLOT.pack(insn.opcode, (insn.src << 4) | insn.dst, insn.off, s32(insn.imm))
    return bytes(out)


def lddw(dst: int, value: int, src: int = 0) -> list[Insn]:
    """The two slots of `dst = value ll` (value given as an unsigned or signed 64-bit int)."""
    value = u64(value)
    lo, hi = s32(value), s32(value >> 32)
    return [Insn(LDDW, dst, src, 0, lo, hi), Insn(0, 0, 0, 0, hi)]


# --- validation ---------------------------------------------------------------------------------

def _reserved(index: int, what: str) -> DecodeError:
    return DecodeError(index, f"{what} uses reserved fields")


def check(insn: Insn, index: int) -> None:
    """Reject unknown opcodes and reserved fields the way the kernel does (per class)."""
    if insn.dst > MAX_REG or insn.src > MAX_REG:
        bad = insn.dst if insn.dst > MAX_REG else insn.src
        raise DecodeError(index, f"R{bad} is invalid (opcode {insn.opcode:#04x}: registers are r0-r10)")
    _CHECKS[insn.cls](insn, index)


def _unknown(insn: Insn, index: int) -> DecodeError:
    return DecodeError(index, f"unknown opcode {insn.opcode:#04x}")


def _check_ld(insn: Insn, index: int) -> None:
    if insn.opcode == LDDW:
        if insn.off:
            raise _reserved(index, "BPF_LD_IMM64")
        if insn.src > PSEUDO_MAP_IDX_VALUE:
            raise DecodeError(index, f"ld_imm64 with unknown pseudo source {insn.src}")
        return
    if insn.mode in (ABS, IND) and insn.size in (W, H, B):
        # Legacy packet access: result in r0, implicit ctx; IND takes a register in src.
        if insn.dst or insn.off or (insn.mode == ABS and insn.src):
            raise _reserved(index, "BPF_LD_[ABS|IND]")
        return
    raise _unknown(insn, index)


def _check_ldx(insn: Insn, index: int) -> None:
    if insn.mode == MEM or (insn.mode == MEMSX and insn.size != DW):
        if insn.imm:
            raise _reserved(index, "BPF_LDX")
        return
    raise _unknown(insn, index)


def _check_st(insn: Insn, index: int) -> None:
    if insn.mode != MEM:
        raise _unknown(insn, index)
    if insn.src:
        raise _reserved(index, "BPF_ST")


def _check_stx(insn: Insn, index: int) -> None:
    if insn.mode == MEM:
        if insn.imm:
            raise _reserved(index, "BPF_STX")
        return
    if insn.mode != ATOMIC:
        raise _unknown(insn, index)
    if insn.imm not in ATOMIC_IMMS:
        raise DecodeError(index, f"BPF_ATOMIC uses invalid atomic opcode {insn.imm & MASK32:#x}")
    if insn.size not in (W, DW) and insn.imm not in (LOAD_ACQ, STORE_REL):
        raise DecodeError(index, f"BPF_ATOMIC {insn.imm:#x} needs a 32- or 64-bit size")


_ALU_OPS = {ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END}


def _check_alu(insn: Insn, index: int) -> None:
    op, is64 = insn.op, insn.cls == ALU64
    if op not in _ALU_OPS:
        raise _unknown(insn, index)
    if op == END:
        if is64 and insn.source:
            raise _unknown(insn, index)
        if insn.src or insn.off or insn.imm not in (16, 32, 64):
            raise _reserved(index, "BPF_END")
        return
    if op == NEG:
        if insn.source:
            raise _unknown(insn, index)
        if insn.src or insn.off or insn.imm:
            raise _reserved(index, "BPF_NEG")
        return
    allowed_off = {0}
    if op in (DIV, MOD):
        allowed_off = {0, 1}
    elif op == MOV and insn.source == X:
        allowed_off = {0, 8, 16, 32} if is64 else {0, 8, 16}
    if insn.off not in allowed_off:
        raise _reserved(index, "BPF_ALU")
    if insn.source == X and insn.imm or insn.source == K and insn.src:
        raise _reserved(index, "BPF_ALU")


_COND_OPS = {JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE}


def _check_jmp(insn: Insn, index: int) -> None:
    op, is32 = insn.op, insn.cls == JMP32
    if op == JA:
        if insn.source == X and not is32:  # gotox rN
            if insn.src or insn.off or insn.imm:
                raise _reserved(index, "gotox")
            return
        if insn.source == X or insn.dst or insn.src not in JA_FLAVOURS:
            raise _reserved(index, "BPF_JA")
        if (insn.off if is32 else insn.imm):
            raise _reserved(index, "BPF_JA")
        return
    if op in _COND_OPS:
        if insn.source == X and insn.imm or insn.source == K and insn.src:
            raise _reserved(index, "BPF_JMP")
        return
    if is32:
        raise _unknown(insn, index)
    if op == CALL:
        if insn.source == X:  # callx: register in dst (LLVM >= 19) or in imm (LLVM <= 18)
            if insn.src or insn.off or (insn.dst and insn.imm) or not 0 <= insn.imm <= MAX_REG:
                raise _reserved(index, "BPF_CALLX")
            return
        if insn.dst or insn.src > CALL_KFUNC or (insn.off and insn.src != CALL_KFUNC):
            raise _reserved(index, "BPF_CALL")
        return
    if op == EXIT:
        if insn.source or insn.dst or insn.src or insn.off or insn.imm:
            raise _reserved(index, "BPF_EXIT")
        return
    if op == JCOND:
        if insn.source or insn.dst or insn.src or insn.imm:
            raise _reserved(index, "may_goto")
        return
    raise _unknown(insn, index)


# Per instruction class, the checker that validates its fields (built once: check() runs per slot).
_CHECKS = {LD: _check_ld, LDX: _check_ldx, ST: _check_st, STX: _check_stx,
           ALU: _check_alu, ALU64: _check_alu, JMP: _check_jmp, JMP32: _check_jmp}

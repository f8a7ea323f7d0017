"""Disassembler printing llvm-objdump's BPF syntax, so our listings diff cleanly against it.

``insn_text`` gives the text of one instruction exactly as ``llvm-objdump -d`` (LLVM 19, default
CPU) prints it, e.g. ``r0 = *(u32 *)(r1 + 0x4)``, ``if w0 == 0x0 goto +0x3``, ``r1 = 0x0 ll``.
32-bit atomics are printed in LLVM's alu32 form (``lock *(u32 *)(r1 + 0x0) += w2``, as
``llvm-objdump --mattr=+alu32`` does), the only form in which LLVM prints all of them. Where
llvm-objdump 19 prints ``<unknown>`` (load-acquire/store-release, gotox) or ignores a field
(static-branch flavours of JA, callx with the register in imm) we print the syntax newer LLVM
versions and the kernel use.
``listing`` lays out a whole function the way ``llvm-objdump -d`` does.

Both take ``llvm=22`` for the text of llvm-objdump 22 (the objects clang-22 builds, with jump
tables): it names the 32-bit register of a narrow load or store (``w1 = *(u32 *)(r1 + 0x0)``,
``*(u8 *)(r2 + 0x0) = w1``) where LLVM 19 prints ``r1``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from . import isa
from .isa import Insn

_ALU_SYMBOLS = {
    isa.ADD: "+=", isa.SUB: "-=", isa.MUL: "*=", isa.DIV: "/=", isa.OR: "|=", isa.AND: "&=",
    isa.LSH: "<<=", isa.RSH: ">>=", isa.MOD: "%=", isa.XOR: "^=", isa.MOV: "=", isa.ARSH: "s>>=",
}
_JMP_SYMBOLS = {
    isa.JEQ: "==", isa.JGT: ">", isa.JGE: ">=", isa.JSET: "&", isa.JNE: "!=", isa.JSGT: "s>",
    isa.JSGE: "s>=", isa.JLT: "<", isa.JLE: "<=", isa.JSLT: "s<", isa.JSLE: "s<=",
}
_ATOMIC_SYMBOLS = {isa.ADD: "+=", isa.OR: "|=", isa.AND: "&=", isa.XOR: "^="}
_ATOMIC_NAMES = {isa.ADD: "add", isa.OR: "or", isa.AND: "and", isa.XOR: "xor"}
_SIZE_NAMES = {isa.B: "8", isa.H: "16", isa.W: "32", isa.DW: "64"}
_STATIC_JA_NAMES = {isa.STATIC_BRANCH_JA: "goto_or_nop",
                    isa.STATIC_BRANCH_JA | isa.STATIC_BRANCH_NOP: "nop_or_goto"}


def hexnum(value: int) -> str:
    """llvm-objdump's immediate format: signed hexadecimal, ``0x5`` / ``-0x5``."""
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"


def _signed_off(value: int) -> str:
    return f"+{value:#x}" if value >= 0 else f"-{-value:#x}"


def _mem(reg: int, off: int) -> str:
    return f"r{reg} + {off:#x}" if off >= 0 else f"r{reg} - {-off:#x}"


def _cast(size: int, reg: int, off: int, signed: bool = False) -> str:
    return f"({'s' if signed else 'u'}{_SIZE_NAMES[size]} *)({_mem(reg, off)})"


def _ptr(size: int, reg: int, off: int, signed: bool = False) -> str:
    return "*" + _cast(size, reg, off, signed)


LLVM_VERSIONS = (19, 22)  # the llvm-objdump versions whose text insn_text can give


def insn_text(insn: Insn, llvm: int = 19) -> str:
    """The llvm-objdump text of one instruction (for ld_imm64, the text of the pair)."""
    if llvm not in LLVM_VERSIONS:
        raise ValueError(f"no llvm-objdump {llvm} syntax (known: {', '.join(map(str, LLVM_VERSIONS))})")
    if llvm >= 22 and insn.cls in (isa.LDX, isa.STX) and insn.mode == isa.MEM and insn.size != isa.DW:
        return _narrow_access(insn)
    return {
        isa.LD: _ld, isa.LDX: _ldx, isa.ST: _st, isa.STX: _stx,
        isa.ALU: _alu, isa.ALU64: _alu, isa.JMP: _jmp, isa.JMP32: _jmp,
    }[insn.cls](insn)


def _narrow_access(insn: Insn) -> str:
    """LLVM 22's text of a narrow load or store: the value register is the 32-bit one."""
    if insn.cls == isa.LDX:
        return f"w{insn.dst} = {_ptr(insn.size, insn.src, insn.off)}"
    return f"{_ptr(insn.size, insn.dst, insn.off)} = w{insn.src}"


def _ld(insn: Insn) -> str:
    if insn.is_lddw:
        if insn.src:
            return f"ld_pseudo\tr{insn.dst}, {hexnum(insn.src)}, {hexnum(insn.imm)}"
        return f"r{insn.dst} = {hexnum(isa.s64(insn.imm64))} ll"
    size = _SIZE_NAMES[insn.size]
    if insn.mode == isa.ABS:
        return f"r0 = *(u{size} *)skb[{hexnum(insn.imm)}]"
    extra = f" + {hexnum(insn.imm)}" if insn.imm else ""
    return f"r0 = *(u{size} *)skb[r{insn.src}{extra}]"


def _ldx(insn: Insn) -> str:
    return f"r{insn.dst} = {_ptr(insn.size, insn.src, insn.off, insn.mode == isa.MEMSX)}"


def _st(insn: Insn) -> str:
    return f"{_ptr(insn.size, insn.dst, insn.off)} = {hexnum(insn.imm)}"


def _stx(insn: Insn) -> str:
    if insn.mode == isa.MEM:
        return f"{_ptr(insn.size, insn.dst, insn.off)} = r{insn.src}"
    wide = insn.size == isa.DW
    reg = "r" if wide else "w"
    imm = insn.imm
    if imm == isa.LOAD_ACQ:
        return f"{reg}{insn.dst} = load_acquire({_cast(insn.size, insn.src, insn.off)})"
    if imm == isa.STORE_REL:
        return f"store_release({_cast(insn.size, insn.dst, insn.off)}, {reg}{insn.src})"
    place = _mem(insn.dst, insn.off)
    if imm == isa.XCHG:
        return f"{reg}{insn.src} = xchg{'' if wide else '32'}_{_SIZE_NAMES[insn.size]}({place}, {reg}{insn.src})"
    if imm == isa.CMPXCHG:
        return (f"{reg}0 = cmpxchg{'' if wide else '32'}_{_SIZE_NAMES[insn.size]}"
                f"({place}, {reg}0, {reg}{insn.src})")
    op = imm & ~isa.FETCH
    if imm & isa.FETCH:
        return (f"{reg}{insn.src} = atomic_fetch_{_ATOMIC_NAMES[op]}"
                f"({_cast(insn.size, insn.dst, insn.off)}, {reg}{insn.src})")
    return f"lock {_ptr(insn.size, insn.dst, insn.off)} {_ATOMIC_SYMBOLS[op]} {reg}{insn.src}"


def _alu(insn: Insn) -> str:
    r = "r" if insn.cls == isa.ALU64 else "w"
    op = insn.op
    if op == isa.END:
        kind = "bswap" if insn.cls == isa.ALU64 else ("be" if insn.source else "le")
        return f"r{insn.dst} = {kind}{insn.imm} r{insn.dst}"
    if op == isa.NEG:
        return f"{r}{insn.dst} = -{r}{insn.dst}"
    if insn.is_movsx:
        return f"{r}{insn.dst} = (s{insn.off}){r}{insn.src}"
    symbol = _ALU_SYMBOLS[op]
    if insn.is_signed_divmod:
        symbol = "s" + symbol
    operand = f"{r}{insn.src}" if insn.source == isa.X else hexnum(insn.imm)
    return f"{r}{insn.dst} {symbol} {operand}"


def _jmp(insn: Insn) -> str:
    op = insn.op
    if insn.opcode == isa.GOTOX_OP:
        return f"gotox r{insn.dst}"
    if op == isa.JA:
        if insn.cls == isa.JMP32:
            name = {0: "gotol"}.get(insn.src) or _STATIC_JA_NAMES[insn.src].replace("goto", "gotol")
            return f"{name} {_signed_off(insn.imm)}"
        return f"{_STATIC_JA_NAMES.get(insn.src, 'goto')} {_signed_off(insn.off)}"
    if op == isa.CALL:
        return f"callx r{insn.callx_reg}" if insn.source == isa.X else f"call {hexnum(insn.imm)}"
    if op == isa.EXIT:
        return "exit"
    if op == isa.JCOND:
        return f"may_goto {_signed_off(insn.off)}"
    r = "w" if insn.cls == isa.JMP32 else "r"
    operand = f"{r}{insn.src}" if insn.source == isa.X else hexnum(insn.imm)
    return f"if {r}{insn.dst} {_JMP_SYMBOLS[op]} {operand} goto {_signed_off(insn.off)}"


def disassemble(insns: Sequence[Insn], llvm: int = 19) -> list[tuple[int, str]]:
    """(index, text) for every instruction, skipping the filler slots of ld_imm64."""
    return [(i, insn_text(insn, llvm)) for i, insn in enumerate(insns) if not isa.is_filler(insns, i)]


def _jump_annotation(insn: Insn, index: int, symbols: list[tuple[int, str]]) -> str:
    """llvm-objdump's ``<sym+0xNN>`` after a branch: the target as a byte offset from the nearest
    symbol at or before it."""
    if not insn.is_jump or insn.op in (isa.CALL, isa.EXIT) or insn.opcode == isa.GOTOX_OP:
        return ""
    target = insn.jump_target(index)
    before = [(start, name) for start, name in symbols if start <= target]
    if not before:
        return ""
    start, name = before[-1]
    delta = (target - start) * 8
    return f" <{name}+{delta:#x}>" if delta else f" <{name}>"


def listing(insns: Sequence[Insn], symbols: Iterable[tuple[int, str]] = ((0, "prog"),),
            relocations: dict[int, str] | None = None, llvm: int = 19) -> str:
    """A function listing in llvm-objdump -d layout.

    symbols: (slot index, name) of each function symbol in the section, in order.
    relocations: slot index -> text of an ``R_BPF_...`` line to print after it (llvm-objdump -dr).
    llvm: the llvm-objdump version whose text to give (19 or 22).
    """
    ordered = sorted(symbols)
    starts = dict(ordered)
    code = isa.encode(insns)
    lines: list[str] = []
    for index, text in disassemble(insns, llvm):
        if index in starts:
            if lines:
                lines.append("")
            lines.append(f"{index * 8:016x} <{starts[index]}>:")
        width = 16 if insns[index].is_lddw else 8
        raw = " ".join(f"{b:02x}" for b in code[index * 8:index * 8 + width])
        text += _jump_annotation(insns[index], index, ordered)
        lines.append(f"{index:8d}:\t{raw}\t{text}")
        if relocations and index in relocations:
            lines.append(f"\t\t{index * 8:016x}:  {relocations[index]}")
    return "\n".join(lines) + "\n"

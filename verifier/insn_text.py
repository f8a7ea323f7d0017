"""Instructions as the Linux verifier's log prints them (``kernel/bpf/disasm.c``, 6.12).

The kernel's log and its selftests speak this dialect (``(bf) r1 = r10``, ``(85) call
bpf_map_lookup_elem#1``, ``(25) if r1 > 0x7 goto pc+0``), which is not llvm-objdump's
(:mod:`bpfjit.disasm`): every line starts with the opcode byte in hex, immediates of ALU
instructions print in decimal and those of jumps in hex, and ld_imm64 of a map prints the map
instead of a number. Messages bpfjit shares with the kernel use this text so that they read the
same, and so that the kernel's selftests can check them.
"""
from __future__ import annotations

from typing import Callable

from bpfjit import isa
from bpfjit.isa import Insn
from bpfjit.runtime.kernel_helpers import helper_name

_ALU = {isa.ADD: "+=", isa.SUB: "-=", isa.MUL: "*=", isa.DIV: "/=", isa.OR: "|=", isa.AND: "&=",
        isa.LSH: "<<=", isa.RSH: ">>=", isa.MOD: "%=", isa.XOR: "^=", isa.MOV: "=", isa.ARSH: "s>>="}
_JMP = {isa.JEQ: "==", isa.JGT: ">", isa.JLT: "<", isa.JGE: ">=", isa.JLE: "<=", isa.JSET: "&", isa.JNE: "!=",
        isa.JSGT: "s>", isa.JSLT: "s<", isa.JSGE: "s>=", isa.JSLE: "s<="}
_SIZE = {isa.W: "u32", isa.H: "u16", isa.B: "u8", isa.DW: "u64"}
_SIGNED_SIZE = {isa.W: "s32", isa.H: "s16", isa.B: "s8"}
_RMW_NAME = {isa.ADD: "add", isa.AND: "and", isa.OR: "or", isa.XOR: "xor"}

# How the log names the value of an ld_imm64 with a pseudo source (a map, a map value, a
# function): the caller knows the maps; without it the raw immediate is printed.
Imm64Namer = Callable[[Insn], str]


def insn_text(insn: Insn, imm64_name: Imm64Namer | None = None) -> str:
    """The kernel log's text for one instruction, with its opcode prefix: ``(bf) r1 = r10``."""
    return f"({insn.opcode:02x}) {_body(insn, imm64_name)}"


def _body(insn: Insn, imm64_name: Imm64Namer | None) -> str:
    cls = insn.cls
    if cls in (isa.ALU, isa.ALU64):
        return _alu(insn)
    if cls in (isa.JMP, isa.JMP32):
        return _jmp(insn)
    mem = f"({_SIZE[insn.size]} *)(r{insn.dst} {insn.off:+d})"  # stores address [dst + off]
    if cls == isa.LDX:
        size = _SIGNED_SIZE[insn.size] if insn.mode == isa.MEMSX else _SIZE[insn.size]
        return f"r{insn.dst} = *({size} *)(r{insn.src} {insn.off:+d})"
    if cls == isa.ST:
        return f"*{mem} = {insn.imm}"
    if cls == isa.STX:
        return _stx(insn, mem)
    if insn.is_lddw:
        if insn.src != 0 and imm64_name is not None:
            return f"r{insn.dst} = {imm64_name(insn)}"
        return f"r{insn.dst} = {insn.imm64:#x}"
    if insn.mode == isa.ABS:
        return f"r0 = *({_SIZE[insn.size]} *)skb[{insn.imm}]"
    if insn.mode == isa.IND:
        return f"r0 = *({_SIZE[insn.size]} *)skb[r{insn.src} + {insn.imm}]"
    return f"BUG_ld_{insn.opcode:02x}"


def _alu(insn: Insn) -> str:
    reg = "w" if insn.cls == isa.ALU else "r"
    dst = f"{reg}{insn.dst}"
    op = insn.op
    if op == isa.END:
        if insn.cls == isa.ALU64:
            return f"r{insn.dst} = bswap{insn.imm} r{insn.dst}"
        order = "be" if insn.source == isa.X else "le"
        return f"r{insn.dst} = {order}{insn.imm} r{insn.dst}"
    if op == isa.NEG:
        return f"{dst} = -{dst}"
    if insn.is_movsx:
        return f"{dst} = (s{insn.off}){reg}{insn.src}"
    symbol = ("s" if insn.is_signed_divmod else "") + _ALU[op]
    operand = f"{reg}{insn.src}" if insn.source == isa.X else str(insn.imm)
    return f"{dst} {symbol} {operand}"


def _stx(insn: Insn, mem: str) -> str:
    if insn.mode == isa.MEM:
        return f"*{mem} = r{insn.src}"
    if insn.mode != isa.ATOMIC:
        return f"BUG_{insn.opcode:02x}"
    width = "64" if insn.size == isa.DW else ""
    operand = mem
    imm = insn.imm
    if imm in _RMW_NAME:
        return f"lock *{mem} {_ALU[imm]} r{insn.src}"
    if imm & ~isa.FETCH in _RMW_NAME:
        return f"r{insn.src} = atomic{width}_fetch_{_RMW_NAME[imm & ~isa.FETCH]}({operand}, r{insn.src})"
    if imm == isa.CMPXCHG:
        return f"r0 = atomic{width}_cmpxchg({operand}, r0, r{insn.src})"
    if imm == isa.XCHG:
        return f"r{insn.src} = atomic{width}_xchg({operand}, r{insn.src})"
    if imm == isa.LOAD_ACQ:
        return f"r{insn.dst} = load_acquire(({_SIZE[insn.size]} *)(r{insn.src} {insn.off:+d}))"
    if imm == isa.STORE_REL:
        return f"store_release({operand}, r{insn.src})"
    return f"BUG_{insn.opcode:02x}"


# The jumps whose text depends on no operator: by opcode.
_JA_FLAVOURS = {0: "goto", isa.STATIC_BRANCH_JA: "goto_or_nop",
                isa.STATIC_BRANCH_JA | isa.STATIC_BRANCH_NOP: "nop_or_goto"}
_FIXED_JUMPS: dict[int, Callable[[Insn], str]] = {
    isa.CALLX_OP: lambda insn: f"callx r{insn.callx_reg}",
    isa.EXIT_OP: lambda insn: "exit",
    isa.JA_OP: lambda insn: f"{_JA_FLAVOURS.get(insn.src, 'goto')} pc{insn.off:+d}",
    isa.GOTOL_OP: lambda insn: f"gotol pc{insn.imm:+d}",
    isa.GOTOX_OP: lambda insn: f"gotox r{insn.dst}",
    isa.MAY_GOTO_OP: lambda insn: f"may_goto pc{insn.off:+d}",
}


def _jmp(insn: Insn) -> str:
    op, opcode = insn.op, insn.opcode
    if opcode == isa.CALL_OP:
        if insn.src == isa.CALL_LOCAL:
            return f"call pc{insn.imm:+d}"
        if insn.src == isa.CALL_KFUNC:
            return f"call kernel-function#{insn.imm}"
        name = helper_name(insn.imm)
        return f"call {'' if name == 'unknown' else 'bpf_'}{name}#{insn.imm}"
    if opcode in _FIXED_JUMPS:
        return _FIXED_JUMPS[opcode](insn)
    reg = "w" if insn.cls == isa.JMP32 else "r"
    operand = f"{reg}{insn.src}" if insn.source == isa.X else f"{insn.imm & isa.MASK32:#x}"
    return f"if {reg}{insn.dst} {_JMP[op]} {operand} goto pc{insn.off:+d}"

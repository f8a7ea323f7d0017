"""ALU and ALU64 instructions: scalar arithmetic, and the pointer arithmetic the kernel allows.

Scalars go through :mod:`.scalar` (the kernel's ``adjust_scalar_min_max_vals``). A pointer may
only move by an offset (``ptr += scalar``, ``ptr -= scalar``, ``scalar += ptr``) in 64-bit
arithmetic, and not every pointer may move; the difference of two pointers, in 64 or 32 bits, is
an unknown scalar, and so is any 32-bit subtraction involving a pointer (privileged mode: the
kernel allows BPF_SUB of two pointers before it looks at the width, and turns a 32-bit
``ptr -= x`` or ``x -= ptr`` into an unknown number). Everything else on a pointer is rejected with the kernel's message
(``adjust_ptr_min_max_vals``, ``check_alu_op``).
"""
from __future__ import annotations

from typing import AbstractSet, Sequence

from bpfjit import isa
from bpfjit.isa import Insn

from . import length
from . import scalar as values
from .log import Rejected
from .scalar import Scalar
from .state import PACKET_TYPES, Reg, RegType, State, const, require_init, scalar

# Offsets a pointer may carry, fixed or variable (the kernel's BPF_MAX_VAR_OFF).
MAX_VAR_OFF = 1 << 29
_OP_NAMES = {isa.ADD: "+=", isa.SUB: "-=", isa.MUL: "*=", isa.DIV: "/=", isa.OR: "|=", isa.AND: "&=",
             isa.LSH: "<<=", isa.RSH: ">>=", isa.MOD: "%=", isa.XOR: "^=", isa.ARSH: "s>>=",
             isa.NEG: "neg", isa.END: "endian", isa.MOV: "="}
# Pointers that may not move at all.
_FIXED = (RegType.PTR_TO_PACKET_END, RegType.CONST_PTR_TO_MAP, RegType.PTR_TO_FUNC, RegType.PTR_TO_SOCKET,
          RegType.PTR_TO_SOCK_COMMON, RegType.PTR_TO_TCP_SOCK, RegType.PTR_TO_XDP_SOCK, RegType.PTR_TO_INSN)


def check_alu(state: State, insn: Insn, new_id) -> None:
    """Apply one ALU/ALU64 instruction to state (raises Rejected with the kernel's message)."""
    regs = state.regs
    op, is64 = insn.op, insn.cls == isa.ALU64
    dst = regs[insn.dst]
    uses_src = insn.source == isa.X and op not in (isa.NEG, isa.END)
    if uses_src:
        src = regs[insn.src]
        require_init(src, insn.src)
    else:
        src = const(insn.imm if is64 else insn.imm & isa.MASK32)
    if op != isa.MOV:
        require_init(dst, insn.dst)
    if op in (isa.DIV, isa.MOD) and insn.source == isa.K and insn.imm == 0:
        raise Rejected("div by zero")
    if op in (isa.LSH, isa.RSH, isa.ARSH) and insn.source == isa.K and not 0 <= insn.imm < (64 if is64 else 32):
        raise Rejected(f"invalid shift {insn.imm}")
    if op == isa.MOV:
        regs[insn.dst] = _move(insn, src, is64, new_id)
        if uses_src and not insn.is_movsx and regs[insn.dst].is_scalar and regs[insn.dst].id:
            regs[insn.src] = regs[insn.dst]  # both now carry the id that links them
        return
    if dst.is_pointer or src.is_pointer:
        regs[insn.dst] = _pointer_alu(insn, dst, src, is64, new_id)
        return
    result = scalar(values.alu(insn, dst.value, src.value))
    if dst.length_bound is not None or src.length_bound is not None:  # a raw program's length-relative value
        bound = length.alu(op, is64, insn.off != 0, (dst.length_bound, dst.value), (src.length_bound, src.value),
                           not uses_src, insn.imm)
        if bound is not None:
            result = result.evolve(length_bound=bound)
    if dst.link is not None and is64 and op in (isa.ADD, isa.SUB) and src.value.is_const:  # moved in step
        result = result.evolve(link=dst.link.moved(_step(op, src.value.const_value)))
    regs[insn.dst] = result


def zero_extension(insns: Sequence[Insn], index: int, block_starts: AbstractSet[int], state: State) -> Insn | None:
    """``rX <<= 32; rX >>= 32`` on a scalar, the second not a jump target: clang's zero extension
    of a 32-bit value where it has no ALU32 (cpu v1/v2), the same as ``wX = wX``, which this
    returns. Checked as that one instruction, the value keeps its link to the copies it came from,
    so a loop that tests a zero-extended copy of its counter refines the counter too (the kernel
    loses the link: only widened checks, which need it, use this)."""
    if index + 1 >= len(insns) or index + 1 in block_starts:
        return None
    first, second = insns[index], insns[index + 1]
    shift = isa.ALU64 | isa.K
    if first.opcode != shift | isa.LSH or second.opcode != shift | isa.RSH or first.dst != second.dst \
            or first.imm != 32 or second.imm != 32 or not state.regs[first.dst].is_scalar:
        return None
    return Insn(isa.ALU | isa.MOV | isa.X, first.dst, first.dst)


def _move(insn: Insn, src: Reg, is64: bool, new_id) -> Reg:
    if insn.source == isa.K:
        return src
    if insn.is_movsx:
        if src.is_pointer:  # privileged: the pointer's bits, as an unknown number
            return scalar()
        return scalar(values.alu(insn, Scalar.unknown(), src.value))
    if not is64:
        if src.is_pointer:  # a partial copy of a pointer is a number the program may leak
            return scalar(values.alu(insn, Scalar.unknown(), Scalar.unknown()))
        if src.value.umax <= isa.MASK32:  # w = w of a 32-bit value: the same value, linked
            return src if src.id or src.value.is_const else src.evolve(id=new_id())
        low_half = scalar(values.alu(insn, Scalar.unknown(), src.value))
        # never more than the whole value: its length bound holds
        return low_half if src.length_bound is None else low_half.evolve(length_bound=src.length_bound)
    if src.is_scalar and not src.value.is_const and src.id == 0:
        return src.evolve(id=new_id())
    return src


def _pointer_alu(insn: Insn, dst: Reg, src: Reg, is64: bool, new_id) -> Reg:
    op = insn.op
    if dst.is_pointer and src.is_pointer:
        if op == isa.SUB:
            return scalar()
        raise Rejected(f"R{insn.dst} pointer {_OP_NAMES[op]} pointer prohibited")
    if op in (isa.NEG, isa.END):
        return scalar()  # privileged: the pointer becomes a number
    pointer, offset = (dst, src) if dst.is_pointer else (src, dst)
    if not is64:
        if op == isa.SUB:  # privileged: a 32-bit difference is a meaningless number, not an error
            return scalar()
        raise Rejected(f"R{insn.dst} 32-bit pointer arithmetic prohibited")
    if pointer.maybe_null:
        raise Rejected(f"R{insn.dst} pointer arithmetic on {pointer.type_name()} prohibited, null-check it first")
    if pointer.type == RegType.CONST_PTR_TO_MAP and op == isa.ADD and offset.value.is_const \
            and offset.value.const_value == 0:
        return pointer  # adding a known zero leaves a map pointer as it is (6.12 allows it)
    if pointer.type in _FIXED:
        raise Rejected(f"R{insn.dst} pointer arithmetic on {pointer.type_name()} prohibited")
    amount = offset.value
    # A raw program's memory (bpfjit's own type): every access through it is checked at run
    # time, so the pointer may move by anything (an end pointer r1 + r2, as clang writes
    # i < len loops).
    raw = pointer.is_raw
    if not raw:
        _sane_offset(amount, pointer)  # the kernel checks the offset before the operator
    if op == isa.SUB and not dst.is_pointer:
        raise Rejected(f"R{insn.dst} tried to subtract pointer from scalar")
    if op in (isa.AND, isa.OR, isa.XOR):
        raise Rejected(f"R{insn.dst} bitwise operator {_OP_NAMES[op]} on pointer prohibited")
    if op not in (isa.ADD, isa.SUB):
        raise Rejected(f"R{insn.dst} pointer arithmetic with {_OP_NAMES[op]} operator prohibited")
    if raw:
        bound = length.pointer_move(op, (pointer.length_bound, pointer.value), (offset.length_bound, amount))
        link = pointer.link.moved(_step(op, amount.const_value)) \
            if pointer.link is not None and amount.is_const else None
        return pointer.evolve(value=values.alu(Insn(isa.ALU64 | op | isa.X, 0, 0), pointer.value, amount),
                              length_bound=bound, link=link)
    if amount.is_const:
        delta = isa.s64(amount.const_value)
        moved = pointer.evolve(off=pointer.off + (-delta if op == isa.SUB else delta))
        if abs(moved.off) >= MAX_VAR_OFF:
            raise Rejected(f"{pointer.type_name()} pointer offset {moved.off} is not allowed")
        return moved
    variable = values.alu(Insn(isa.ALU64 | op | isa.X, 0, 0), pointer.value, amount)
    moved = pointer.evolve(value=variable)
    if pointer.type in PACKET_TYPES:  # a new packet pointer: its range must be proven again
        moved = moved.evolve(id=new_id(), range=0)
    return moved


def _step(op: int, amount: int) -> int:
    """How far ADD or SUB of a constant moves a value, modulo 2**64."""
    return amount if op == isa.ADD else -amount


def _sane_offset(amount: Scalar, pointer: Reg) -> None:
    """check_reg_sane_offset: offsets a pointer may move by (beyond them bounds checks overflow)."""
    kind = pointer.type_name()
    if amount.is_const and abs(isa.s64(amount.const_value)) >= MAX_VAR_OFF:
        raise Rejected(f"math between {kind} pointer and {isa.s64(amount.const_value)} is not allowed")
    if amount.smin == -(1 << 63):
        raise Rejected(f"math between {kind} pointer and register with unbounded min value is not allowed")
    if abs(amount.smin) >= MAX_VAR_OFF:
        raise Rejected(f"value {amount.smin} makes {kind} pointer be out of bounds")

"""Context-access conversion: rewrite loads/stores through the ctx pointer to the native context.

The kernel verifier knows, for every instruction, which registers hold the context pointer, and
rewrites ``r2 = *(u32 *)(r1 + 0)`` (``xdp_md.data``) into a 64-bit load of the real packet
pointer. This module does the same with a small forward dataflow over each function: which
registers and 8-byte stack slots *must* hold ctx (on every path) and which *may* (on some).
An access through a register that may hold ctx on some paths only is rejected, as the kernel
rejects mixing pointer types; an access to no known field fails with the kernel's message
``invalid bpf_context access off=N size=M``.

Subprograms receive ctx when every call site passes it in the same argument register. A verified
program needs none of this: the verifier says which instructions access the context, including
those of functions only a function pointer reaches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Mapping, Sequence

from bpfjit import isa
from bpfjit.errors import ProgramError
from bpfjit.isa import Insn
from bpfjit.runtime.context import ContextLayout

from .facts import Facts, Function

# A location is a register number (0-10) or ("stack", offset from r10) for an 8-byte spill slot.
Location = int | tuple[str, int]


@dataclass(frozen=True)
class _State:
    must: frozenset
    may: frozenset

    def join(self, other: "_State") -> "_State":
        return _State(self.must & other.must, self.may | other.may)


def _copy(state: _State, dst: Location, src: Location) -> _State:
    must = state.must - {dst} | ({dst} if src in state.must else set())
    may = state.may - {dst} | ({dst} if src in state.may else set())
    return _State(must, may)


def _kill(state: _State, *locations: Location) -> _State:
    return _State(state.must - set(locations), state.may - set(locations))


def _transfer(insn: Insn, state: _State) -> _State:
    """The ctx locations after insn (calls: r0-r5 are clobbered)."""
    cls = insn.cls
    if cls in (isa.ALU, isa.ALU64):
        if cls == isa.ALU64 and insn.op == isa.MOV and insn.source == isa.X and insn.off == 0:
            return _copy(state, insn.dst, insn.src)
        return _kill(state, insn.dst)
    if insn.is_lddw:
        return _kill(state, insn.dst)
    if cls == isa.LD:  # BPF_LD_ABS/IND: r0-r5 are clobbered, as by a call
        return _kill(state, 0, 1, 2, 3, 4, 5)
    if cls == isa.LDX:
        if insn.src == isa.FRAME_POINTER and insn.size == isa.DW and insn.mode == isa.MEM:
            return _copy(state, insn.dst, ("stack", insn.off))
        return _kill(state, insn.dst)
    if cls in (isa.ST, isa.STX):
        size = isa.SIZE_BYTES[insn.size]
        if insn.dst == isa.FRAME_POINTER:  # a store to the stack: the slots it overlaps change
            overlapped = [loc for loc in state.may if isinstance(loc, tuple)
                          and loc[1] < insn.off + size and insn.off < loc[1] + 8]
            state = _kill(state, *overlapped)
            if cls == isa.STX and insn.mode == isa.MEM and size == 8:
                state = _copy(state, ("stack", insn.off), insn.src)
        if cls == isa.STX and insn.mode == isa.ATOMIC:
            written = insn.dst if insn.imm == isa.LOAD_ACQ else (0 if insn.imm == isa.CMPXCHG else insn.src)
            if insn.imm & isa.FETCH or insn.imm == isa.LOAD_ACQ:
                state = _kill(state, written)
        return state
    if cls == isa.JMP and insn.op == isa.CALL:
        return _kill(state, 0, 1, 2, 3, 4, 5)
    return state


def _function_states(insns: Sequence[Insn], successors: Mapping[int, tuple[int, ...]], function: Function,
                     entry: _State) -> dict[int, _State]:
    states: dict[int, _State] = {function.start: entry}
    work = [function.start]
    while work:
        index = work.pop()
        after = _transfer(insns[index], states[index])
        for successor in successors[index]:
            joined = after if successor not in states else states[successor].join(after)
            if states.get(successor) != joined:
                states[successor] = joined
                work.append(successor)
    return states


def _analyse(insns: Sequence[Insn], facts: Facts) -> dict[int, _State]:
    """ctx locations at every reachable instruction, across the program's functions."""
    nothing = _State(frozenset(), frozenset())
    entries: dict[int, _State] = {0: _State(frozenset({1}), frozenset({1}))}
    while True:
        states: dict[int, _State] = {}
        calls: dict[int, _State] = {}
        for function in facts.functions:
            if function.start not in entries:
                continue
            found = _function_states(insns, facts.successors, function, entries[function.start])
            states.update(found)
            for index, state in found.items():
                if insns[index].is_local_call:
                    args = _State(state.must & {1, 2, 3, 4, 5}, state.may & {1, 2, 3, 4, 5})
                    target = insns[index].call_target(index)
                    calls[target] = args if target not in calls else calls[target].join(args)
        new_entries = {0: entries[0], **{t: s for t, s in calls.items() if t != 0}}
        for function in facts.functions:  # reached only through callx: nothing is known
            if function.start not in new_entries and function.start != 0:
                new_entries[function.start] = nothing
        if new_entries == entries:
            return states
        entries = new_entries


def rewrite_ctx_access(insns: Sequence[Insn], facts: Facts, layout: ContextLayout,
                       ctx_accesses: AbstractSet[int] | None = None) -> list[Insn]:
    """The program with every access through the ctx pointer turned into a native-context access.

    ctx_accesses: the memory instructions the verifier saw access the context (the kernel's
    convert_ctx_accesses reads the same from its walk); None for an unverified program, whose
    accesses the dataflow below finds (a function only a callx reaches then gets nothing)."""
    out = list(insns)
    if ctx_accesses is not None:
        for index in ctx_accesses:
            out[index] = _rewrite(insns[index], index, layout)
        return out
    states = _analyse(insns, facts)
    for index, state in states.items():
        insn = insns[index]
        if insn.cls == isa.LDX:
            base = insn.src
        elif insn.cls in (isa.ST, isa.STX):
            base = insn.dst
        else:
            continue
        if base not in state.may:
            continue
        if base not in state.must:
            raise ProgramError(index, f"R{base} holds the ctx pointer on some paths only")
        out[index] = _rewrite(insn, index, layout)
    return out


def _rewrite(insn: Insn, index: int, layout: ContextLayout) -> Insn:
    size = isa.SIZE_BYTES[insn.size]
    if insn.cls == isa.STX and insn.mode == isa.ATOMIC:
        raise ProgramError(index, f"BPF_ATOMIC stores into R{insn.dst} ctx is not allowed")
    field = layout.field_at(insn.off, size, write=insn.cls != isa.LDX)
    if field is None or insn.mode not in (isa.MEM, isa.MEMSX) or (insn.mode == isa.MEMSX and field.pointer):
        raise ProgramError(index, f"invalid bpf_context access off={insn.off} size={size}")
    offset = field.native_offset + (insn.off - field.offset)
    if field.pointer:
        return Insn(isa.LDX | isa.MEM | isa.DW, insn.dst, insn.src, offset)
    return Insn(insn.opcode, insn.dst, insn.src, offset, insn.imm)

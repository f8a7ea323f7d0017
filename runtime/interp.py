"""The reference interpreter: the oracle every other engine is compared against.

It is written to be read, not to be fast: one method per instruction class, Python ints for
registers (masked to 64 bits after every write), real native memory for the stack and the data, and
a bounds check on every access against the regions the run was given. Semantics follow
docs/semantics.md#instruction-set and #pitfalls (zero-extension of 32-bit results, division by
zero, shift masking, ...). A run stops when it spends the instruction or time budget its RunEnv
carries (max_steps, deadline), counted across the bpf-to-bpf calls and helper callbacks of the
invocation, as the JIT's sandboxed code counts them. A raw program's run also stops past its
budget of loop trips (Facts.loop_edges, trip_limit), counted as every engine counts them.
"""
from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass
from typing import Mapping

from bpfjit import isa
from bpfjit.errors import BPFRuntimeError
from bpfjit.isa import Insn, MASK32, MASK64, sign_extend

from .environment import Environment
from .jump_tables import BAD_TARGET, gotox_targets, program_tables
from .memory import Buffer, Region, Regions
from .context import CTX_SKB_HEAD
from .packet_loads import SKB_DATA, SKB_DATA_END, header_place, names_header, offset_of
from .status import MAX_CALL_FRAMES, MAY_GOTO_BUDGET, RunEnv, Status, raise_for_status

CLOCK_EVERY = 1024  # instructions between two looks at the clock when a run has a time budget

# Interpreted atomics are made atomic against other interpreted runs by one lock; the JIT uses
# the CPU's atomic instructions.
_ATOMIC_LOCK = threading.Lock()


@dataclass
class Frame:
    regs: list[int]
    region: Region  # its 512 bytes of the run's frame stack
    return_index: int  # where the caller continues
    may_goto_left: int = MAY_GOTO_BUDGET


class Unwind(Exception):
    """Raised inside the loop when a helper ends the run early (unwind helper, tail call)."""


class Interpreter:
    def __init__(self, insns: list[Insn], env: Environment, functions: frozenset[int],
                 callx_sites: Mapping[int, frozenset[int]] | None = None, trip_limit: int | None = None,
                 loop_edges: frozenset[tuple[int, int]] = frozenset(), context_proven: bool = False):
        """functions: the slot indexes where BPF functions start (valid callx targets);
        callx_sites: the functions each callx of a verified program may reach (Facts.callx_sites);
        trip_limit, loop_edges: the loop trips an invocation may take, and the jumps (source slot,
        target slot) that are one (Facts.trip_limit and loop_edges; None: no limit);
        context_proven: the program is verified, so r6 at a legacy packet load is the run's
        context, whose runtime words say where its headers are (runtime/packet_loads.py)."""
        self.insns = insns
        self.context_proven = context_proven
        self.env = env
        self.functions = functions
        self.callx_sites = callx_sites or {}
        self.trip_limit = trip_limit
        self.loop_edges = loop_edges if trip_limit is not None else frozenset()
        # ld_imm64 values are resolved once, as the JIT does at compile time.
        self.imm64 = {i: env.ld_imm64_value(insn, i) for i, insn in enumerate(insns)
                      if insn.is_lddw and not isa.is_filler(insns, i)}
        self.gotox = gotox_targets(insns, functions, program_tables(insns, env.ld_imm64_value))
        # One method per instruction class.
        self.handlers = {
            isa.LD: self.ld, isa.LDX: self.ldx, isa.ST: self.st, isa.STX: self.stx,
            isa.ALU: self.alu, isa.ALU64: self.alu, isa.JMP: self.jmp, isa.JMP32: self.jmp,
        }

    # --- the run loop ----------------------------------------------------------------------------
    def run(self, r1: int, r2: int, regions: Regions, status: RunEnv | None = None) -> int:
        """Run from slot 0 with r1, r2 set; return r0. status (if given) records how it ended."""
        return self.run_function(0, [r1, r2, 0, 0, 0], regions, status)

    def run_function(self, start: int, args: list[int], regions: Regions, status: RunEnv | None = None) -> int:
        """Run the function at slot `start` with r1-r5 = args (a program, or a helper's callback)."""
        self.regions = regions
        self.status = status if status is not None else RunEnv()
        self.frames: list[Frame] = []
        # The frames' stacks lie end to end, frame k at k * 512 as in the native interpreter, so an
        # unverified program's access past one frame's end meets the same frame (or none) on both.
        self.frame_stack = Buffer(MAX_CALL_FRAMES * isa.STACK_SIZE)
        self.pc = start
        self.push_frame([0] + [a & MASK64 for a in args], return_index=-1)
        # The count lives in a local while the loop runs and in the RunEnv across helper calls,
        # so that callbacks (each with an interpreter of its own) spend the same budget.
        self.steps = self.status.steps
        max_steps, deadline = self.status.max_steps, self.status.deadline
        try:
            while True:
                insn = self.insns[self.pc]
                self.steps += 1
                if self.steps > max_steps:
                    self.fail(Status.STEP_BUDGET)
                if deadline and self.steps % CLOCK_EVERY == 1 and time.monotonic() > deadline:
                    self.fail(Status.TIME_BUDGET)
                result = self.step(insn)
                if result is not None:
                    return result
        except Unwind:
            return 0
        finally:
            self.status.steps = self.steps
            for frame in self.frames:
                regions.remove(frame.region)

    def step(self, insn: Insn) -> int | None:
        """Execute one instruction; return r0 when the program exits."""
        return self.handlers[insn.cls](insn)

    @property
    def regs(self) -> list[int]:
        return self.frames[-1].regs

    def set_reg(self, reg: int, value: int) -> None:
        self.regs[reg] = value & MASK64

    # --- frames --------------------------------------------------------------------------------
    def push_frame(self, args: list[int], return_index: int) -> None:
        if len(self.frames) == MAX_CALL_FRAMES:
            self.fail(Status.CALL_DEPTH)
        depth = len(self.frames)
        low = self.frame_stack.address + depth * isa.STACK_SIZE
        if depth:  # a callee's stack starts zeroed, as the native interpreter zeroes it on entry
            ctypes.memset(low, 0, isa.STACK_SIZE)
        region = self.regions.add(low, isa.STACK_SIZE, True, f"stack of frame {depth}")
        regs = args + [0] * (11 - len(args))
        regs[isa.FRAME_POINTER] = low + isa.STACK_SIZE
        self.frames.append(Frame(regs, region, return_index))

    def call_local(self, target: int) -> None:
        caller = self.regs
        self.push_frame([0] + caller[1:6], return_index=self.pc + 1)
        self.pc = target

    def call_helper(self, helper_id: int) -> None:
        helper = self.env.helpers.get(helper_id)
        if helper is None:
            raise BPFRuntimeError(self.pc, f"call to unknown helper {helper_id}")
        r = self.regs
        self.status.steps = self.steps  # a callback the helper runs spends the same budget
        try:
            result = helper.impl(r[1], r[2], r[3], r[4], r[5])
        except BPFRuntimeError:  # a callback of the helper failed: its error is already final
            raise
        except Exception as exc:  # a failing helper is the program's error, not ours
            self.fail(Status.HELPER_FAILED, helper.id, exc, helper.name)
        self.steps = self.status.steps
        self.set_reg(0, int(result))
        if helper.stops_on_zero and self.regs[0] == 0:
            self.status.status = Status.UNWOUND
        if self.status.status != Status.OK:  # unwound, or a tail call to run instead
            raise Unwind()

    def fail(self, status: Status, value: int = 0, error: BaseException | None = None, name: str = "") -> None:
        """Record why the run failed (as the JIT does in its RunEnv) and raise the same error."""
        self.status.status, self.status.insn, self.status.value = status, self.pc, value
        raise_for_status(self.status, error, name)

    def exit(self) -> int | None:
        frame = self.frames.pop()
        self.regions.remove(frame.region)
        if not self.frames:
            return frame.regs[0]
        self.regs[0] = frame.regs[0]
        self.pc = frame.return_index
        return None

    # --- memory --------------------------------------------------------------------------------
    def check_access(self, address: int, size: int, write: bool) -> None:
        region = self.regions.find(address, size, write)
        if region is None or (write and not region.writable):
            kind = "write" if write else "read"
            where = f" (read-only {region.name})" if region else ""
            raise BPFRuntimeError(self.pc, f"invalid {kind} of {size} bytes at {address:#x}{where}")

    def load(self, address: int, size: int) -> int:
        self.check_access(address, size, write=False)
        return int.from_bytes(ctypes.string_at(address, size), "little")

    def store(self, address: int, size: int, value: int) -> None:
        self.check_access(address, size, write=True)
        ctypes.memmove(address, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"), size)

    def address(self, reg: int, off: int) -> int:
        return (self.regs[reg] + off) & MASK64

    # --- LD: ld_imm64 and the legacy packet loads -----------------------------------------------
    def ld(self, insn: Insn) -> int | None:
        if not insn.is_lddw:
            return self.legacy_load(insn)
        self.set_reg(insn.dst, self.imm64[self.pc])
        self.pc += 2
        return None

    def legacy_load(self, insn: Insn) -> int | None:
        """BPF_LD_ABS/IND: r0 = the packet's bytes at the offset, big-endian (runtime/packet_loads.py).

        The skb pointers are read through r6 with checked loads, and so is the packet: an
        unverified program may have put anything in r6."""
        size = isa.SIZE_BYTES[insn.size]
        skb = self.regs[6]
        data = self.load((skb + SKB_DATA) & MASK64, 8)
        headlen = self.load((skb + SKB_DATA_END) & MASK64, 8) - data
        offset = offset_of(insn, self.regs[insn.src])
        if names_header(offset):
            if not self.context_proven:
                self.status.access_size = size
                self.fail(Status.BAD_READ, (data + offset) & MASK64)
            address = self._header_address(skb, data, offset, size, headlen)
        else:
            address = data + offset if 0 <= offset <= headlen - size else None
            if address is not None:
                self.check_access(address, size, write=False)
        if address is None:  # the kernel's failed load: return 0 from this function
            self.set_reg(0, 0)
            return self.exit()
        self.set_reg(0, int.from_bytes(ctypes.string_at(address, size), "big"))  # network order
        self.pc += 1
        return None

    @staticmethod
    def _header_address(skb: int, data: int, offset: int, size: int, headlen: int) -> int | None:
        """Where a header offset's bytes are, if they lie inside [head, data_end) (else None).
        skb is a verified program's r6, the run's context: its runtime words are read as the
        kernel's load helper reads its sk_buff, and the bytes before data (a pulled Ethernet
        header) belong to the packet's storage, though not to the region a program may access."""
        word, into = header_place(offset)
        address = data + ctypes.c_int64.from_address(skb + word).value + into
        head = ctypes.c_uint64.from_address(skb + CTX_SKB_HEAD).value
        return address if head <= address and address + size <= data + headlen else None

    # --- LDX / ST / STX ------------------------------------------------------------------------
    def ldx(self, insn: Insn) -> None:
        size = isa.SIZE_BYTES[insn.size]
        value = self.load(self.address(insn.src, insn.off), size)
        if insn.mode == isa.MEMSX:
            value = sign_extend(value, 8 * size)
        self.set_reg(insn.dst, value)
        self.pc += 1

    def st(self, insn: Insn) -> None:
        self.store(self.address(insn.dst, insn.off), isa.SIZE_BYTES[insn.size], insn.imm)
        self.pc += 1

    def stx(self, insn: Insn) -> None:
        size = isa.SIZE_BYTES[insn.size]
        if insn.mode == isa.MEM:
            self.store(self.address(insn.dst, insn.off), size, self.regs[insn.src])
        else:
            with _ATOMIC_LOCK:
                self.atomic(insn, size)
        self.pc += 1

    def atomic(self, insn: Insn, size: int) -> None:
        mask = (1 << (8 * size)) - 1
        if insn.imm == isa.LOAD_ACQ:
            self.set_reg(insn.dst, self.load(self.address(insn.src, insn.off), size))
            return
        address = self.address(insn.dst, insn.off)
        if insn.imm == isa.STORE_REL:
            self.store(address, size, self.regs[insn.src])
            return
        # Read-modify-write: check for a write first, so a read-only target fails cleanly.
        self.check_access(address, size, write=True)
        old = self.load(address, size)
        operand = self.regs[insn.src] & mask
        if insn.imm == isa.CMPXCHG:
            if old == self.regs[0] & mask:
                self.store(address, size, operand)
            self.set_reg(0, old)
            return
        if insn.imm == isa.XCHG:
            new = operand
        else:
            new = {isa.ADD: old + operand, isa.OR: old | operand, isa.AND: old & operand,
                   isa.XOR: old ^ operand}[insn.imm & ~isa.FETCH]
        self.store(address, size, new)
        if insn.imm & isa.FETCH:
            self.set_reg(insn.src, old)

    # --- ALU / ALU64 ---------------------------------------------------------------------------
    def alu(self, insn: Insn) -> None:
        self.set_reg(insn.dst, alu_result(insn, self.regs[insn.dst], self.regs[insn.src]))
        self.pc += 1

    # --- JMP / JMP32 ---------------------------------------------------------------------------
    def jmp(self, insn: Insn) -> int | None:
        op = insn.op
        if op == isa.EXIT:
            return self.exit()
        if op == isa.CALL:
            return self.call(insn)
        if op == isa.JA:
            if insn.opcode == isa.GOTOX_OP:
                self.jump(self.indirect_target(self.regs[insn.dst]))
                return None
            taken = insn.src == 0 or self.env.static_branch_jumps(self.pc, insn)
        elif op == isa.JCOND:  # may_goto: branch once this frame's budget is spent
            frame = self.frames[-1]
            taken = frame.may_goto_left == 0
            if not taken:
                frame.may_goto_left -= 1
        else:
            taken = condition(insn, self.regs[insn.dst], self.regs[insn.src])
        self.jump(insn.jump_target(self.pc) if taken else self.pc + 1)
        return None

    def jump(self, target: int) -> None:
        """Go on at `target`; a jump along one of loop_edges is a trip of a loop, counted for the
        invocation (in its RunEnv, which callbacks share) against trip_limit."""
        if (self.pc, target) in self.loop_edges:
            self.status.trips += 1
            if self.status.trips > self.trip_limit:
                self.fail(Status.LOOP_BUDGET, self.trip_limit)
        self.pc = target

    def indirect_target(self, value: int) -> int:
        """Where gotox goes: the slot a jump table entry holds, if it is one of its function's."""
        if value not in self.gotox.get(self.pc, ()):
            raise BPFRuntimeError(self.pc, BAD_TARGET)
        return value

    def call(self, insn: Insn) -> None:
        if insn.source == isa.X:  # callx: a helper id or a BPF function token
            target = self.regs[insn.callx_reg]
            function = self.env.function_of(target)
            if function in self.callx_sites.get(self.pc, self.functions):
                self.call_local(function)
            elif self.env.callx_reaches_helpers and target in self.env.helpers:
                self.call_helper(target)
                self.pc += 1
            else:
                self.fail(Status.BAD_CALLX, target)
        elif insn.src == isa.CALL_LOCAL:
            self.call_local(insn.call_target(self.pc))
        elif insn.src == isa.CALL_HELPER:
            self.call_helper(insn.imm)
            self.pc += 1
        else:
            raise BPFRuntimeError(self.pc, "kfunc calls are not supported")


def alu_result(insn: Insn, dst_value: int, src_value: int) -> int:
    """The new 64-bit value of dst for an ALU/ALU64 instruction (pure; shared by the tests)."""
    is64 = insn.cls == isa.ALU64
    bits = 64 if is64 else 32
    mask = MASK64 if is64 else MASK32
    op = insn.op
    if op == isa.END:
        width = insn.imm
        low = dst_value & ((1 << width) - 1)
        if insn.cls == isa.ALU and insn.source == isa.K:  # to little-endian: a truncation on x86
            return low
        return int.from_bytes(low.to_bytes(width // 8, "little"), "big")
    d = dst_value & mask
    if op == isa.NEG:
        return -d & mask
    if insn.source == isa.X:
        s = src_value & mask
    else:
        s = insn.imm & mask  # sign-extended to 64 bits for ALU64, taken as u32 for ALU
    if op == isa.MOV:
        if insn.is_movsx:
            return sign_extend(src_value, insn.off) & mask
        return s
    if op in (isa.DIV, isa.MOD):
        return _divmod(op, insn.off == 1, d, s, bits) & mask
    if op in (isa.LSH, isa.RSH, isa.ARSH):
        n = s & (bits - 1)
        if op == isa.LSH:
            return (d << n) & mask
        if op == isa.RSH:
            return d >> n
        return (sign_extend(d, bits) >> n) & mask
    return {
        isa.ADD: d + s, isa.SUB: d - s, isa.MUL: d * s, isa.OR: d | s, isa.AND: d & s, isa.XOR: d ^ s,
    }[op] & mask


def _divmod(op: int, signed: bool, d: int, s: int, bits: int) -> int:
    """Division by zero gives 0, modulo by zero keeps dst; signed ops truncate toward zero."""
    if s == 0:
        return 0 if op == isa.DIV else d
    if not signed:
        return d // s if op == isa.DIV else d % s
    sd, ss = sign_extend(d, bits), sign_extend(s, bits)
    quotient = abs(sd) // abs(ss) * (1 if (sd < 0) == (ss < 0) else -1)
    return quotient if op == isa.DIV else sd - ss * quotient


def condition(insn: Insn, dst_value: int, src_value: int) -> bool:
    """Whether a conditional jump is taken (pure; shared by the tests)."""
    if insn.cls == isa.JMP32:
        bits, d = 32, dst_value & MASK32
        s = (src_value if insn.source == isa.X else insn.imm) & MASK32
    else:
        bits, d = 64, dst_value & MASK64
        s = (src_value if insn.source == isa.X else insn.imm) & MASK64  # imm sign-extended
    sd, ss = sign_extend(d, bits), sign_extend(s, bits)
    return {
        isa.JEQ: d == s, isa.JNE: d != s, isa.JSET: d & s != 0,
        isa.JGT: d > s, isa.JGE: d >= s, isa.JLT: d < s, isa.JLE: d <= s,
        isa.JSGT: sd > ss, isa.JSGE: sd >= ss, isa.JSLT: sd < ss, isa.JSLE: sd <= ss,
    }[insn.op]

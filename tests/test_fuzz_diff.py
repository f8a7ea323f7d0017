"""Differential fuzzing: random *valid* programs must behave identically on every engine: the JIT,
the native interpreter and the reference interpreter (the oracle).

The generator builds structured programs (so that every one of them is something the kernel
verifier could accept): all registers are initialised before use, r10 is never written, jumps go
forward inside their block (except the back edge of a bounded counter loop), no jump lands in the
second slot of an ld_imm64, memory accesses use constant in-bounds offsets from a known base (stack
accesses aligned to their size: the kernel checks stack alignment strictly), the stack bytes a frame
reads were written first, and bpf-to-bpf callees get their own frame and are each called somewhere
(the kernel rejects an unreachable instruction). Programs are verified: a rejection is a failure
(a verifier gap, or a generator bug), but for "too large", which the kernel gives a loop of many
trips too (those run unverified and budgeted).

Registers:

* r9 holds the memory buffer's base (copied from r1 at entry) and is never written, so generated
  code cannot lose it. Addresses differ between the two runs (each run gets its own buffer and
  its own stack), so pointer values must never reach r0 or memory: only *data* registers are
  folded into r0, stored, compared or used as ALU operands.
* In a callee, r9 is the buffer base (passed in r1) and r8 points at the caller's initialised
  stack window (passed in r2); the callee's data registers are r0-r7.

Each program is run with ``Program.test_run(mem, engine=...)`` on every engine from the same 64
random bytes; r0 (into which all data registers and the stack window are folded before exit) and
the final memory must match. After many items the register just written is also xor-ed (atomically)
into the stack window, so a wrong intermediate value is seen even if the register is overwritten.

The default run executes 2,050 programs (counted, and checked by ``test_program_count``):
250 hypothesis examples plus a seeded campaign of 1,800 spread over two worker processes
(``BPFJIT_FUZZ_WORKERS`` overrides). ``pytest -m slow`` runs a much longer campaign
(``BPFJIT_SLOW_PROGRAMS``, ``BPFJIT_SLOW_SEED`` to size or replay it).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import random
from dataclasses import dataclass
from typing import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfjit import isa
from bpfjit.isa import Insn
from bpfjit.errors import VerifierError
from bpfjit.program import ENGINES, Program

MEM_SIZE = 64
WINDOW = 64  # bytes of its stack a frame uses; initialised before anything reads it
MAX_STEPS = 500_000
MASK64 = isa.MASK64

INTERESTING64 = [
    0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF,
    0x10000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 0x1_0000_0001,
    0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0x8000_0000_0000_0001, MASK64, MASK64 - 1,
    0xFFFF_FFFF_8000_0000, 0xFFFF_FFFF_7FFF_FFFF, 0xFFFF_FFFF_0000_0000, 0x0000_0000_FFFF_FFFE,
    0x8000_0000_FFFF_FFFF, 0x0102_0304_0506_0708, 0xFEDC_BA98_7654_3210,
]
INTERESTING32 = [0, 1, -1, 2, -2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 0x7F, 0x80, -0x80, 0xFF, 0x7FFF, 0x8000,
                 -0x8000, 0xFFFF, 0x10000, 0x7FFF_FFFF, -0x8000_0000, -0x7FFF_FFFF, 0x1234_5678]

ALU_OPS = ["add", "sub", "mul", "div", "sdiv", "mod", "smod", "or", "and", "lsh", "rsh", "arsh", "neg",
           "mov", "movsx", "xor", "end"]
_ALU_CODES = {"add": isa.ADD, "sub": isa.SUB, "mul": isa.MUL, "div": isa.DIV, "sdiv": isa.DIV,
              "mod": isa.MOD, "smod": isa.MOD, "or": isa.OR, "and": isa.AND, "lsh": isa.LSH,
              "rsh": isa.RSH, "arsh": isa.ARSH, "neg": isa.NEG, "mov": isa.MOV, "movsx": isa.MOV,
              "xor": isa.XOR, "end": isa.END}
COND_OPS = [isa.JEQ, isa.JGT, isa.JGE, isa.JSET, isa.JNE, isa.JSGT, isa.JSGE, isa.JLT, isa.JLE, isa.JSLT,
            isa.JSLE]
SIZES = [isa.B, isa.H, isa.W, isa.DW]
RMW_IMMS = [op | fetch for op in (isa.ADD, isa.OR, isa.AND, isa.XOR) for fetch in (0, isa.FETCH)]
FOLD_MUL = 0x0100_0193  # odd: folding stays a bijection per register


# --- a tiny assembler with labels -----------------------------------------------------------------

@dataclass(frozen=True)
class Label:
    name: str


@dataclass(frozen=True)
class Jump:
    """A jump to a label: conditional (off), goto (off) or gotol (imm)."""
    opcode: int
    label: str
    dst: int = 0
    src: int = 0
    imm: int = 0


@dataclass(frozen=True)
class CallLocal:
    label: str


def link(entries: Sequence[object]) -> list[Insn]:
    """Resolve labels: one slot per Insn / Jump / CallLocal, none per Label."""
    where: dict[str, int] = {}
    slot = 0
    for entry in entries:
        if isinstance(entry, Label):
            assert entry.name not in where
            where[entry.name] = slot
        else:
            slot += 1
    out: list[Insn] = []
    for entry in entries:
        pc = len(out)
        if isinstance(entry, Insn):
            out.append(entry)
        elif isinstance(entry, Jump):
            rel = where[entry.label] - (pc + 1)
            if entry.opcode == isa.GOTOL_OP:
                out.append(Insn(entry.opcode, 0, 0, 0, rel))
            else:
                assert -(1 << 15) <= rel < (1 << 15)
                out.append(Insn(entry.opcode, entry.dst, entry.src, rel, entry.imm))
        elif isinstance(entry, CallLocal):
            out.append(Insn(isa.CALL_OP, 0, isa.CALL_LOCAL, 0, where[entry.label] - (pc + 1)))
    return out


# --- the generator ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    """A register holding a pointer, and the window [lo, lo + size) around it a program may access.
    stack: it points into a BPF stack, whose accesses must be aligned (lo is then a multiple of 8)."""
    reg: int
    lo: int
    size: int
    stack: bool = False


class Generator:
    """Random valid programs from a random.Random (or hypothesis' HypothesisRandom)."""

    def __init__(self, rnd: random.Random, size: int = 24):
        self.rnd = rnd
        self.size = size  # items per top-level block (roughly)
        self.labels = 0

    # --- random values --------------------------------------------------------------------------
    def label(self) -> str:
        self.labels += 1
        return f"L{self.labels}"

    def value64(self) -> int:
        r = self.rnd.randrange(6)
        if r == 0:
            return self.rnd.getrandbits(64)
        if r == 1:
            return self.rnd.randrange(-300, 300) & MASK64
        if r == 2:
            return isa.s32(self.rnd.getrandbits(32)) & MASK64
        if r == 3:
            return self.rnd.getrandbits(32)
        return self.rnd.choice(INTERESTING64)

    def imm32(self) -> int:
        r = self.rnd.randrange(4)
        if r == 0:
            return isa.s32(self.rnd.getrandbits(32))
        if r == 1:
            return self.rnd.randrange(-40, 40)
        return self.rnd.choice(INTERESTING32)

    # --- straight-line items (each returns a list of entries) ------------------------------------
    def alu(self, writable: Sequence[int], readable: Sequence[int]) -> list:
        rnd = self.rnd
        is64 = rnd.random() < 0.5
        cls, bits = (isa.ALU64, 64) if is64 else (isa.ALU, 32)
        name = rnd.choice(ALU_OPS)
        op = _ALU_CODES[name]
        dst = rnd.choice(writable)
        src = rnd.choice(readable)
        if name == "neg":
            return [Insn(cls | isa.NEG, dst)]
        if name == "end":
            width = rnd.choice((16, 32, 64))
            if is64:
                return [Insn(isa.ALU64 | isa.END, dst, imm=width)]  # bswap16/32/64
            return [Insn(isa.ALU | isa.END | rnd.choice((isa.K, isa.X)), dst, imm=width)]  # le / be
        if name == "movsx":
            return [Insn(cls | isa.MOV | isa.X, dst, src, rnd.choice((8, 16, 32) if is64 else (8, 16)))]
        off = 1 if name in ("sdiv", "smod") else 0
        if rnd.random() < 0.5:
            return [Insn(cls | op | isa.X, dst, src, off)]
        if op in (isa.LSH, isa.RSH, isa.ARSH):
            imm = rnd.randrange(bits)
        elif op in (isa.DIV, isa.MOD):
            imm = self.imm32() or 1  # the kernel rejects division by an immediate 0 at load
        else:
            imm = self.imm32()
        return [Insn(cls | op | isa.K, dst, 0, off, imm)]

    def load_imm(self, writable: Sequence[int]) -> list:
        dst = self.rnd.choice(writable)
        r = self.rnd.randrange(3)
        if r == 0:
            return isa.lddw(dst, self.value64())
        return [Insn((isa.ALU64 if r == 1 else isa.ALU) | isa.MOV | isa.K, dst, imm=self.imm32())]

    def offset(self, base: Base, width: int, aligned: bool) -> int:
        if aligned or base.stack:
            return base.lo + width * self.rnd.randrange(base.size // width)
        return base.lo + self.rnd.randrange(base.size - width + 1)

    def mem(self, base: Base, writable: Sequence[int], readable: Sequence[int]) -> list:
        rnd = self.rnd
        size = rnd.choice(SIZES)
        width = isa.SIZE_BYTES[size]
        off = self.offset(base, width, rnd.random() < 0.5)
        kind = rnd.randrange(4)
        if kind == 0:
            return [Insn(isa.LDX | isa.MEM | size, rnd.choice(writable), base.reg, off)]
        if kind == 1:
            if size == isa.DW:  # there is no sign-extending 64-bit load
                size = rnd.choice((isa.B, isa.H, isa.W))
                off = self.offset(base, isa.SIZE_BYTES[size], rnd.random() < 0.5)
            return [Insn(isa.LDX | isa.MEMSX | size, rnd.choice(writable), base.reg, off)]
        if kind == 2:
            return [Insn(isa.ST | isa.MEM | size, base.reg, 0, off, self.imm32())]
        return [Insn(isa.STX | isa.MEM | size, base.reg, rnd.choice(readable), off)]

    def atomic(self, base: Base, writable: Sequence[int], readable: Sequence[int]) -> list:
        rnd = self.rnd
        kind = rnd.randrange(4)
        if kind >= 2:  # load-acquire / store-release, any size
            size = rnd.choice(SIZES)
            off = self.offset(base, isa.SIZE_BYTES[size], True)
            if kind == 2:
                return [Insn(isa.STX | isa.ATOMIC | size, rnd.choice(writable), base.reg, off, isa.LOAD_ACQ)]
            return [Insn(isa.STX | isa.ATOMIC | size, base.reg, rnd.choice(readable), off, isa.STORE_REL)]
        size = rnd.choice((isa.W, isa.DW))
        off = self.offset(base, isa.SIZE_BYTES[size], True)
        imm = rnd.choice(RMW_IMMS + [isa.XCHG, isa.CMPXCHG])
        if imm == isa.CMPXCHG and 0 not in writable:
            imm = isa.ADD
        src = rnd.choice(writable if imm & isa.FETCH and imm != isa.CMPXCHG else readable)
        out = []
        if imm == isa.CMPXCHG and rnd.random() < 0.5:
            # Make the compare succeed sometimes: r0 = the current value.
            out.append(Insn(isa.LDX | isa.MEM | size, 0, base.reg, off))
        out.append(Insn(isa.STX | isa.ATOMIC | size, base.reg, src, off, imm))
        return out

    def derived_pointer(self, bases: Sequence[Base], writable: Sequence[int], readable: Sequence[int]) -> list:
        """t = base + k; access [t + off]; t = data again (pointer values never escape)."""
        rnd = self.rnd
        candidates = [r for r in writable if r != 0]
        if not candidates:
            return []
        t = rnd.choice(candidates)
        base = rnd.choice(bases)
        k = base.lo + rnd.randrange(base.size + 1)
        out = [Insn(isa.ALU64 | isa.MOV | isa.X, t, base.reg)]
        if rnd.random() < 0.5:
            out.append(Insn(isa.ALU64 | isa.ADD | isa.K, t, imm=k))
        else:
            out.append(Insn(isa.ALU64 | isa.SUB | isa.K, t, imm=-k))
        moved = Base(t, base.lo - k, base.size, base.stack)
        rest_w = [r for r in writable if r != t]
        rest_r = [r for r in readable if r != t]
        if rnd.random() < 0.3:  # load through the pointer straight into it
            size = rnd.choice(SIZES)
            out.append(Insn(isa.LDX | isa.MEM | size, t, t, self.offset(moved, isa.SIZE_BYTES[size], False)))
            return out
        body = self.atomic if rnd.random() < 0.4 else self.mem
        out += body(moved, rest_w, rest_r)
        out += self.load_imm([t])
        return out

    # --- structure ----------------------------------------------------------------------------------
    def block(self, fn: "FunctionShape", writable: list[int], readable: list[int], items: int,
              depth: int) -> list:
        """A sequence of items, some of them skipped by forward conditional jumps."""
        rnd = self.rnd
        parts: list[list] = []
        for _ in range(items):
            r = rnd.random()
            if r < 0.42:
                part = self.alu(writable, readable)
            elif r < 0.50:
                part = self.load_imm(writable)
            elif r < 0.64:
                part = self.mem(rnd.choice(fn.bases), writable, readable)
            elif r < 0.74:
                part = self.atomic(rnd.choice(fn.bases), writable, readable)
            elif r < 0.80:
                part = self.derived_pointer(fn.bases, writable, readable)
            elif r < 0.87 and depth < 3:
                part = self.diamond(fn, writable, readable, depth)
            elif r < 0.94 and depth < 3:
                part = self.loop(fn, writable, readable, depth)
            elif fn.callees:
                part = self.call(fn, writable)
            else:
                part = self.alu(writable, readable)
            parts.append(part)
        labels = [self.label() for _ in range(len(parts) + 1)]
        out: list = []
        for i, part in enumerate(parts):
            out.append(Label(labels[i]))
            if rnd.random() < 0.25:
                out.append(self.cond_jump(readable, labels[rnd.randint(i + 1, len(parts))]))
            elif rnd.random() < 0.02:  # a jump to the very next slot
                here = self.label()
                out += [self.cond_jump(readable, here), Label(here)]
            out += part
            if rnd.random() < 0.4:
                out += self.observe(fn, readable, part)
        out.append(Label(labels[-1]))
        return out

    def observe(self, fn: "FunctionShape", readable: Sequence[int], part: list) -> list:
        """Xor the register an item just wrote into the stack window, which is folded into r0 at exit:
        values that are overwritten later still reach the comparison."""
        last = part[-1] if part else None
        reg = self.rnd.choice(readable)
        if isinstance(last, Insn) and last.opcode == 0 and len(part) >= 2:
            last = part[-2]  # the first slot of an ld_imm64
        if isinstance(last, Insn):
            if last.cls in (isa.ALU, isa.ALU64, isa.LDX, isa.LD):
                reg = last.dst
            elif last.cls == isa.STX and last.mode == isa.ATOMIC:
                reg = {isa.CMPXCHG: 0, isa.LOAD_ACQ: last.dst}.get(last.imm, last.src)
        if reg not in readable:
            reg = self.rnd.choice(readable)
        window = Base(10, fn.window_lo, WINDOW, stack=True)
        op = self.rnd.choice((isa.XOR, isa.ADD))
        return [Insn(isa.STX | isa.ATOMIC | isa.DW, 10, reg, self.offset(window, 8, True), op)]

    def cond_jump(self, readable: Sequence[int], label: str) -> Jump:
        rnd = self.rnd
        cls = rnd.choice((isa.JMP, isa.JMP32))
        op = rnd.choice(COND_OPS)
        if rnd.random() < 0.5:
            return Jump(cls | op | isa.X, label, rnd.choice(readable), rnd.choice(readable))
        return Jump(cls | op | isa.K, label, rnd.choice(readable), imm=self.imm32())

    def goto(self, label: str) -> Jump:
        return Jump(isa.GOTOL_OP if self.rnd.random() < 0.3 else isa.JA_OP, label)

    def diamond(self, fn: "FunctionShape", writable: list[int], readable: list[int], depth: int) -> list:
        """if (cond) { B } else { A } -- both arms reachable, joined by a goto."""
        other, end = self.label(), self.label()
        n = max(1, self.size // (3 * (depth + 1)))
        out = [self.cond_jump(readable, other)]
        out += self.block(fn, writable, readable, self.rnd.randint(0, n), depth + 1)
        out += [self.goto(end), Label(other)]
        out += self.block(fn, writable, readable, self.rnd.randint(0, n), depth + 1)
        out.append(Label(end))
        return out

    def loop(self, fn: "FunctionShape", writable: list[int], readable: list[int], depth: int) -> list:
        """A counter loop with a small trip count and a backward conditional jump."""
        rnd = self.rnd
        counters = [r for r in fn.counter_regs if r in writable]
        if not counters:
            return self.alu(writable, readable)
        c = rnd.choice(counters)
        trips = rnd.randint(1, 4)
        top = self.label()
        inner_w = [r for r in writable if r != c]
        n = max(1, self.size // (3 * (depth + 1)))
        body = self.block(fn, inner_w, readable, rnd.randint(0, n), depth + 1)
        cls = rnd.choice((isa.JMP, isa.JMP32))
        mov = rnd.choice((isa.ALU, isa.ALU64)) | isa.MOV | isa.K
        if rnd.random() < 0.5:  # count down to zero
            op = rnd.choice((isa.JNE, isa.JGT, isa.JSGT))
            return ([Insn(mov, c, imm=trips), Label(top)] + body
                    + [Insn(isa.ALU64 | isa.ADD | isa.K, c, imm=-1), Jump(cls | op | isa.K, top, c, imm=0)])
        op = rnd.choice((isa.JNE, isa.JLT, isa.JSLT))
        return ([Insn(mov, c, imm=0), Label(top)] + body
                + [Insn(isa.ALU64 | isa.ADD | isa.K, c, imm=1), Jump(cls | op | isa.K, top, c, imm=trips)])

    def call(self, fn: "FunctionShape", writable: list[int], callee: str | None = None) -> list:
        """Call a later function (callee, or a random one) with r1 = buffer, r2 = our stack window;
        r1-r5 are dead afterwards."""
        assert all(r in writable for r in range(6))
        callee = callee or self.rnd.choice(fn.callees)
        out = [Insn(isa.ALU64 | isa.MOV | isa.X, 1, 9),
               Insn(isa.ALU64 | isa.MOV | isa.X, 2, 10),
               Insn(isa.ALU64 | isa.ADD | isa.K, 2, imm=fn.window_lo),
               CallLocal(callee)]
        for reg in range(1, 6):  # the kernel marks r1-r5 unreadable after a call
            out.append(Insn(self.rnd.choice((isa.ALU, isa.ALU64)) | isa.MOV | isa.K, reg, imm=self.imm32()))
        return out

    def init_window(self, window_lo: int, readable: Sequence[int]) -> list:
        out = []
        for slot in range(WINDOW // 8):
            off = window_lo + 8 * slot
            if self.rnd.random() < 0.5:
                out.append(Insn(isa.ST | isa.MEM | isa.DW, 10, 0, off, self.imm32()))
            else:
                out.append(Insn(isa.STX | isa.MEM | isa.DW, 10, self.rnd.choice(readable), off))
        return out

    def fold(self, data_regs: Sequence[int], window_lo: int, temp: int) -> list:
        """r0 = a hash of every data register and of the frame's stack window."""
        out = []
        for reg in data_regs:
            if reg != 0:
                out += [Insn(isa.ALU64 | isa.MUL | isa.K, 0, imm=FOLD_MUL), Insn(isa.ALU64 | isa.XOR | isa.X, 0, reg)]
        for slot in range(WINDOW // 8):
            out += [Insn(isa.LDX | isa.MEM | isa.DW, temp, 10, window_lo + 8 * slot),
                    Insn(isa.ALU64 | isa.MUL | isa.K, 0, imm=FOLD_MUL), Insn(isa.ALU64 | isa.XOR | isa.X, 0, temp)]
        return out

    # --- whole programs ---------------------------------------------------------------------------
    def program(self) -> list[Insn]:
        rnd = self.rnd
        n_callees = rnd.choice((0, 0, 1, 2))
        names = [self.label() for _ in range(n_callees)]
        # Frames' stack windows: anywhere in [-512, 0) without calls; with calls the deepest chain
        # (at most three frames) must fit in the kernel's combined 512 bytes.
        if n_callees:
            lows = [-8 * rnd.randint(WINDOW // 8, 21) for _ in range(n_callees + 1)]
        else:
            lows = [-8 * rnd.randint(WINDOW // 8, 64)]
        main_regs = list(range(9))
        main = FunctionShape(bases=[Base(10, lows[0], WINDOW, stack=True), Base(9, 0, MEM_SIZE)], callees=names,
                             window_lo=lows[0], counter_regs=[6, 7, 8])
        out: list = [Insn(isa.ALU64 | isa.MOV | isa.X, 9, 1)]
        out += isa.lddw(0, self.value64())
        out.append(Insn(isa.ALU64 | isa.ADD | isa.X, 0, 2))  # r2 = the memory length
        for reg in range(1, 9):
            out += isa.lddw(reg, self.value64())
        out += self.init_window(lows[0], main_regs)
        if names:  # each function calls the next once, so that none is unreachable
            out += self.call(main, main_regs, names[0])
        out += self.block(main, main_regs, main_regs, self.size, 0)
        out += self.fold(main_regs, lows[0], temp=1)
        out.append(Insn(isa.EXIT_OP))
        for i, name in enumerate(names):
            callee_regs = list(range(8))
            shape = FunctionShape(bases=[Base(10, lows[i + 1], WINDOW, stack=True), Base(9, 0, MEM_SIZE),
                                         Base(8, 0, WINDOW, stack=True)],
                                  callees=names[i + 1:], window_lo=lows[i + 1], counter_regs=[6, 7])
            out += [Label(name), Insn(isa.ALU64 | isa.MOV | isa.X, 9, 1), Insn(isa.ALU64 | isa.MOV | isa.X, 8, 2)]
            for reg in (0, 1, 2, 6, 7):
                out += isa.lddw(reg, self.value64())
            out += self.init_window(lows[i + 1], callee_regs)
            if shape.callees:
                out += self.call(shape, callee_regs, shape.callees[0])
            out += self.block(shape, callee_regs, callee_regs, max(2, self.size // 2), 1)
            out += self.fold(callee_regs, lows[i + 1], temp=1)
            out.append(Insn(isa.EXIT_OP))
        return link(out)


@dataclass
class FunctionShape:
    bases: list[Base]
    callees: list[str]
    window_lo: int
    counter_regs: list[int]


# --- running ------------------------------------------------------------------------------------

EXECUTED = {"hypothesis": 0, "seeded": 0, "slow": 0}


def listing(insns: Sequence[Insn]) -> str:
    try:
        return Program(insns).disassemble()
    except Exception as exc:  # pragma: no cover - only for failure messages
        return f"(no listing: {exc!r})\n{insns!r}"


def check_program(insns: list[Insn], mem: bytes) -> None:
    """Run on every engine from the same memory; r0 and the final memory must be the reference's.

    A generated program is valid but may still be one the kernel's verifier refuses as too large
    (a loop whose trips walk past its 1M-instruction budget): it then runs unverified,
    sandboxed and budgeted, where the engines must agree just the same. Any other rejection
    is a failure."""
    code = isa.encode(insns)
    assert isa.decode(code) == insns
    try:
        prog, budget = Program.from_bytes(code), None
    except VerifierError as error:
        if "BPF program is too large" not in error.message:
            raise
        prog, budget = Program.from_bytes(code, verify=False), MAX_STEPS
    expected = prog.test_run(mem, engine="reference", max_steps=MAX_STEPS)
    for engine in ENGINES:
        if engine == "reference":
            continue
        got = prog.test_run(mem, engine=engine, max_steps=budget)
        if (got.retval, got.data_out) != (expected.retval, expected.data_out):
            raise AssertionError(
                f"reference/{engine} mismatch\n  reference r0={expected.retval:#x} mem={expected.data_out.hex()}\n"
                f"  {engine:<9} r0={got.retval:#x} mem={got.data_out.hex()}\n  input mem={mem.hex()}\n"
                f"  bytecode={code.hex()}\n{listing(insns)}")
    prog.compile(sandboxed=budget is not None).close()


def random_case(rnd: random.Random, size: int) -> tuple[list[Insn], bytes]:
    insns = Generator(rnd, size).program()
    mem = bytes(rnd.getrandbits(8) for _ in range(MEM_SIZE))
    return insns, mem


def test_generator_is_valid_and_covers_the_isa():
    """Sanity-check the generator itself: programs decode, pass the structure check, and together
    use every opcode family the brief lists."""
    rnd = random.Random(1234)
    seen: set[tuple] = set()
    for _ in range(300):
        insns, _ = random_case(rnd, 24)
        prog = Program.from_bytes(isa.encode(insns))
        for i, insn in enumerate(prog.insns):
            if isa.is_filler(prog.insns, i):
                continue
            assert not (insn.dst == 10 and insn.cls in (isa.ALU, isa.ALU64, isa.LDX))
            key: tuple = (insn.opcode,)
            if insn.is_alu and insn.op in (isa.DIV, isa.MOD, isa.MOV):
                key += (insn.off,)
            if insn.is_alu and insn.op == isa.END:
                key += (insn.imm,)
            if insn.cls == isa.STX and insn.mode == isa.ATOMIC:
                key += (insn.imm,)
            if insn.opcode == isa.CALL_OP:
                key += (insn.src,)
            if insn.is_jump and insn.op not in (isa.CALL, isa.EXIT) and (insn.off < 0 or insn.imm < 0
                                                                          and insn.opcode == isa.GOTOL_OP):
                seen.add(("backward",))
            seen.add(key)
    want: set[tuple] = set()
    for cls in (isa.ALU, isa.ALU64):
        for name, op in _ALU_CODES.items():
            if name == "neg":
                want.add((cls | op,))
            elif name == "end":
                for width in (16, 32, 64):
                    want.add((cls | op | isa.K, width))
                    if cls == isa.ALU:
                        want.add((cls | op | isa.X, width))
            elif name == "movsx":
                for off in ((8, 16, 32) if cls == isa.ALU64 else (8, 16)):
                    want.add((cls | op | isa.X, off))
            else:
                off = 1 if name in ("sdiv", "smod") else 0
                for src in (isa.K, isa.X):
                    want.add((cls | op | src, off) if op in (isa.DIV, isa.MOD, isa.MOV) else (cls | op | src,))
    for cls in (isa.JMP, isa.JMP32):
        for op in COND_OPS:
            for src in (isa.K, isa.X):
                want.add((cls | op | src,))
    want |= {(isa.JA_OP,), (isa.GOTOL_OP,), (isa.EXIT_OP,), (isa.CALL_OP, isa.CALL_LOCAL), ("backward",)}
    for size in SIZES:
        want |= {(isa.LDX | isa.MEM | size,), (isa.ST | isa.MEM | size,), (isa.STX | isa.MEM | size,),
                 (isa.STX | isa.ATOMIC | size, isa.LOAD_ACQ), (isa.STX | isa.ATOMIC | size, isa.STORE_REL)}
        if size != isa.DW:
            want.add((isa.LDX | isa.MEMSX | size,))
    for size in (isa.W, isa.DW):
        for imm in RMW_IMMS + [isa.XCHG, isa.CMPXCHG]:
            want.add((isa.STX | isa.ATOMIC | size, imm))
    want.add((isa.LDDW,))
    missing = want - seen
    assert not missing, f"generator never produced: {sorted(missing, key=str)}"


# Hypothesis drives the generator through a HypothesisRandom, so failures shrink.
HYPOTHESIS_EXAMPLES = 250


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(rnd=st.randoms(use_true_random=False), size=st.integers(4, 20))
def test_fuzz_hypothesis(rnd, size):
    insns, mem = random_case(rnd, size)
    check_program(insns, mem)
    EXECUTED["hypothesis"] += 1


# A seeded random.Random campaign: cheap to generate, fully reproducible, and large. LLVM's
# optimiser dominates the cost, so the campaign is spread over (at most two, by default) worker
# processes; BPFJIT_FUZZ_WORKERS overrides the count (1 = in this process).
SEEDED_PROGRAMS = 1800
CHUNK = 50


def run_seeds(seeds: Sequence[int], max_size: int = 32) -> tuple[int, list[str]]:
    """Check the program each seed generates; return how many passed and a report per failure."""
    passed, failures = 0, []
    for seed in seeds:
        case_rnd = random.Random(seed)
        insns, mem = random_case(case_rnd, case_rnd.randint(4, max_size))
        try:
            check_program(insns, mem)
        except Exception as exc:  # a valid program must neither differ nor raise on either engine
            failures.append(f"random.Random({seed:#x}) with max_size={max_size}: {type(exc).__name__}: {exc}"
                            + ("" if isinstance(exc, AssertionError) else f"\n{listing(insns)}"))
        else:
            passed += 1
    return passed, failures


def campaign(seed: int, count: int, max_size: int, workers: int) -> tuple[int, list[str]]:
    rnd = random.Random(seed)
    seeds = [rnd.getrandbits(64) for _ in range(count)]
    chunks = [seeds[i:i + CHUNK] for i in range(0, count, CHUNK)]
    if workers <= 1:
        results = [run_seeds(chunk, max_size) for chunk in chunks]
    else:
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no LLVM state forked
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = list(pool.map(run_seeds, chunks, [max_size] * len(chunks)))
    return sum(r[0] for r in results), [f for r in results for f in r[1]]


def default_workers(cap: int) -> int:
    return int(os.environ.get("BPFJIT_FUZZ_WORKERS", "0")) or max(1, min(cap, os.cpu_count() or 1))


def test_fuzz_seeded():
    passed, failures = campaign(0xB9F, SEEDED_PROGRAMS, 24, default_workers(2))
    EXECUTED["seeded"] += passed + len(failures)
    assert not failures, f"{len(failures)} of {SEEDED_PROGRAMS} programs failed; first:\n{failures[0]}"
    assert passed == SEEDED_PROGRAMS


def test_program_count():
    """The default run really executed >= 2,000 programs on both engines (runs after the two above)."""
    if EXECUTED["seeded"] == 0 or EXECUTED["hypothesis"] == 0:
        pytest.skip("the fuzz tests were not selected in this run")
    total = EXECUTED["hypothesis"] + EXECUTED["seeded"]
    assert EXECUTED["hypothesis"] >= HYPOTHESIS_EXAMPLES // 2, EXECUTED
    assert total >= 2000, EXECUTED


@pytest.mark.slow
def test_fuzz_slow():
    count = int(os.environ.get("BPFJIT_SLOW_PROGRAMS", "50000"))
    seed = int(os.environ.get("BPFJIT_SLOW_SEED", "0"), 0) or random.SystemRandom().getrandbits(32)
    passed, failures = campaign(seed, count, 64, default_workers(os.cpu_count() or 1))
    EXECUTED["slow"] += passed + len(failures)
    assert not failures, (f"campaign seed {seed:#x} (BPFJIT_SLOW_SEED): {len(failures)} of {count} programs "
                          f"failed; first:\n{failures[0]}")


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(rnd=st.randoms(use_true_random=False), size=st.integers(4, 48))
def test_fuzz_hypothesis_slow(rnd, size):
    insns, mem = random_case(rnd, size)
    check_program(insns, mem)

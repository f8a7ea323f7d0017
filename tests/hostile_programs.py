"""Hostile BPF programs for the verifier fuzzer (tests/test_verifier_fuzz.py), and what they run on.

The verifier is the security boundary: the JIT compiles a program it accepts with no run-time
memory checks. So the programs here are built to sit on the edge of its rules, where a wrong
bound or a wrongly dead branch turns into a host crash: pointer arithmetic on every pointer kind
with constant and variable (bounded or unbounded) offsets, bounds checks that are right, off by
one, on the wrong register or width (JMP vs JMP32, signed vs unsigned), every access size at
random offsets, spills and fills (narrow ones too), missing NULL checks, packet checks right and
wrong, reads of uninitialised registers and stack, division, 32-bit ALU on pointers, loops,
bpf-to-bpf calls, helpers with wrong argument types, writes to r10, jumps into the middle of an
ld_imm64 -- and "poison": code that is only safe if the verifier proves it dead.

A :class:`Case` is fully determined by its seed, so the parent process (which verifies and
interprets) and the child that runs the JIT rebuild the same program and the same maps. Every
case runs against :class:`Maps`: an array map, a hash map and a one-entry array used as global
data, with contents drawn from the seed.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Callable, Sequence

from test_fuzz_diff import CallLocal, Generator as ValidGenerator, Jump, Label, link

from bpfjit import isa
from bpfjit.errors import BPFRuntimeError
from bpfjit.isa import Insn
from bpfjit.object import Object
from bpfjit.program import Program
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import Map, MapSpec, create_map
from bpfjit.runtime.run_memory import network_header_shortfall
from bpfjit.runtime.stdhelpers import standard_helpers

PROGRAM_TYPES = ("raw", "xdp", "socket", "tc")
RAW_MEM = 64  # a raw program's memory; its accesses through r1 stay inside it (see raw_source)
PACKET_MIN, PACKET_MAX = 14, 96
ARRAY_VALUE, HASH_VALUE, GLOBAL_VALUE = 48, 16, 64
# (name, type, key size, value size, entries); a program names map i as ld_imm64 src=1 imm=i.
MAP_SPECS = (("array", MapType.ARRAY, 4, ARRAY_VALUE, 4), ("hash", MapType.HASH, 8, HASH_VALUE, 8),
             ("global", MapType.ARRAY, 4, GLOBAL_VALUE, 1))
ARRAY, HASH, GLOBAL = range(3)
VALUE_SIZES = {ARRAY: ARRAY_VALUE, HASH: HASH_VALUE, GLOBAL: GLOBAL_VALUE}
MAP_LOOKUP, MAP_UPDATE, MAP_DELETE, PROBE_READ_KERNEL, LOOP = 1, 2, 3, 113, 181
SIZES = (isa.B, isa.H, isa.W, isa.DW)
COND_OPS = (isa.JEQ, isa.JNE, isa.JGT, isa.JGE, isa.JLT, isa.JLE, isa.JSGT, isa.JSGE, isa.JSLT, isa.JSLE,
            isa.JSET)
ALU_OPS = (isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.MOD, isa.OR, isa.AND, isa.LSH, isa.RSH, isa.ARSH, isa.XOR,
           isa.NEG, isa.MOV, isa.END)
POISON_ADDRESS = 0x4141_4141_4141_4141  # what poison code writes through: never mapped
# Registers of the hostile body: r6 = ctx (raw: its memory), r7 = packet start (raw: length),
# r8 = packet end, r9 = the array map's value 0; r0-r5 are scratch.
CTX, PKT, PKT_END, VALUE = 6, 7, 8, 9
# Context fields a program may read as data, per type: (offset, size).
CTX_SCALARS = {"xdp": ((12, 4), (16, 4)), "socket": ((0, 4), (8, 4), (32, 4), (48, 4), (52, 4), (64, 4)),
               "tc": ((0, 4), (8, 4), (32, 4), (48, 4), (56, 4), (60, 4))}
PACKET_FIELDS = {"xdp": (0, 4), "tc": (76, 80)}  # where data and data_end are in the ctx
# ctx bytes a tc / socket test run takes from the user: mark, priority, cb[5].
CTX_INPUTS = ((8, 4), (32, 4), (48, 20))
INTERESTING = (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 47, 48, 49, 63, 64, 127, 128, 255, 256, 511, 512,
               0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, -0x8000_0000, -1, -2, -8, -16, -48, -64, -512, -513)


@dataclass(frozen=True)
class Case:
    """One program and the inputs it runs on; everything follows from (seed, kind)."""
    seed: int
    kind: str  # "hostile" or "mutated: <what changed>"
    prog_type: str
    code: bytes  # bytecode, as a loader gets it: it may not even decode
    inputs: tuple[bytes, ...]  # data of each run (raw: the memory; else the packet)
    ctx: bytes | None  # tc and socket: the __sk_buff input fields
    map_seed: int

    @property
    def name(self) -> str:
        return f"case-{self.seed:#x}"


# --- the maps every case runs against --------------------------------------------------------------

class Maps:
    """The three maps of a case, refillable to the same contents before every run."""

    def __init__(self) -> None:
        self.maps: list[Map] = [create_map(MapSpec(name, t, k, v, n)) for name, t, k, v, n in MAP_SPECS]

    def fill(self, seed: int) -> None:
        rnd = random.Random(seed)
        array, hashmap, global_ = self.maps
        for index in range(array.max_entries):
            array[index] = _data_bytes(rnd, ARRAY_VALUE)
        hashmap.clear()
        for key in range(4):
            hashmap[key.to_bytes(8, "little")] = _data_bytes(rnd, HASH_VALUE)
        global_[0] = _data_bytes(rnd, GLOBAL_VALUE)

    def dump(self) -> list:
        """Every map's elements, to compare the engines' effects."""
        return [sorted(m.items()) for m in self.maps]

    def environment(self) -> Environment:
        regions = [region for m in self.maps for region in m.regions()]
        return Environment(standard_helpers(lambda line: None), regions, self._resolve,
                           array_map=Object._array_layout, hash_map=Object._hash_layout)

    def _resolve(self, insn: Insn, index: int) -> int:
        if not 0 <= insn.imm < len(self.maps):
            return 0  # no such map: the verifier says so
        m = self.maps[insn.imm]
        if insn.src in (isa.PSEUDO_MAP_VALUE, isa.PSEUDO_MAP_IDX_VALUE):  # arrays only, as in libbpf
            return m.value_address(0) + insn.next_imm if m.map_type == MapType.ARRAY else 0
        return m.handle


def build(case: Case, maps: Maps, verify: bool = True) -> Program:
    """The case's program on these maps (decoded and verified first; DecodeError, ProgramError or
    VerifierError when it is not a program the verifier accepts)."""
    return Program(isa.decode(case.code), maps.environment(), case.name, case.prog_type, verify=verify)


def _data_bytes(rnd: random.Random, size: int) -> bytes:
    """Input bytes biased towards the values bounds checks trip over."""
    out = bytearray()
    while len(out) < size:
        pick = rnd.random()
        if pick < 0.5:
            out.append(rnd.getrandbits(8))
        elif pick < 0.8:
            out.append(rnd.choice((0, 0xFF, 0x80, 0x7F, 1, 0x2F, 0x30, 0x31, 0x3F, 0x40)))
        else:
            out += rnd.choice((0, 1, 47, 48, 63, 64, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF)).to_bytes(4, "little")
    return bytes(out[:size])


def _inputs(rnd: random.Random, prog_type: str, runs: int) -> tuple[tuple[bytes, ...], bytes | None]:
    if prog_type == "raw":
        data = tuple(_data_bytes(rnd, RAW_MEM) for _ in range(runs))
    else:
        data = tuple(_data_bytes(rnd, rnd.randint(PACKET_MIN, PACKET_MAX)) for _ in range(runs))
    ctx = None
    if prog_type in ("tc", "socket"):  # frames the kernel's skb test run takes: any network header they announce
        data = tuple(frame + _data_bytes(rnd, network_header_shortfall(frame)) for frame in data)
        image = bytearray(192)
        for off, size in CTX_INPUTS:
            image[off:off + size] = _data_bytes(rnd, size)
        ctx = bytes(image)
    return data, ctx


# --- the hostile generator -----------------------------------------------------------------------

def _alu(op: int, dst: int, imm: int = 0, is64: bool = True, off: int = 0) -> Insn:
    return Insn((isa.ALU64 if is64 else isa.ALU) | op | isa.K, dst, 0, off, imm)


def _alux(op: int, dst: int, src: int, is64: bool = True, off: int = 0) -> Insn:
    return Insn((isa.ALU64 if is64 else isa.ALU) | op | isa.X, dst, src, off)


def _ldx(size: int, dst: int, src: int, off: int, signed: bool = False) -> Insn:
    return Insn(isa.LDX | (isa.MEMSX if signed else isa.MEM) | size, dst, src, off)


def _stx(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(isa.STX | isa.MEM | size, dst, src, off)


def _st(size: int, dst: int, off: int, imm: int) -> Insn:
    return Insn(isa.ST | isa.MEM | size, dst, 0, off, imm)


def _call(helper: int) -> Insn:
    return Insn(isa.CALL_OP, 0, 0, 0, helper)


def map_fd(dst: int, index: int) -> list[Insn]:
    return [Insn(isa.LDDW, dst, isa.PSEUDO_MAP_FD, 0, index), Insn(0)]


EXIT = Insn(isa.EXIT_OP)


class HostileGenerator:
    """Random programs a verifier must judge; see the module docstring."""

    def __init__(self, rnd: random.Random, prog_type: str):
        self.rnd = rnd
        self.prog_type = prog_type
        self.labels = 0
        self.tail: list = []  # code placed after the main exit (poison, subprograms)
        self.has_packet = prog_type in PACKET_FIELDS
        self.packet_room = 0  # bytes past the packet start the prologue proved

    def label(self) -> str:
        self.labels += 1
        return f"H{self.labels}"

    def chance(self, p: float) -> bool:
        return self.rnd.random() < p

    def imm(self) -> int:
        if self.chance(0.7):
            return self.rnd.choice(INTERESTING)
        return isa.s32(self.rnd.getrandbits(32)) if self.chance(0.3) else self.rnd.randrange(-70, 70)

    def size(self) -> int:
        return self.rnd.choice(SIZES)

    # --- a whole program ----------------------------------------------------------------------------
    def program(self) -> list[Insn]:
        out = self.prologue()
        for _ in range(self.rnd.choice((1, 1, 1, 1, 2, 3))):
            out += self.rnd.choices(self.SNIPPETS, self.WEIGHTS)[0](self)
        out += self.epilogue()
        return _assemble(out + self.tail)

    def prologue(self) -> list:
        """r6 = ctx, r9 = the array's value 0 (looked up and NULL-checked), the packet bounds."""
        out: list = [_alux(isa.MOV, CTX, 1)]
        if self.prog_type == "raw":
            out.append(_alux(isa.MOV, PKT, 2))
        out += [_st(isa.W, 10, -4, self.rnd.choice((0, 0, 1, 3))), *map_fd(1, ARRAY),
                _alux(isa.MOV, 2, 10), _alu(isa.ADD, 2, -4), _call(MAP_LOOKUP)]
        found = self.label()
        out += [Jump(isa.JMP | isa.JNE | isa.K, found, 0), EXIT, Label(found), _alux(isa.MOV, VALUE, 0)]
        if self.has_packet:
            data, end = PACKET_FIELDS[self.prog_type]
            out += [_ldx(isa.W, PKT, CTX, data), _ldx(isa.W, PKT_END, CTX, end)]
            if self.chance(0.8):
                ok = self.label()
                self.packet_room = self.rnd.choice((8, 14, 32, 64))
                out += [_alux(isa.MOV, 1, PKT), _alu(isa.ADD, 1, self.packet_room),
                        Jump(isa.JMP | isa.JLE | isa.X, ok, 1, PKT_END), _alu(isa.MOV, 0, 2), EXIT, Label(ok)]
        return out

    def epilogue(self) -> list:
        r = self.rnd.randrange(3)
        if r == 0:
            return [_alu(isa.MOV, 0, self.rnd.randrange(4)), EXIT]
        if r == 1:
            return [_ldx(isa.DW, 0, VALUE, 8 * self.rnd.randrange(ARRAY_VALUE // 8)), EXIT]
        return [_alux(isa.MOV, 0, self.rnd.randrange(6)), EXIT]  # maybe not initialised

    # --- data the verifier does not know -----------------------------------------------------------
    def scalar(self, dst: int) -> list:
        """dst = a value from the run's input (map value, packet, ctx field, raw memory)."""
        r = self.rnd.random()
        size = self.size()
        width = isa.SIZE_BYTES[size]
        signed = size != isa.DW and self.chance(0.2)
        if r < 0.4:
            return [_ldx(size, dst, VALUE, self.rnd.randrange(ARRAY_VALUE - width + 1), signed)]
        if r < 0.6 and self.prog_type == "raw":
            return [_ldx(size, dst, CTX, self.rnd.randrange(RAW_MEM - width + 1), signed)]
        if r < 0.6 and self.has_packet and (self.packet_room >= width or self.chance(0.1)):
            return [_ldx(size, dst, PKT, self.rnd.randrange(max(self.packet_room, 16) - width + 1), signed)]
        if r < 0.8 and self.prog_type in CTX_SCALARS:
            off, _ = self.rnd.choice(CTX_SCALARS[self.prog_type])
            return [_ldx(isa.W, dst, CTX, off)]
        return [*isa.lddw(dst, self.imm() & isa.MASK64)] if self.chance(0.5) else [_alu(isa.MOV, dst, self.imm())]

    def alu_chain(self, dst: int, steps: int) -> list:
        """A few random ALU operations on dst (the tnum and bounds rules under test)."""
        out: list = []
        for _ in range(steps):
            op = self.rnd.choice(ALU_OPS)
            is64 = self.chance(0.6)
            if op == isa.NEG:
                out.append(_alu(isa.NEG, dst, 0, is64))
            elif op == isa.END:
                out.append(Insn((isa.ALU64 if is64 else isa.ALU | self.rnd.choice((isa.K, isa.X))) | isa.END, dst,
                                imm=self.rnd.choice((16, 32, 64))))
            elif op == isa.MOV:
                off = self.rnd.choice((0, 8, 16, 32) if is64 else (0, 8, 16))
                out.append(_alux(isa.MOV, dst, dst, is64, off))
            elif self.chance(0.35):
                other = 5 if dst != 5 else 4
                out += self.scalar(other) + [_alux(op, dst, other, is64, self.divmod_off(op))]
            else:
                if op in (isa.LSH, isa.RSH, isa.ARSH):
                    imm = self.rnd.randrange(64 if is64 else 32) if self.chance(0.95) else self.rnd.choice((64, 32, -1))
                elif op == isa.AND:
                    imm = self.rnd.choice((0x7, 0xF, 0x1F, 0x2F, 0x3F, 0x7F, 0xFF, 0xFFF, -8, 0x7FFF_FFFF, -1))
                else:
                    imm = self.imm()
                out.append(_alu(op, dst, imm, is64, self.divmod_off(op)))
        return out

    def divmod_off(self, op: int) -> int:
        return int(op in (isa.DIV, isa.MOD) and self.chance(0.3))  # sdiv / smod

    def check(self, reg: int, target: str, limit: int) -> list:
        """if reg <op> K goto target: a bounds check around `limit`, right or wrong."""
        cls = isa.JMP32 if self.chance(0.25) else isa.JMP
        op = self.rnd.choice(COND_OPS) if self.chance(0.3) else self.rnd.choice((isa.JGT, isa.JGE, isa.JSGT,
                                                                                 isa.JSGE))
        if self.chance(0.2):
            other = 4 if reg != 4 else 5
            return self.scalar(other) + [Jump(cls | op | isa.X, target, reg, other)]
        k = limit + self.rnd.choice((-2, -1, -1, 0, 0, 0, 1)) if self.chance(0.85) else self.imm()
        return [Jump(cls | op | isa.K, target, reg, imm=k)]

    # --- pointers -------------------------------------------------------------------------------------
    def base(self, dst: int) -> tuple[list, int]:
        """dst = some pointer, and the number of bytes past it that are safe (a guess for the
        stack, where it is the distance to the frame's top)."""
        choices = ["value", "stack", "ctx"] + ["packet"] * 2 * self.has_packet + ["global"]
        pick = self.rnd.choice(choices)
        if pick == "value":
            return [_alux(isa.MOV, dst, VALUE)], ARRAY_VALUE
        if pick == "stack":
            off = -8 * self.rnd.randint(1, 64)
            return [_alux(isa.MOV, dst, 10), _alu(isa.ADD, dst, off)], -off
        if pick == "packet":
            return [_alux(isa.MOV, dst, PKT)], 14
        if pick == "global":
            off = self.rnd.choice((0, 8, 60, 64))
            return [Insn(isa.LDDW, dst, isa.PSEUDO_MAP_VALUE, 0, GLOBAL, off), Insn(0, imm=off)], GLOBAL_VALUE - off
        if self.prog_type == "raw":  # a raw program's memory is unchecked: keep it off var offsets
            return [_alux(isa.MOV, dst, VALUE)], ARRAY_VALUE
        return [_alux(isa.MOV, dst, CTX)], 4

    def access(self, ptr: int, off: int, size: int, value: int = VALUE) -> list:
        """One load, store or atomic at [ptr + off]; a store writes a new scalar or `value`."""
        r = self.rnd.random()
        if r < 0.4:
            return [_ldx(size, 0, ptr, off, size != isa.DW and self.chance(0.2))]
        if r < 0.6:
            return [_st(size, ptr, off, self.imm())]
        if r < 0.85:
            if self.chance(0.8):
                return [_alu(isa.MOV, 0, self.imm()), _stx(size, ptr, 0, off)]
            return [_stx(size, ptr, value, off)]
        size = self.rnd.choice((isa.W, isa.DW))
        imm = self.rnd.choice((isa.ADD, isa.ADD | isa.FETCH, isa.XCHG, isa.CMPXCHG, isa.OR))
        return [_alu(isa.MOV, 3, 1), Insn(isa.STX | isa.ATOMIC | size, ptr, 3, off, imm)]

    def observe(self, reg: int) -> list:
        """Store reg into the map value, so a wrong value shows in the maps after the run."""
        return [_stx(isa.DW, VALUE, reg, 8 * self.rnd.randrange(ARRAY_VALUE // 8))]

    # --- snippets -----------------------------------------------------------------------------------
    def var_access(self) -> list:
        """A pointer moved by a computed scalar, bounds-checked (or not), then dereferenced."""
        skip = self.label()
        out = self.scalar(3) + self.alu_chain(3, self.rnd.randint(0, 3))
        if self.chance(0.3):
            out += self.scalar(4)
        size = self.size()
        base, room = self.base(2)
        if self.chance(0.3):  # the kernel's advice: var &= const
            out.append(_alu(isa.AND, 3, self.rnd.choice((7, 15, 31, 63, 0xFF)), self.chance(0.7)))
        for _ in range(self.rnd.choice((0, 1, 1, 1, 2))):
            out += self.check(3, skip, room - isa.SIZE_BYTES[size])
        out += base
        r = self.rnd.random()
        if r < 0.7:
            out.append(_alux(isa.ADD, 2, 3))
        elif r < 0.85:
            out.append(_alux(isa.SUB, 2, 3))
        else:
            out += [_alux(isa.ADD, 3, 2), _alux(isa.MOV, 2, 3)]  # scalar += pointer
        off = self.rnd.choice((0, 0, 0, 1, -1, 4, room - isa.SIZE_BYTES[size], -8))
        out += self.access(2, off, size) + [Label(skip)]
        return out

    def poison_branch(self) -> list:
        """if <computed> goto poison, where poison is only safe when the verifier proves the
        branch never taken (a wrong proof runs it: a write through a wild pointer)."""
        poison = self.label()
        out = self.scalar(3) + self.alu_chain(3, self.rnd.randint(1, 3))
        bound = self.rnd.choice((1, 7, 0xF, 0x3F, 0xFF, 0xFFFF, 0x7FFF_FFFF))
        if self.chance(0.7):  # a bound the verifier can know, and a check it may prove dead
            out.append(_alu(isa.AND, 3, bound, self.chance(0.6)))
            cls = isa.JMP32 if self.chance(0.3) else isa.JMP
            op, k = self.rnd.choice(((isa.JGT, bound), (isa.JGE, bound + 1), (isa.JSGT, bound), (isa.JLT, 0),
                                     (isa.JSLT, 0), (isa.JEQ, bound + 1), (isa.JGT, bound - 1), (isa.JSET, bound + 1),
                                     (isa.JSGE, bound), (isa.JLE, -1)))
            out.append(Jump(cls | op | isa.K, poison, 3, imm=k))
        else:
            out += self.check(3, poison, bound)
        self.tail += [Label(poison), *isa.lddw(1, POISON_ADDRESS), _stx(isa.DW, 1, 1, 0), _alu(isa.MOV, 0, 0), EXIT]
        return out + self.observe(3)

    def linked_copy(self) -> list:
        """Check a copy of a scalar, then use the original (or a changed copy) as an offset."""
        skip = self.label()
        out = self.scalar(3) + [_alux(isa.MOV, 4, 3, self.chance(0.7))]
        if self.chance(0.4):
            out += self.alu_chain(self.rnd.choice((3, 4)), 1)
        if self.chance(0.3):  # through a spill: the stack copy keeps the link
            out += [_stx(isa.DW, 10, 3, -16), _ldx(self.rnd.choice((isa.DW, isa.W)), 3, 10, -16)]
        out += self.check(4, skip, ARRAY_VALUE - 8)
        out += [_alux(isa.MOV, 2, VALUE), _alux(isa.ADD, 2, 3), *self.access(2, 0, isa.DW), Label(skip)]
        return out

    def packet_check(self) -> list:
        """data + N > data_end checks, right and wrong, then a packet access."""
        if not self.has_packet:
            return self.ctx_access()
        skip = self.label()
        n = self.rnd.choice((1, 2, 4, 8, 14, 20, 34))
        out: list = [_alux(isa.MOV, 2, PKT)]
        if self.chance(0.3):  # a variable offset first
            out += self.scalar(3) + self.alu_chain(3, self.rnd.randint(0, 2)) + [_alux(isa.ADD, 2, 3)]
        out += [_alux(isa.MOV, 1, 2), _alu(isa.ADD, 1, n + self.rnd.choice((0, 0, 0, -1, 1)))]
        cls = isa.JMP32 if self.chance(0.1) else isa.JMP
        end = PKT_END if self.chance(0.9) else self.rnd.choice((PKT, VALUE))
        r = self.rnd.randrange(4)
        if r == 0:
            out.append(Jump(cls | isa.JGT | isa.X, skip, 1, end))
        elif r == 1:
            out.append(Jump(cls | isa.JLT | isa.X, skip, end, 1))
        elif r == 2:
            out.append(Jump(cls | isa.JGE | isa.X, skip, 1, end))
        else:
            ok = self.label()
            out += [Jump(cls | self.rnd.choice((isa.JLE, isa.JLT)) | isa.X, ok, 1, end), Jump(isa.JA_OP, skip),
                    Label(ok)]
        size = self.size()
        off = n - isa.SIZE_BYTES[size] + self.rnd.choice((0, 0, 0, 1, -n))
        return out + self.access(2, off, size) + [Label(skip)]

    def map_lookup(self) -> list:
        """A lookup with the NULL check present, missing or wrong, then an access to the value."""
        index = self.rnd.choice((ARRAY, ARRAY, HASH, HASH, GLOBAL, 5))
        key_size = 4 if index != HASH else 8
        out: list = []
        key_off = -self.rnd.choice((8, 16, 16, 4, 512, 520))
        r = self.rnd.random()
        if r < 0.6:
            out.append(_st(isa.DW if key_size == 8 and self.chance(0.8) else isa.W, 10, key_off, self.rnd.randrange(5)))
        elif r < 0.85:
            out += self.scalar(3) + [_stx(self.rnd.choice(SIZES), 10, 3, key_off)]
        out += map_fd(1, index) if self.chance(0.9) else [_alux(isa.MOV, 1, 10)]
        out += [_alux(isa.MOV, 2, 10 if self.chance(0.9) else VALUE), _alu(isa.ADD, 2, key_off), _call(MAP_LOOKUP)]
        null = self.label()
        r = self.rnd.random()
        if r < 0.6:
            out.append(Jump(isa.JMP | isa.JEQ | isa.K, null, 0))
        elif r < 0.75:
            ok = self.label()
            out += [Jump(isa.JMP | isa.JNE | isa.K, ok, 0), Jump(isa.JA_OP, null), Label(ok)]
        elif r < 0.85:
            out.append(Jump(isa.JMP | isa.JNE | isa.K, null, 0))  # the wrong way round
        elif r < 0.9:
            out.append(Jump(isa.JMP32 | isa.JEQ | isa.K, null, 0))
        size = self.size()
        room = VALUE_SIZES.get(index, 8)
        off = self.rnd.choice((0, room - isa.SIZE_BYTES[size], room - isa.SIZE_BYTES[size] + 1, -1, 8))
        if self.chance(0.5):
            out.append(_alux(isa.MOV, 5, 0))
            if self.chance(0.3):
                out += self.scalar(4)  # not a call: r5 stays valid
            out += self.access(5, off, size)
        else:
            out += self.access(0, off, size)
        return out + [Label(null)]

    def spill_fill(self) -> list:
        """Spill a pointer or scalar (sometimes narrow, sometimes partly overwritten), fill it back
        (sometimes narrow or sign-extending), and use it as a pointer."""
        slot = -8 * self.rnd.randint(1, 8)
        src = self.rnd.choice((CTX, VALUE, 10, PKT, 3))
        out: list = self.scalar(3) if src == 3 else []
        spill = isa.DW if self.chance(0.8) else self.rnd.choice(SIZES)
        out.append(_stx(spill, 10, src, slot))
        if self.chance(0.2):
            out.append(_st(isa.B, 10, slot + self.rnd.randrange(8), 0))
        fill = isa.DW if self.chance(0.7) else self.rnd.choice(SIZES)
        out.append(_ldx(fill, 2, 10, slot, fill != isa.DW and self.chance(0.2)))
        return out + self.access(2, self.rnd.choice((0, 4, 8, -8)), self.size())

    def pointer_alu(self) -> list:
        """Operations the kernel forbids or restricts on pointers, then a dereference."""
        ptr = self.rnd.choice((CTX, VALUE, 10, PKT, PKT_END))
        out: list = [_alux(isa.MOV, 2, ptr)]
        op = self.rnd.choice(ALU_OPS)
        if self.chance(0.5):
            out.append(_alu(op, 2, self.rnd.choice((1, 8, -8, 16)), self.chance(0.6)))
        else:
            other = self.rnd.choice((CTX, VALUE, 10, 3))
            if other == 3:
                out += self.scalar(3)
            out.append(_alux(op, 2, other, self.chance(0.6)))
        if self.chance(0.5):
            return out + self.access(2, self.rnd.choice((0, -8, 8)), self.size())
        return out + self.observe(2)

    def uninitialised(self) -> list:
        r = self.rnd.random()
        if r < 0.4:  # a register no one wrote (after a call r1-r5 are unreadable)
            return [_alux(isa.ADD, 0, self.rnd.randrange(1, 6))] + self.observe(0)
        off = -8 * self.rnd.randint(30, 64) + self.rnd.choice((0, 0, 4))
        size = self.size()
        if r < 0.7:  # stack bytes never written
            return [_ldx(size, 3, 10, off)] + self.observe(3)
        return [_st(isa.W, 10, off - off % 8, 1), _ldx(isa.DW, 3, 10, off - off % 8)] + self.observe(3)

    def division(self) -> list:
        out = self.scalar(3) + self.scalar(4)
        if self.chance(0.3):
            out.append(_alu(isa.MOV, 4, self.rnd.choice((0, -1))))
        op = self.rnd.choice((isa.DIV, isa.MOD))
        is64 = self.chance(0.5)
        out.append(_alux(op, 3, 4, is64, int(self.chance(0.5))) if self.chance(0.7)
                   else _alu(op, 3, self.rnd.choice((0, 1, -1, 3, 0x7FFF_FFFF)), is64, int(self.chance(0.5))))
        return out + self.observe(3)

    def loop(self) -> list:
        """A counter loop (bounded, or not), with an access indexed by the counter."""
        top, done = self.label(), self.label()
        bound = self.rnd.choice((3, 5, 8))
        out: list = [_alu(isa.MOV, 3, 0)] if self.chance(0.8) else self.scalar(3)
        out += [Label(top), _alux(isa.MOV, 2, VALUE), _alux(isa.ADD, 2, 3),
                *self.access(2, 0, self.rnd.choice((isa.B, isa.W))),
                _alu(isa.ADD, 3, self.rnd.choice((1, 1, 4, 0)))]
        op = self.rnd.choice((isa.JLT, isa.JNE, isa.JLE, isa.JSLT))
        cls = self.rnd.choice((isa.JMP, isa.JMP32))
        out.append(Jump(cls | op | isa.K, top, 3, imm=bound * self.rnd.choice((1, 4))))
        return out + [Label(done)]

    def subprogram_call(self) -> list:
        """A bpf-to-bpf call handing over a pointer (to the caller's stack, the map value, the
        ctx) or a scalar; the callee uses it hostilely and returns."""
        name = self.label()
        arg = self.rnd.choice((10, VALUE, CTX, 3))
        out: list = self.scalar(3) if arg == 3 else []
        out += [_alux(isa.MOV, 1, arg)]
        if arg == 10:
            out += [_st(isa.DW, 10, -8, 7), _alu(isa.ADD, 1, -8)]
        out += [CallLocal(name), *self.observe(0)]
        callee = [Label(name)]
        if self.chance(0.8):
            callee += self.scalar(0) if self.chance(0.3) else [_alu(isa.MOV, 0, 1)]
        size = self.size()
        callee += self.access(1, self.rnd.choice((0, 0, 4, -8, 8)), size, value=1)
        if self.chance(0.2):
            callee += [_alux(isa.MOV, 0, 10)]  # returning its own stack
        callee.append(EXIT)
        self.tail += callee
        return out

    def helper_args(self) -> list:
        """map_update / map_delete / probe_read / bpf_loop with arguments of the right or wrong kind."""
        helper = self.rnd.choice((MAP_UPDATE, MAP_DELETE, PROBE_READ_KERNEL, LOOP))
        out: list = []
        if helper == LOOP:
            name = self.label()
            out += [_alu(isa.MOV, 1, self.rnd.choice((1, 3, 0))), FuncAddress(2, name),
                    _alux(isa.MOV, 3, self.rnd.choice((10, VALUE, 0))), _alu(isa.MOV, 4, 0), _call(LOOP)]
            callback = [Label(name), _alux(isa.MOV, 0, self.rnd.choice((1, 2)))]
            if self.chance(0.5):
                callback += self.access(2, 0, self.size())
            callback += [_alu(isa.MOV, 0, self.rnd.choice((0, 1, 2))), EXIT]
            self.tail += callback
            return out + self.observe(0)
        if helper == PROBE_READ_KERNEL:
            out += [_alux(isa.MOV, 1, self.rnd.choice((10, VALUE))), _alu(isa.ADD, 1, self.rnd.choice((-16, 0, 8)))]
            out += self.scalar(2) + self.alu_chain(2, self.rnd.randint(0, 2))
            out += [_alux(isa.MOV, 3, VALUE), _call(PROBE_READ_KERNEL)]
            return out + self.observe(0)
        key = -self.rnd.choice((8, 16, 4, 0))
        out += [_st(isa.DW, 10, -8, self.rnd.randrange(6))] if self.chance(0.8) else []
        out += map_fd(1, self.rnd.choice((HASH, ARRAY, GLOBAL))) if self.chance(0.9) else [_alux(isa.MOV, 1, CTX)]
        out += [_alux(isa.MOV, 2, 10), _alu(isa.ADD, 2, key)]
        if helper == MAP_UPDATE:
            out += [_alux(isa.MOV, 3, self.rnd.choice((VALUE, VALUE, 10, CTX))), _alu(isa.MOV, 4, 0)]
        return out + [_call(helper)] + self.observe(0)

    def frame_pointer(self) -> list:
        """Writes to r10 (the kernel: "frame pointer is read only")."""
        return [self.rnd.choice((_alu(isa.ADD, 10, -8), _alux(isa.MOV, 10, VALUE), _ldx(isa.DW, 10, VALUE, 0),
                                 _alu(isa.MOV, 10, 0, False)))]

    def ld_imm64_middle(self) -> list:
        """A jump into the second slot of an ld_imm64."""
        after = self.label()
        return self.scalar(3) + [Jump(isa.JMP | isa.JEQ | isa.K, after, 3, imm=0), *isa.lddw(4, POISON_ADDRESS),
                                 Label(after)] + [MidJump()]

    def ctx_access(self) -> list:
        """Context loads and stores at random offsets and sizes, maybe through a moved ctx pointer."""
        ptr = CTX
        out: list = []
        if self.chance(0.2):
            out += [_alux(isa.MOV, 2, CTX), _alu(isa.ADD, 2, self.rnd.choice((4, 8, -4)))]
            ptr = 2
        size = self.size()
        off = self.rnd.choice((0, 4, 8, 12, 16, 20, 24, 32, 48, 52, 66, 68, 76, 80, 140, 168, 192, -4))
        if self.prog_type in CTX_SCALARS and self.chance(0.6):
            off, size = self.rnd.choice(CTX_SCALARS[self.prog_type])[0], isa.W
        if self.prog_type == "raw":
            off = min(abs(off), RAW_MEM - isa.SIZE_BYTES[size])  # in bounds (see module docstring)
        return out + self.access(ptr, off, size)

    SNIPPETS: Sequence[Callable] = (var_access, poison_branch, linked_copy, packet_check, map_lookup, spill_fill,
                                    pointer_alu, uninitialised, division, loop, subprogram_call, helper_args,
                                    frame_pointer, ld_imm64_middle, ctx_access)
    WEIGHTS = (14, 10, 6, 8, 8, 5, 4, 2, 3, 3, 4, 4, 1, 1, 3)


@dataclass(frozen=True)
class FuncAddress:
    """ld_imm64 dst = the address of the function at label (src=PSEUDO_FUNC), resolved by _assemble."""
    dst: int
    label: str


@dataclass(frozen=True)
class MidJump:
    """Marks where a jump should have landed inside the preceding ld_imm64 (see _assemble)."""


def _assemble(entries: list) -> list[Insn]:
    """link() plus what it does not know: function addresses, and jumps aimed at the middle of an
    ld_imm64 (the label before a MidJump is moved one slot back, onto the ld_imm64's second slot)."""
    plain: list = []
    for entry in entries:
        if isinstance(entry, FuncAddress):
            plain += [Jump(isa.LDDW, entry.label, entry.dst), Insn(0)]
        elif isinstance(entry, MidJump):
            label = plain.pop(-1) if isinstance(plain[-1], Label) else None
            if label is not None:  # after [lddw a, lddw b, Label]: put the label between them
                plain.insert(len(plain) - 1, label)
        else:
            plain.append(entry)
    insns = link(plain)
    out = []
    for insn in insns:
        if insn.opcode == isa.LDDW and insn.off:  # a FuncAddress: link() put the relative target in off
            out.append(Insn(isa.LDDW, insn.dst, isa.PSEUDO_FUNC, 0, insn.off))
        else:
            out.append(insn)
    return out


# --- cases -----------------------------------------------------------------------------------------

RUNS_PER_CASE = 2  # inputs each accepted program runs on
MUTATED_SHARE = 0.3


def make_case(seed: int) -> Case:
    """The case of a seed: a hostile program, or a valid one with one field of one instruction changed."""
    rnd = random.Random(seed)
    prog_type = rnd.choice(PROGRAM_TYPES)
    if rnd.random() < MUTATED_SHARE:
        if rnd.random() < 0.4:
            prog_type = "raw"
            insns = ValidGenerator(rnd, rnd.randint(4, 16)).program()
        else:
            insns = HostileGenerator(rnd, prog_type).program()
        insns, kind = mutate(rnd, insns)
    else:
        insns, kind = HostileGenerator(rnd, prog_type).program(), "hostile"
    inputs, ctx = _inputs(rnd, prog_type, RUNS_PER_CASE)
    return Case(seed, kind, prog_type, isa.encode(insns), inputs, ctx, rnd.getrandbits(32))


FIELDS = ("opcode", "dst", "src", "off", "imm", "size")


def mutate(rnd: random.Random, insns: list[Insn]) -> tuple[list[Insn], str]:
    """Change one field of one instruction (a register stays below 16 and an opcode a byte, so
    the result still encodes; it need not decode)."""
    index = rnd.randrange(len(insns))
    insn = insns[index]
    field = rnd.choice(FIELDS)
    if field == "opcode":
        new = insn.opcode ^ (1 << rnd.randrange(8)) if rnd.random() < 0.7 else rnd.getrandbits(8)
        changed = Insn(new, insn.dst, insn.src, insn.off, insn.imm, insn.next_imm)
    elif field in ("dst", "src"):
        value = rnd.randrange(11) if rnd.random() < 0.9 else rnd.randrange(16)
        changed = Insn(insn.opcode, value, insn.src, insn.off, insn.imm, insn.next_imm) if field == "dst" \
            else Insn(insn.opcode, insn.dst, value, insn.off, insn.imm, insn.next_imm)
    elif field == "off":
        value = rnd.choice((insn.off + 1, insn.off - 1, insn.off + 8, insn.off - 8, -insn.off,
                            rnd.randrange(-600, 600)))
        changed = Insn(insn.opcode, insn.dst, insn.src, max(-0x8000, min(0x7FFF, value)), insn.imm, insn.next_imm)
    elif field == "imm":
        value = rnd.choice((insn.imm + 1, insn.imm - 1, insn.imm ^ (1 << rnd.randrange(32)), rnd.choice(INTERESTING)))
        changed = Insn(insn.opcode, insn.dst, insn.src, insn.off, isa.s32(value), insn.next_imm)
    else:  # the size bits of a memory instruction, or the width of anything else
        changed = Insn(insn.opcode ^ rnd.choice((0x08, 0x10, 0x18)), insn.dst, insn.src, insn.off, insn.imm,
                       insn.next_imm)
    out = list(insns)
    out[index] = changed
    return out, f"mutated: insn {index} {field} {insn} -> {changed}"


# --- running a case --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """What one run of a program did: its result and effects, or the class of error it raised."""
    retval: int | None
    data_out: bytes | None
    ctx_out: bytes | None
    maps: list | None
    error: str | None = None  # the BPFRuntimeError's reason (the engines need not word it alike)
    error_at: int | None = None  # the instruction it names

    def __str__(self) -> str:
        if self.error is not None:
            return f"raised at insn {self.error_at}: {self.error}"
        return f"r0={self.retval:#x} data={self.data_out.hex()} ctx={(self.ctx_out or b'').hex()} maps={self.maps}"

    def agrees(self, other: "Outcome") -> bool:
        if self.error is not None or other.error is not None:
            return self.error is not None and other.error is not None
        return (self.retval, self.data_out, self.ctx_out, self.maps) == \
            (other.retval, other.data_out, other.ctx_out, other.maps)


def run_once(prog: Program, maps: Maps, case: Case, data: bytes, engine: str,
             max_steps: int | None = None) -> Outcome:
    """One run from freshly filled maps; a BPFRuntimeError is an outcome, not a failure."""
    maps.fill(case.map_seed)
    try:
        result = prog.test_run(data, case.ctx, engine=engine, max_steps=max_steps)
    except BPFRuntimeError as error:
        return Outcome(None, None, None, None, error.reason, error.index)
    return Outcome(result.retval, result.data_out, result.ctx_out, maps.dump())


READY = -1  # a JIT child's first message: it has started


def jit_child(conn, jobs: list[tuple[Case, tuple[int, ...]]]) -> None:
    """In a child process: verify and JIT each case again, run it on the inputs asked for, and
    send (position, outcomes) after each one, so the parent knows which case killed or hung us."""
    os.environ["BPFJIT_CACHE"] = "off"
    maps = Maps()
    conn.send(READY)
    for position, (case, runs) in enumerate(jobs):
        prog = build(case, maps)
        outcomes = [run_once(prog, maps, case, case.inputs[i], "jit") for i in runs]
        prog.compile().close()
        conn.send((position, outcomes))
    conn.close()


def side_by_side_child(conn, case: Case, run: int) -> None:
    """In a child process: the case's run on the reference interpreter, then on the JIT, both on
    the same maps at the same addresses; sends both outcomes. A program that leaks an address (a
    pointer's byte stored, two regions' pointers compared) can differ between the parent's
    interpreter and a JIT child only because their maps lie elsewhere: here they do not."""
    os.environ["BPFJIT_CACHE"] = "off"
    maps = Maps()
    prog = build(case, maps)
    conn.send([run_once(prog, maps, case, case.inputs[run], engine) for engine in ("reference", "jit")])
    conn.close()

"""Malformed bytecode never crashes bpfjit: it only ever raises BPFError subclasses.

For any byte string:

* ``isa.decode`` returns instructions or raises ``DecodeError`` whose message starts with
  ``insn N:`` (N a slot index of the input);
* ``Program.from_bytes(..., verify=False)`` returns a program or raises ``DecodeError`` /
  ``ProgramError``, again naming the instruction (these inputs test the structure checks, which run
  before and without the verifier; the verifier rejects nearly all of them);
* a program that loads runs on the interpreter (bounded by ``max_steps``) to an int or a
  ``BPFError`` -- out-of-bounds memory accesses are caught by the interpreter's region checks;
* a program that loads compiles (``prog.compile()``) or raises a ``BPFError``. Random bytecode is
  run jitted (sandboxed) only in child processes, by tests/test_sandbox.py.

One test repeats the random-bytes check in a child process to prove the process survives.
"""
from __future__ import annotations

import random
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfjit import disasm, isa
from bpfjit.errors import BPFError, DecodeError, JITError, ProgramError
from bpfjit.isa import Insn
from bpfjit.program import Program
from bpfjit.runtime.helpers import HelperRegistry, unwind_helper

TESTS_DIR = Path(__file__).resolve().parent
INSN_MESSAGE = re.compile(r"^insn (\d+): \S")
MEM = bytes(range(64))
MAX_STEPS = 10_000


def _slot(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One raw slot; registers may be 11..15 here (isa.encode would accept them too)."""
    return isa.encode([Insn(opcode, dst, src, off, imm)])


EXIT = _slot(isa.EXIT_OP)
MOV_R0_0 = _slot(isa.ALU64 | isa.MOV | isa.K, 0)
MOV_R0_1 = _slot(isa.ALU64 | isa.MOV | isa.K, 0, imm=1)


def lddw_bytes(dst: int, value: int, src: int = 0) -> bytes:
    return isa.encode(isa.lddw(dst, value, src))


# --- the checks every input goes through ----------------------------------------------------------

class Outcome:
    """What happened to one input (counted so the tests can prove they exercised each stage)."""

    def __init__(self) -> None:
        self.decoded = self.loaded = self.ran = self.run_ok = self.compiled = 0
        self.jit_errors: list[str] = []

    def __repr__(self) -> str:
        return (f"decoded={self.decoded} loaded={self.loaded} ran={self.ran} run_ok={self.run_ok} "
                f"compiled={self.compiled} jit_errors={len(self.jit_errors)}")


def check_named(exc: BaseException, slots: int, code: bytes) -> None:
    """A DecodeError / ProgramError names an instruction index inside the input."""
    match = INSN_MESSAGE.match(str(exc))
    assert match, f"{type(exc).__name__} does not name the instruction: {exc!s} (input {code.hex()})"
    index = int(match.group(1))
    assert index == exc.index, f"message index {index} != .index {exc.index}: {exc}"
    assert 0 <= index <= slots, f"index {index} outside the {slots}-slot input: {exc} (input {code.hex()})"


def load(code: bytes, helpers: HelperRegistry | None = None) -> Program | None:
    """Decode and load unverified; return the program, or None after checking the error is a proper one."""
    slots = len(code) // 8
    decode_error: DecodeError | None = None
    try:
        insns = isa.decode(code)
    except DecodeError as exc:
        check_named(exc, slots, code)
        decode_error = exc
    except Exception as exc:  # noqa: BLE001 - the point of the test
        raise AssertionError(f"isa.decode raised {type(exc).__name__}: {exc!r} on {code.hex()}") from exc
    else:
        assert isa.encode(insns) == code, f"decode/encode do not round-trip on {code.hex()}"
        assert len(insns) == slots
        try:
            disasm.disassemble(insns)
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"disassembling decodable {code.hex()} raised {exc!r}") from exc
    try:
        prog = Program.from_bytes(code, helpers=helpers, verify=False)
    except (DecodeError, ProgramError) as exc:
        check_named(exc, slots, code)
        if decode_error is not None:
            assert type(exc) is DecodeError and str(exc) == str(decode_error), (exc, decode_error)
        return None
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"Program.from_bytes raised {type(exc).__name__}: {exc!r} on {code.hex()}") from exc
    assert decode_error is None, f"from_bytes accepted what decode rejected: {code.hex()}"
    return prog


def exercise(code: bytes, outcome: Outcome, compile_every: int = 1,
             helpers: HelperRegistry | None = None) -> None:
    """The full contract for one input: load, run on the interpreter, compile (never run) on the JIT."""
    try:
        isa.decode(code)
        outcome.decoded += 1
    except DecodeError:
        pass
    prog = load(code, helpers)
    if prog is None:
        return
    outcome.loaded += 1
    outcome.ran += 1
    try:
        result = prog.test_run(MEM, engine="reference", max_steps=MAX_STEPS)
    except BPFError:
        pass
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"interpreter raised {type(exc).__name__}: {exc!r} on {code.hex()}\n"
                             f"{prog.disassemble()}") from exc
    else:
        assert isinstance(result.retval, int) and 0 <= result.retval <= isa.MASK64
        assert len(result.data_out) == len(MEM)
        outcome.run_ok += 1
    if not compile_every or outcome.loaded % compile_every:
        return
    try:
        prog.compile().close()
        outcome.compiled += 1
    except JITError as exc:  # a BPFError, but LLVM rejecting our IR is a bpfjit bug: collect it
        outcome.jit_errors.append(f"{code.hex()}: {str(exc)[:500]}")
    except BPFError:
        pass
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"compile raised {type(exc).__name__}: {exc!r} on {code.hex()}\n"
                             f"{prog.disassemble()}") from exc


# --- generators of malformed input ------------------------------------------------------------

# Opcodes the decoder knows, so that structured random programs often load and run.
KNOWN_OPCODES = sorted(
    {cls | op | src for cls in (isa.ALU, isa.ALU64) for op in range(0, 0xE0, 0x10) for src in (isa.K, isa.X)}
    | {cls | op | src for cls in (isa.JMP, isa.JMP32) for op in range(0, 0xF0, 0x10) for src in (isa.K, isa.X)}
    | {isa.LDX | mode | size for mode in (isa.MEM, isa.MEMSX) for size in isa.SIZE_BYTES}
    | {isa.ST | isa.MEM | size for size in isa.SIZE_BYTES}
    | {isa.STX | mode | size for mode in (isa.MEM, isa.ATOMIC) for size in isa.SIZE_BYTES}
    | {isa.LDDW, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50})
SPECIAL_IMMS = [0, 1, -1, 5, 8, 16, 17, 31, 32, 63, 64, 0x100, 0x110, isa.XCHG, isa.CMPXCHG, isa.FETCH, 0x41,
                0x51, 0xA1, 0x7FFF_FFFF, -0x8000_0000]


def random_slot(rnd: random.Random, count: int) -> bytes:
    """A slot that is usually, but not always, well formed; offsets often land inside the program."""
    if rnd.random() < 0.15:
        return _random_slot(rnd, count)
    for _ in range(30):  # mostly decodable slots, so that later stages get exercised too
        slot = _random_slot(rnd, count)
        opcode, regs, off, imm = struct.unpack("<BBhi", slot)
        try:
            isa.check(Insn(opcode, regs & 0xF, regs >> 4, off, imm), 0)
        except DecodeError:
            continue
        if opcode != isa.LDDW:
            return slot
    return slot


def _random_slot(rnd: random.Random, count: int) -> bytes:
    opcode = rnd.choice(KNOWN_OPCODES) if rnd.random() < 0.85 else rnd.randrange(256)

    def reg():
        return rnd.randrange(11) if rnd.random() < 0.95 else rnd.randrange(16)
    dst, src = reg(), (reg() if rnd.random() < 0.5 else 0)
    if opcode & 0x07 in (isa.ALU, isa.ALU64) and opcode & 0xF0 in (isa.DIV, isa.MOD, isa.MOV):
        off = rnd.choice((0, 0, 1, 8, 16, 32, 2))
    elif opcode & 0x07 in (isa.LDX, isa.ST, isa.STX):
        off = rnd.randrange(-520, 70)
    elif rnd.random() < 0.8:
        off = rnd.randrange(-count - 1, count + 1)
    else:
        off = isa.sign_extend(rnd.getrandbits(16), 16)
    r = rnd.random()
    if r < 0.5:
        imm = 0
    elif r < 0.8:
        imm = rnd.choice(SPECIAL_IMMS)
    elif r < 0.9:
        imm = rnd.randrange(-count - 1, count + 1)
    else:
        imm = isa.s32(rnd.getrandbits(32))
    return _slot(opcode, dst, src, off, imm)


def random_program(rnd: random.Random) -> bytes:
    count = rnd.randint(1, 16)
    code = b"".join(random_slot(rnd, count) for _ in range(count))
    if rnd.random() < 0.3:
        code = lddw_bytes(rnd.randrange(10), rnd.getrandbits(64), rnd.choice((0, 0, 0, 1, 4, 7))) + code
    if rnd.random() < 0.85:
        code += EXIT
    return code


def random_bytes(rnd: random.Random) -> bytes:
    return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200)))


def mutate(rnd: random.Random, code: bytes) -> bytes:
    """Flip bits, overwrite bytes, cut or splice a valid program."""
    data = bytearray(code)
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.randrange(5)
        if kind == 0 and data:
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        elif kind == 1 and data:
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        elif kind == 2 and data:
            del data[rnd.randrange(len(data)):]
        elif kind == 3 and len(data) >= 8:
            slot = rnd.randrange(len(data) // 8) * 8
            data[slot:slot + 8] = random_slot(rnd, len(data) // 8)
        else:
            data[rnd.randrange(len(data) + 1):0] = bytes(rnd.getrandbits(8) for _ in range(rnd.choice((1, 8))))
    return bytes(data)


def valid_program(rnd: random.Random) -> bytes:
    """A valid program from the differential fuzzer's generator (small)."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    from test_fuzz_diff import Generator  # noqa: PLC0415 - shared generator

    return isa.encode(Generator(rnd, rnd.randint(1, 6)).program())


def random_bytes_campaign(seed: int, count: int, compile_every: int = 4) -> Outcome:
    """The random-bytes / random-slots / mutation checks; also what the child process runs."""
    rnd = random.Random(seed)
    outcome = Outcome()
    for n in range(count):
        kind = n % 4
        if kind == 0:
            code = random_bytes(rnd)
        elif kind in (1, 2):
            code = random_program(rnd)
        else:
            code = mutate(rnd, valid_program(rnd))
        exercise(code, outcome, compile_every,
                 helpers=HelperRegistry([unwind_helper()]) if n % 8 == 5 else None)
    return outcome


# --- tests ----------------------------------------------------------------------------------------------

def test_random_bytes_and_slots():
    outcome = random_bytes_campaign(0x5EED, 4000)
    # Prove every stage was reached, not just the decoder's first rejection.
    assert outcome.decoded >= 600 and outcome.loaded >= 120 and outcome.run_ok >= 60, outcome
    assert outcome.compiled >= 30, outcome
    assert not outcome.jit_errors, f"LLVM rejected the IR of {len(outcome.jit_errors)} loadable programs; " \
                                   f"first: {outcome.jit_errors[0]}"


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200))
def test_hypothesis_bytes(code):
    outcome = Outcome()
    exercise(code, outcome, compile_every=0)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(KNOWN_OPCODES + list(range(256))), st.integers(0, 15),
                          st.integers(0, 15), st.integers(-40, 40),
                          st.one_of(st.sampled_from(SPECIAL_IMMS), st.integers(-(1 << 31), (1 << 31) - 1))),
                min_size=1, max_size=12),
       st.booleans())
def test_hypothesis_slots(slots, add_exit):
    code = b"".join(_slot(*s) for s in slots) + (EXIT if add_exit else b"")
    outcome = Outcome()
    exercise(code, outcome, compile_every=0)


@pytest.mark.parametrize("opcode", range(256), ids=lambda op: f"op{op:#04x}")
def test_every_opcode_byte(opcode):
    """Each opcode with random fields, alone, between valid code, and before a valid exit."""
    rnd = random.Random(opcode)
    outcome = Outcome()
    for trial in range(24):
        regs = rnd.getrandbits(8) if trial % 3 == 0 else rnd.randrange(11) | (rnd.randrange(11) << 4)
        off = rnd.choice((0, 1, -1, 2, 8, 16, 32, isa.sign_extend(rnd.getrandbits(16), 16)))
        imm = rnd.choice(SPECIAL_IMMS + [isa.s32(rnd.getrandbits(32))])
        slot = bytes([opcode, regs]) + off.to_bytes(2, "little", signed=True) + imm.to_bytes(4, "little", signed=True)
        code = [slot, slot + EXIT, MOV_R0_1 + slot + EXIT + EXIT, MOV_R0_1 + slot + lddw_bytes(0, 7) + EXIT][trial % 4]
        exercise(code, outcome, compile_every=3)
    assert not outcome.jit_errors, outcome.jit_errors[0]


# Each entry: (name, bytecode, expected exception type, expected instruction index).
REJECTED = [
    ("empty", b"", ProgramError, 0),
    ("not a multiple of 8", MOV_R0_0 + EXIT + b"\x95\x00", DecodeError, 2),
    ("3 bytes", b"\x95\x00\x00", DecodeError, 0),
    ("truncated lddw (0x18 last)", MOV_R0_0 + _slot(isa.LDDW, 1, imm=5), DecodeError, 1),
    ("truncated lddw alone", _slot(isa.LDDW), DecodeError, 0),
    ("lddw second slot with an opcode", _slot(isa.LDDW, 1) + EXIT + EXIT, DecodeError, 1),
    ("lddw second slot with a register", _slot(isa.LDDW, 1) + _slot(0, 1) + EXIT, DecodeError, 1),
    ("lddw second slot with off", MOV_R0_0 + _slot(isa.LDDW, 1) + _slot(0, off=1) + EXIT, DecodeError, 2),
    ("lddw with off", _slot(isa.LDDW, 1, off=1) + _slot(0) + EXIT, DecodeError, 0),
    ("lddw unknown pseudo source", _slot(isa.LDDW, 1, src=7) + _slot(0) + EXIT, DecodeError, 0),
    ("lddw map fd without maps", MOV_R0_0 + lddw_bytes(1, 3, src=isa.PSEUDO_MAP_FD) + EXIT, ProgramError, 1),
    ("EXIT with imm=1", MOV_R0_0 + _slot(isa.EXIT_OP, imm=1), DecodeError, 1),
    ("EXIT with dst", MOV_R0_0 + _slot(isa.EXIT_OP, 1), DecodeError, 1),
    ("EXIT with off", MOV_R0_0 + _slot(isa.EXIT_OP, off=1), DecodeError, 1),
    ("JMP32 exit", MOV_R0_0 + _slot(isa.JMP32 | isa.EXIT), DecodeError, 1),
    ("ALU K with src set", _slot(isa.ALU64 | isa.ADD | isa.K, 0, 1, imm=1) + EXIT, DecodeError, 0),
    ("ALU X with imm set", MOV_R0_0 + _slot(isa.ALU | isa.ADD | isa.X, 0, 1, imm=1) + EXIT, DecodeError, 1),
    ("ALU with off", MOV_R0_0 + _slot(isa.ALU64 | isa.ADD | isa.X, 0, 1, off=1) + EXIT, DecodeError, 1),
    ("NEG with imm", MOV_R0_0 + _slot(isa.ALU64 | isa.NEG, 0, imm=1) + EXIT, DecodeError, 1),
    ("NEG X form", MOV_R0_0 + _slot(isa.ALU64 | isa.NEG | isa.X, 0, 1) + EXIT, DecodeError, 1),
    ("NEG with src", MOV_R0_0 + _slot(isa.ALU | isa.NEG, 0, 1) + EXIT, DecodeError, 1),
    ("END with imm=17", MOV_R0_0 + _slot(isa.ALU | isa.END, 0, imm=17) + EXIT, DecodeError, 1),
    ("END with imm=0", MOV_R0_0 + _slot(isa.ALU | isa.END | isa.X, 0, imm=0) + EXIT, DecodeError, 1),
    ("bswap with imm=8", MOV_R0_0 + _slot(isa.ALU64 | isa.END, 0, imm=8) + EXIT, DecodeError, 1),
    ("ALU64 END X (0xdf)", MOV_R0_0 + _slot(isa.ALU64 | isa.END | isa.X, 0, imm=16) + EXIT, DecodeError, 1),
    ("sdiv with off=2", MOV_R0_0 + _slot(isa.ALU64 | isa.DIV | isa.X, 0, 1, off=2) + EXIT, DecodeError, 1),
    ("movsx32 in ALU", MOV_R0_0 + _slot(isa.ALU | isa.MOV | isa.X, 0, 1, off=32) + EXIT, DecodeError, 1),
    ("movsx K form", MOV_R0_0 + _slot(isa.ALU64 | isa.MOV | isa.K, 0, 0, off=8, imm=1) + EXIT, DecodeError, 1),
    ("unknown ALU op 0xe0", MOV_R0_0 + _slot(isa.ALU64 | 0xE0, 0) + EXIT, DecodeError, 1),
    ("LDX with imm", MOV_R0_0 + _slot(isa.LDX | isa.MEM | isa.W, 0, 1, imm=1) + EXIT, DecodeError, 1),
    ("LDX MEMSX DW", MOV_R0_0 + _slot(isa.LDX | isa.MEMSX | isa.DW, 0, 1) + EXIT, DecodeError, 1),
    ("ST with src", MOV_R0_0 + _slot(isa.ST | isa.MEM | isa.W, 10, 1, off=-8) + EXIT, DecodeError, 1),
    ("STX with imm", MOV_R0_0 + _slot(isa.STX | isa.MEM | isa.W, 10, 1, off=-8, imm=1) + EXIT, DecodeError, 1),
    ("atomic with a bad op", MOV_R0_0 + _slot(isa.STX | isa.ATOMIC | isa.DW, 10, 1, -8, 0x02) + EXIT,
     DecodeError, 1),
    ("atomic add on a byte", MOV_R0_0 + _slot(isa.STX | isa.ATOMIC | isa.B, 10, 1, -8, isa.ADD) + EXIT,
     DecodeError, 1),
    ("JA with imm", MOV_R0_0 + _slot(isa.JA_OP, imm=1) + EXIT, DecodeError, 1),
    ("gotol with off", MOV_R0_0 + _slot(isa.GOTOL_OP, off=1) + EXIT, DecodeError, 1),
    ("JA with dst", MOV_R0_0 + _slot(isa.JA_OP, 1) + EXIT, DecodeError, 1),
    ("JEQ K with src", MOV_R0_0 + _slot(isa.JMP | isa.JEQ | isa.K, 0, 1) + EXIT, DecodeError, 1),
    ("JMP32 call", MOV_R0_0 + _slot(isa.JMP32 | isa.CALL, imm=1) + EXIT, DecodeError, 1),
    ("call with dst", MOV_R0_0 + _slot(isa.CALL_OP, 1, imm=1) + EXIT, DecodeError, 1),
    ("call with src=3", MOV_R0_0 + _slot(isa.CALL_OP, 0, 3, imm=1) + EXIT, DecodeError, 1),
    ("callx with off", MOV_R0_0 + _slot(isa.CALLX_OP, 1, off=1) + EXIT, DecodeError, 1),
    ("callx with imm=11", MOV_R0_0 + _slot(isa.CALLX_OP, 0, imm=11) + EXIT, DecodeError, 1),
    ("may_goto with imm", MOV_R0_0 + _slot(isa.MAY_GOTO_OP, imm=1) + EXIT, DecodeError, 1),
    ("unknown JMP op 0xf0", MOV_R0_0 + _slot(isa.JMP | 0xF0) + EXIT, DecodeError, 1),
    ("LD class, mode IMM, size W", MOV_R0_0 + _slot(isa.LD) + EXIT, DecodeError, 1),
    ("LD ABS with dst", MOV_R0_0 + _slot(0x20, 1) + EXIT, DecodeError, 1),
    ("gotox", MOV_R0_0 + _slot(isa.GOTOX_OP, 1) + EXIT, ProgramError, 1),
    ("jump past the end", MOV_R0_0 + _slot(isa.JA_OP, off=1) + EXIT, ProgramError, 1),
    ("jump far past the end", MOV_R0_0 + _slot(isa.JMP | isa.JEQ | isa.K, 0, off=0x7FFF) + EXIT, ProgramError, 1),
    ("jump before the start", MOV_R0_0 + _slot(isa.JMP32 | isa.JNE | isa.X, 0, 1, off=-3) + EXIT,
     ProgramError, 1),
    ("gotol past the end", MOV_R0_0 + _slot(isa.GOTOL_OP, imm=5) + EXIT, ProgramError, 1),
    ("gotol far before the start", MOV_R0_0 + _slot(isa.GOTOL_OP, imm=-(1 << 31)) + EXIT, ProgramError, 1),
    ("jump into lddw's second slot", MOV_R0_0 + _slot(isa.JMP | isa.JEQ | isa.K, 0, off=1) + lddw_bytes(0, 1)
     + EXIT, ProgramError, 1),
    ("backward jump into lddw's second slot", lddw_bytes(0, 1) + _slot(isa.JA_OP, off=-2) + EXIT, ProgramError, 2),
    ("may_goto out of range", MOV_R0_0 + _slot(isa.MAY_GOTO_OP, off=9) + EXIT, ProgramError, 1),
    ("unknown helper", MOV_R0_0 + _slot(isa.CALL_OP, imm=1) + EXIT, ProgramError, 1),
    ("unknown helper -1", MOV_R0_0 + _slot(isa.CALL_OP, imm=-1) + EXIT, ProgramError, 1),
    ("helper 5 without the conformance registry", MOV_R0_0 + _slot(isa.CALL_OP, imm=5) + EXIT, ProgramError, 1),
    ("kfunc call", MOV_R0_0 + _slot(isa.CALL_OP, 0, isa.CALL_KFUNC, imm=1) + EXIT, ProgramError, 1),
    ("local call past the end", MOV_R0_0 + _slot(isa.CALL_OP, 0, 1, imm=5) + EXIT, ProgramError, 1),
    ("local call before the start", MOV_R0_0 + _slot(isa.CALL_OP, 0, 1, imm=-3) + EXIT, ProgramError, 1),
    ("local call into lddw's second slot", _slot(isa.CALL_OP, 0, 1, imm=2) + EXIT + lddw_bytes(0, 1) + EXIT,
     ProgramError, 0),
    ("recursion: call self", MOV_R0_0 + _slot(isa.CALL_OP, 0, 1, imm=1) + EXIT
     + _slot(isa.CALL_OP, 0, 1, imm=-1) + EXIT, ProgramError, 3),
    ("recursion: main calls itself", _slot(isa.CALL_OP, 0, 1, imm=-1) + EXIT, ProgramError, 0),
    ("mutual recursion", _slot(isa.CALL_OP, 0, 1, imm=1) + EXIT + _slot(isa.CALL_OP, 0, 1, imm=1) + EXIT
     + _slot(isa.CALL_OP, 0, 1, imm=-3) + EXIT, ProgramError, 2),
    ("call chain of 9 frames", b"".join(_slot(isa.CALL_OP, 0, 1, imm=1) + EXIT for _ in range(8)) + MOV_R0_0
     + EXIT, ProgramError, 0),
    ("jump into another function", _slot(isa.CALL_OP, 0, 1, imm=2) + _slot(isa.JA_OP, off=1) + EXIT
     + MOV_R0_0 + EXIT, ProgramError, 1),
    ("callee splits main", _slot(isa.CALL_OP, 0, 1, imm=0) + MOV_R0_0 + EXIT, ProgramError, 0),
    ("falls off the end", MOV_R0_0, ProgramError, 0),
    ("ends in a conditional jump", MOV_R0_0 + EXIT + _slot(isa.JMP | isa.JEQ | isa.K, 0, off=-2), ProgramError, 2),
    ("ends in lddw", MOV_R0_0 + EXIT + lddw_bytes(0, 1), ProgramError, 2),
    ("ends in nop_or_goto", MOV_R0_0 + _slot(isa.JA_OP, 0, 3, off=-2), ProgramError, 1),
    ("pseudo func out of range", lddw_bytes(1, 9, src=isa.PSEUDO_FUNC) + MOV_R0_0 + EXIT, ProgramError, 0),
    ("write r10 (mov)", _slot(isa.ALU64 | isa.MOV | isa.K, 10) + MOV_R0_0 + EXIT, ProgramError, 0),
    ("write r10 (ldx)", MOV_R0_0 + _slot(isa.LDX | isa.MEM | isa.DW, 10, 1) + EXIT, ProgramError, 1),
    ("write r10 (lddw)", MOV_R0_0 + lddw_bytes(10, 1) + EXIT, ProgramError, 1),
    ("write r10 (fetch)", MOV_R0_0 + _slot(isa.STX | isa.ATOMIC | isa.DW, 1, 10, 0, isa.XCHG) + EXIT, ProgramError, 1),
    ("write r10 (load_acquire)", MOV_R0_0 + _slot(isa.STX | isa.ATOMIC | isa.DW, 10, 1, 0, isa.LOAD_ACQ) + EXIT,
     ProgramError, 1),
]
for _reg in range(11, 16):
    REJECTED += [
        (f"dst r{_reg} in ALU", MOV_R0_0 + _slot(isa.ALU64 | isa.MOV | isa.K, _reg, imm=1) + EXIT, DecodeError, 1),
        (f"src r{_reg} in ALU", MOV_R0_0 + _slot(isa.ALU64 | isa.ADD | isa.X, 0, _reg) + EXIT, DecodeError, 1),
        (f"src r{_reg} in LDX", MOV_R0_0 + _slot(isa.LDX | isa.MEM | isa.W, 0, _reg) + EXIT, DecodeError, 1),
        (f"dst r{_reg} in STX", MOV_R0_0 + _slot(isa.STX | isa.MEM | isa.W, _reg, 0) + EXIT, DecodeError, 1),
        (f"dst r{_reg} in JMP32", MOV_R0_0 + _slot(isa.JMP32 | isa.JEQ | isa.X, _reg, 0) + EXIT, DecodeError, 1),
        (f"dst r{_reg} in lddw", MOV_R0_0 + lddw_bytes(_reg, 1) + EXIT, DecodeError, 1),
        (f"src r{_reg} in lddw", MOV_R0_0 + isa.encode([Insn(isa.LDDW, 0, _reg), Insn(0)]) + EXIT, DecodeError, 1),
        (f"callx r{_reg} in dst", MOV_R0_0 + _slot(isa.CALLX_OP, _reg) + EXIT, DecodeError, 1),
        (f"dst r{_reg} in EXIT", MOV_R0_0 + _slot(isa.EXIT_OP, _reg), DecodeError, 1),
    ]


@pytest.mark.parametrize("name, code, error, index", REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected(name, code, error, index):
    with pytest.raises(BPFError):  # verified, a rejection too (the verifier's, for r10 writes)
        Program.from_bytes(code)
    with pytest.raises(BPFError) as info:  # the structure checks alone
        Program.from_bytes(code, verify=False)
    exc = info.value
    assert type(exc) is error, f"{name}: expected {error.__name__}, got {type(exc).__name__}: {exc}"
    assert str(exc).startswith(f"insn {index}: "), f"{name}: {exc}"
    assert exc.index == index
    if error is DecodeError:
        with pytest.raises(DecodeError, match=rf"^insn {index}: "):
            isa.decode(code)
    else:
        isa.decode(code)  # structural errors are not decode errors
    load(code)  # and the generic checks agree


# Well-formed edge cases that must pass the structure checks (the mirror image of REJECTED), and
# what they return. Some have unreachable instructions, which the verifier (not the structure
# checks) rejects, so they load unverified, as every input of this file does.
ACCEPTED = [
    ("lddw then exit", lddw_bytes(0, 0x1_0000_0002) + EXIT, 0x1_0000_0002),
    ("jump +0", MOV_R0_1 + _slot(isa.JA_OP) + EXIT, 1),
    ("jump over lddw", MOV_R0_1 + _slot(isa.JA_OP, off=2) + lddw_bytes(0, 5) + EXIT, 1),
    ("gotol to the exit", MOV_R0_1 + _slot(isa.GOTOL_OP, imm=1) + MOV_R0_0 + EXIT, 1),
    ("program ends in goto", MOV_R0_1 + _slot(isa.JA_OP, off=1) + EXIT + EXIT + _slot(isa.JA_OP, off=-2), 1),
    ("static branch nop_or_goto", MOV_R0_1 + _slot(isa.JA_OP, 0, 3, off=1) + EXIT + MOV_R0_0 + EXIT, 1),
    ("static branch goto_or_nop", MOV_R0_1 + _slot(isa.JA_OP, 0, 1, off=1) + EXIT + MOV_R0_0 + EXIT, 0),
    ("call chain of 8 frames", b"".join(_slot(isa.CALL_OP, 0, 1, imm=1) + EXIT for _ in range(7)) + MOV_R0_1
     + EXIT, 1),
    ("callx to a pseudo-func", lddw_bytes(1, 3, src=isa.PSEUDO_FUNC) + _slot(isa.CALLX_OP, 1) + EXIT
     + MOV_R0_1 + EXIT, 1),
]


@pytest.mark.parametrize("name, code, expected", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_edge_cases(name, code, expected):
    prog = load(code)
    assert prog is not None, name
    assert prog.run(MEM, engine="reference", max_steps=MAX_STEPS) == expected
    assert prog.run(MEM, engine="jit") == expected


RUNTIME_FAILURES = [
    ("read outside every region", MOV_R0_0 + _slot(isa.LDX | isa.MEM | isa.DW, 0, 1, off=64) + EXIT),
    ("write below the stack", _slot(isa.ST | isa.MEM | isa.DW, 10, 0, off=-520, imm=1) + MOV_R0_0 + EXIT),
    ("write above the stack", _slot(isa.ST | isa.MEM | isa.B, 10, 0, off=0, imm=1) + MOV_R0_0 + EXIT),
    ("null read", MOV_R0_0 + _slot(isa.LDX | isa.MEM | isa.B, 0, 0) + EXIT),
    ("atomic on a wild pointer", lddw_bytes(2, 0xDEAD_0000) + _slot(isa.STX | isa.ATOMIC | isa.DW, 2, 0, 0, isa.ADD)
     + MOV_R0_0 + EXIT),
    ("load_acquire from r2 (a length)", _slot(isa.STX | isa.ATOMIC | isa.W, 0, 2, 0, isa.LOAD_ACQ) + EXIT),
    ("infinite loop", MOV_R0_0 + _slot(isa.JA_OP, off=-1) + EXIT),
    ("recursion through callx", lddw_bytes(1, -1, src=isa.PSEUDO_FUNC) + _slot(isa.CALLX_OP, 1) + EXIT),
    ("callx to garbage", lddw_bytes(1, 0x1234) + _slot(isa.CALLX_OP, 1) + EXIT),
    ("gotol loop", MOV_R0_0 + _slot(isa.GOTOL_OP, imm=-1) + EXIT),
    ("legacy LD ABS without an skb in r6", MOV_R0_0 + _slot(0x20, imm=1) + EXIT),
    ("legacy LD IND without an skb in r6", MOV_R0_0 + _slot(0x40, 0, 1, imm=1) + EXIT),
]


@pytest.mark.parametrize("name, code", RUNTIME_FAILURES, ids=[r[0] for r in RUNTIME_FAILURES])
def test_interpreter_catches_runtime_faults(name, code):
    prog = load(code)
    assert prog is not None, name
    with pytest.raises(BPFError, match=r"^insn \d+: "):
        prog.test_run(MEM, engine="reference", max_steps=MAX_STEPS)
    prog.compile().close()  # the JIT's sandbox runs them in tests/test_sandbox.py


def test_random_bytes_in_a_child_process():
    """The same campaign in a fresh interpreter: the process must exit normally (no native crash)."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import test_malformed
        outcome = test_malformed.random_bytes_campaign(0xC41D, 1500, compile_every=10)
        print("survived", outcome)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"child exited with {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "survived" in proc.stdout, proc.stdout + proc.stderr

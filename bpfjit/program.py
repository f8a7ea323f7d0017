"""The public API: build a Program, check its structure, run it on either engine.

    prog = Program.from_asm("mov %r0, %r2\\nexit")
    prog.run(b"abcd")                    # 4, through the JIT
    prog.run(b"abcd", engine="interp")   # 4, through the reference interpreter

Both engines run on the same native memory and the same helpers (``Environment``), so their
results can be compared byte for byte. For raw programs r1 points at the memory and r2 holds its
length (the bpf_conformance convention).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Literal, Sequence

from . import asm as assembler
from . import disasm, isa
from .errors import BPFError
from .isa import Insn
from .jit.engine import CompiledProgram, compile_program
from .runtime.environment import Environment
from .runtime.helpers import HelperRegistry
from .runtime.interp import Interpreter
from .runtime.memory import Buffer, Regions
from .runtime.status import RunEnv, raise_for_status
from .verifier import cfg

Engine = Literal["jit", "interp"]
ENGINES: tuple[str, ...] = ("jit", "interp")
PROGRAM_TYPES = ("raw",)


@dataclass(frozen=True)
class RunResult:
    """What BPF_PROG_TEST_RUN reports: r0, the memory after the run, mean time per run."""
    retval: int
    data_out: bytes
    duration_ns: float


class Program:
    """A structurally checked BPF program, ready to run interpreted or jitted."""

    def __init__(self, insns: Sequence[Insn], env: Environment | None = None, name: str = "prog",
                 prog_type: str = "raw"):
        if prog_type not in PROGRAM_TYPES:
            raise BPFError(f"unknown program type {prog_type!r} for raw bytecode (known: {', '.join(PROGRAM_TYPES)})")
        self.insns = list(insns)
        self.env = env if env is not None else Environment()
        self.name = name
        self.prog_type = prog_type
        self.facts = cfg.analyse(self.insns, self.env.helpers,
                                 self.env.function_tokens.values() if self.env.function_tokens else ())
        # Resolving every ld_imm64 now reports a bad pseudo source at load, not at run time.
        for index, insn in enumerate(self.insns):
            if insn.is_lddw and not isa.is_filler(self.insns, index):
                self.env.ld_imm64_value(insn, index)
        self._compiled: CompiledProgram | None = None
        self._compile_lock = threading.Lock()

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, code: bytes, prog_type: str = "raw", helpers: HelperRegistry | None = None,
                   name: str = "prog") -> "Program":
        """A program from raw bytecode (8-byte little-endian slots)."""
        return cls(isa.decode(code), Environment(helpers=helpers or HelperRegistry()), name, prog_type)

    @classmethod
    def from_asm(cls, text: str, prog_type: str = "raw", helpers: HelperRegistry | None = None,
                 name: str = "prog") -> "Program":
        """A program from bpf_conformance-syntax assembly."""
        return cls(assembler.assemble_insns(text), Environment(helpers=helpers or HelperRegistry()), name,
                   prog_type)

    @property
    def bytecode(self) -> bytes:
        return isa.encode(self.insns)

    def disassemble(self) -> str:
        return disasm.listing(self.insns, [(f.start, self.name if f.start == 0 else f"f{f.start}")
                                           for f in self.facts.functions])

    # --- compiling -----------------------------------------------------------------------------
    def compile(self) -> CompiledProgram:
        """The jitted code (compiled once, on first use)."""
        with self._compile_lock:
            if self._compiled is None:
                self._compiled = compile_program(self.insns, self.facts, self.env)
            return self._compiled

    # --- running -------------------------------------------------------------------------------
    def run(self, mem: bytes | bytearray = b"", engine: Engine = "jit", max_steps: int | None = None) -> int:
        """Run once with r1 = a copy of mem, r2 = len(mem); return r0.

        A bytearray is updated in place with the memory as the program left it.
        """
        result = self.test_run(mem, engine=engine, max_steps=max_steps)
        if isinstance(mem, bytearray):
            mem[:] = result.data_out
        return result.retval

    def test_run(self, data: bytes | bytearray = b"", repeat: int = 1, engine: Engine = "jit",
                 max_steps: int | None = None) -> RunResult:
        """BPF_PROG_TEST_RUN for raw programs: run `repeat` times on the same memory.

        duration_ns is the mean wall time per run; for the JIT the repeat loop is native code.
        max_steps bounds interpreted runs (a runaway loop raises instead of hanging).
        """
        if engine not in ENGINES:
            raise BPFError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
        repeat = max(1, int(repeat))
        buffer = Buffer(len(data), data)
        if engine == "jit":
            compiled = self.compile()
            start = time.perf_counter_ns()
            retval = compiled.run(buffer.address, buffer.size, repeat)
        else:
            regions = Regions(self.env.regions)
            regions.add(buffer.address, buffer.size, True, "program memory")
            interpreter = Interpreter(self.insns, self.env, self.facts.function_starts, max_steps)
            start = time.perf_counter_ns()
            for _ in range(repeat):
                status = RunEnv()
                retval = interpreter.run(buffer.address, buffer.size, regions, status)
                raise_for_status(status)
        elapsed = time.perf_counter_ns() - start
        return RunResult(retval, buffer.read(), elapsed / repeat)

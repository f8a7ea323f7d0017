"""From LLVM IR text to callable native code: target machine, pass pipeline, MCJIT, lifetimes.

One :class:`CompiledProgram` owns exactly one MCJIT engine (which owns its module, its target
machine and the machine code) and the ctypes callbacks that code calls. ``close()`` releases the
engine; a finalizer does the same when the object is collected. The callbacks live exactly as
long as the CompiledProgram, so no machine code can call a freed callback.
"""
from __future__ import annotations

import ctypes
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import llvmlite.binding as llvm

from bpfjit.errors import JITError
from bpfjit.isa import Insn, MASK64
from bpfjit.runtime.environment import Environment
from bpfjit.runtime import run_context
from bpfjit.runtime.helpers import Helper
from bpfjit.runtime.status import RunEnv, Status
from bpfjit.verifier.facts import Facts

from .lower import lower_program
from .sites import Site, read_sites

HELPER_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, *(ctypes.c_uint64,) * 5)
ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(RunEnv), ctypes.c_void_p, ctypes.c_uint64)
REPEAT_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(RunEnv), ctypes.c_void_p, ctypes.c_uint64,
                               ctypes.c_uint64)

_host_lock = threading.Lock()
_host: tuple[llvm.Target, str, str] | None = None


def target_machine() -> llvm.TargetMachine:
    """A fresh target machine for the host CPU and its features.

    Each MCJIT engine takes ownership of the target machine it is given (and frees it with the
    engine), so every compiled program gets its own; only the host description is cached.
    """
    global _host
    with _host_lock:
        if _host is None:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            llvm.initialize_native_asmparser()  # inline asm: the patchable static-branch sites
            _host = (llvm.Target.from_default_triple(), llvm.get_host_cpu_name(),
                     llvm.get_host_cpu_features().flatten())
    target, cpu, features = _host
    return target.create_target_machine(cpu=cpu, features=features, opt=3, codemodel="jitdefault")


FUNCTION_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(RunEnv), *(ctypes.c_uint64,) * 5)


def _helper_callback(helper: Helper):
    def call(a: int, b: int, c: int, d: int, e: int) -> int:
        try:
            return int(helper.impl(a, b, c, d, e)) & MASK64
        except BaseException as exc:  # never let an exception unwind through native frames
            run = run_context.current()
            run.env.status, run.env.value = Status.HELPER_FAILED, helper.id
            run.errors.append(exc)
            return 0
    return HELPER_TYPE(call)


@dataclass
class CompileTimes:
    """Where compile time went, in seconds."""
    lower: float = 0.0
    optimise: float = 0.0
    codegen: float = 0.0


@dataclass
class CompiledProgram:
    ir: str
    optimised_ir: str
    times: CompileTimes
    _engine: llvm.ExecutionEngine
    _callbacks: dict[int, object]
    _exported: frozenset[int]  # start slots of the functions callbacks may enter
    sites: list[Site]  # the patchable static-branch sites, every copy LLVM made of each
    _entry: object = field(init=False)
    _repeat: object = field(init=False)

    def __post_init__(self) -> None:
        self._entry = ENTRY_TYPE(self._engine.get_function_address("bpf_entry"))
        self._repeat = REPEAT_TYPE(self._engine.get_function_address("bpf_entry_repeat"))
        self._finalizer = weakref.finalize(self, _release, self._engine)

    def run(self, env: RunEnv, r1: int, r2: int, repeat: int = 1) -> int:
        """Run the program (repeat times, in a native loop); return r0 of the last run.

        How the run ended is left in env for the caller (bpfjit.program) to act on.
        """
        if repeat <= 1:
            return self._entry(ctypes.byref(env), r1, r2)
        return self._repeat(ctypes.byref(env), r1, r2, repeat)

    def call_function(self, env: RunEnv, start: int, args: list[int]) -> int:
        """Call the BPF function at slot `start` (a helper's callback) with r1-r5 = args."""
        if start not in self._exported:
            raise ValueError(f"the function at insn {start} cannot be called back")
        function = FUNCTION_TYPE(self._engine.get_function_address(f"bpf_f{start}"))
        return function(ctypes.byref(env), *(a & MASK64 for a in args))

    def code_address(self) -> int:
        return self._engine.get_function_address("bpf_entry")

    def close(self) -> None:
        self._finalizer()


def _release(engine: llvm.ExecutionEngine) -> None:
    engine.close()


def compile_program(insns: Sequence[Insn], facts: Facts, env: Environment, opt_level: int = 2) -> CompiledProgram:
    """Lower, optimise and compile a checked program."""
    tm = target_machine()
    callbacks: dict[int, object] = {}

    def helper_address(helper_id: int) -> int:
        if helper_id not in callbacks:
            callbacks[helper_id] = _helper_callback(env.helpers.get(helper_id))
        return ctypes.cast(callbacks[helper_id], ctypes.c_void_p).value

    t0 = time.perf_counter()
    ir = lower_program(insns, facts, env, helper_address)
    t1 = time.perf_counter()
    try:
        module = llvm.parse_assembly(ir)
        module.triple = tm.triple
        module.data_layout = str(tm.target_data)
        module.verify()
    except RuntimeError as exc:
        raise JITError(f"LLVM rejected the generated IR: {exc}") from None
    pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)
    optimised = str(module)
    t2 = time.perf_counter()
    engine = llvm.create_mcjit_compiler(module, tm)
    engine.finalize_object()
    t3 = time.perf_counter()
    exported = frozenset(env.callx_targets(facts.function_starts))
    return CompiledProgram(ir, optimised, CompileTimes(t1 - t0, t2 - t1, t3 - t2), engine, callbacks, exported,
                           read_sites(engine))

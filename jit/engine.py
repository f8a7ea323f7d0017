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
from bpfjit.runtime.helpers import Helper, HelperRegistry
from bpfjit.runtime.status import RunEnv, Status, raise_for_status
from bpfjit.verifier.facts import Facts

from .lower import lower_program

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
            _host = (llvm.Target.from_default_triple(), llvm.get_host_cpu_name(),
                     llvm.get_host_cpu_features().flatten())
    target, cpu, features = _host
    return target.create_target_machine(cpu=cpu, features=features, opt=3, codemodel="jitdefault")


# The thread's current run, so a failing Python helper can record its error in the run's RunEnv.
_current = threading.local()


def _helper_callback(helper: Helper, errors: list[BaseException]):
    def call(a: int, b: int, c: int, d: int, e: int) -> int:
        try:
            return int(helper.impl(a, b, c, d, e)) & MASK64
        except BaseException as exc:  # never let an exception unwind through native frames
            env: RunEnv = _current.env
            env.status, env.value = Status.HELPER_FAILED, helper.id
            errors.append(exc)
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
    _errors: list[BaseException]
    _helpers: HelperRegistry
    _entry: object = field(init=False)
    _repeat: object = field(init=False)

    def __post_init__(self) -> None:
        self._entry = ENTRY_TYPE(self._engine.get_function_address("bpf_entry"))
        self._repeat = REPEAT_TYPE(self._engine.get_function_address("bpf_entry_repeat"))
        self._finalizer = weakref.finalize(self, _release, self._engine)

    def run(self, ctx: int, length: int, repeat: int = 1) -> int:
        """Run the program (repeat times, in a native loop); return r0 of the last run."""
        env = RunEnv()
        _current.env = env
        self._errors.clear()
        if repeat <= 1:
            result = self._entry(ctypes.byref(env), ctx, length)
        else:
            result = self._repeat(ctypes.byref(env), ctx, length, repeat)
        if env.status == Status.HELPER_FAILED:
            helper = self._helpers.get(env.value)
            raise_for_status(env, self._errors[0] if self._errors else None, helper.name if helper else "")
        raise_for_status(env)
        return 0 if env.status == Status.UNWOUND else result

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
    errors: list[BaseException] = []

    def helper_address(helper_id: int) -> int:
        if helper_id not in callbacks:
            callbacks[helper_id] = _helper_callback(env.helpers.get(helper_id), errors)
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
    return CompiledProgram(ir, optimised, CompileTimes(t1 - t0, t2 - t1, t3 - t2), engine, callbacks, errors,
                           env.helpers)

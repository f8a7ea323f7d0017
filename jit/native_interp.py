"""The native interpreter: BPF bytecode executed by one loop of machine code, with no compile per
program (issue 16, step 1).

Why an LLVM IR loop and not a C extension: llvmlite is already bpfjit's one native dependency, so
the interpreter needs no C toolchain at install time, shares the JIT's target machine, object
cache and linking (jit/engine.py, jit/cache.py), and calls the very same helpers (native ones
from jit/native_helpers.py, Python ones through jit/engine.py's ctypes callbacks) with the same
RunEnv protocol. The loop is built once per process from jit/native_interp_ir.py; its IR depends on
bpfjit's digested sources alone, so its object code is kept in the object cache under its name and
the code digest (engine.sourced_object), and later processes link it in a few milliseconds without
building the IR (about 10 ms) or optimising it (1-2 s).

Dispatch: DISPATCH below. Both forms were built and measured on the bench's micro-suite
(``pytest -m slow tests/test_native_interp.py -k bench -s`` prints the table): ``indirectbr``
through a table of block addresses was faster on all 8 programs (prime 1.61 vs 2.39 ms,
strcmp_full 12.1 vs 18.5 ms, switch 120 vs 160 us, log2_int 46 vs 63 us per run; equal within
noise on simple and memory_a_plus_b), because LLVM's tail duplication gives every handler its own
copy of the three-instruction dispatch, so the branch predictor learns each opcode's likely
successor (threaded code); a ``switch`` gets the same jump table but one shared jump for all
handlers.

Against uBPF's C interpreter, built from source on the same machine (bench/ubpf.py, uBPF with its
default bounds checks), this loop is 2-9x faster per run on every program of the micro-suite.

A program is pre-decoded into an image (jit/native_interp_image.py) once; a run hands the image,
the RunEnv and r1/r2 to the loop. How a run ended is left in the RunEnv, as the JIT leaves it,
for ``raise_for_status``; only this engine's own TRAP is turned into an error here.
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from typing import Sequence


from bpfjit.errors import BPFRuntimeError
from bpfjit.isa import MASK64
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.status import RunEnv

from . import engine, native_helpers
from .native_interp_image import ProgramImage
from .native_interp_ir import DISPATCH_INDIRECT, TRAP, VARIANTS, module_ir

DISPATCH = DISPATCH_INDIRECT

_REPEAT = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.POINTER(RunEnv), ctypes.c_uint64,
                           ctypes.c_uint64, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64))
_CALL = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.POINTER(RunEnv), ctypes.c_uint64,
                         ctypes.POINTER(ctypes.c_uint64))


@dataclass
class HelperTable:
    """Where the interpreter calls each helper: the native implementation when the program's
    helper arguments are proven (as jit/engine.py binds them for the JIT), else the Python
    helper through a ctypes callback, kept alive here for as long as the table."""
    env: Environment
    native_allowed: bool
    _callbacks: dict[int, object] = field(default_factory=dict)

    def address(self, helper_id: int) -> int:
        if self.native_allowed:
            native = native_helpers.native_address(helper_id, self.env)
            if native is not None:
                return native
        if helper_id not in self._callbacks:
            self._callbacks[helper_id] = engine.helper_callback(self.env.helpers.get(helper_id))
        return ctypes.cast(self._callbacks[helper_id], ctypes.c_void_p).value

    @property
    def calls_back(self) -> bool:
        """Whether a Python helper bound here calls BPF code back (bpf_loop, for_each_map_elem
        when the interpreter hands them over): such a helper finds the function in the run's
        context, which names the program the run started with, so an image that binds one is
        no target the interpreter may switch to by itself (a tail call), as for the JIT
        (jit/engine.py CompiledProgram.tail_call_entry)."""
        return bool(self._callbacks.keys() & engine.CALLS_BACK)


class NativeInterpreter:
    """The linked interpreter module: per variant, a repeat entry and a function-call entry.

    ``checked=True`` selects the variant for unverified programs and budgeted runs (every access
    checked against the run's regions and frames, max_steps and the stop flag honoured); the
    fast variant trusts the verifier's proofs, as the normal JIT code does."""

    def __init__(self, dispatch: str = DISPATCH):
        obj = engine.sourced_object(f"native interpreter, {dispatch}", lambda: module_ir(dispatch))
        self._engine = engine.link_object(obj, {})
        self._repeat = {variant: _REPEAT(self._engine.get_function_address(f"bpfjit_interp_{variant}_repeat"))
                        for variant in VARIANTS}
        self._call = {variant: _CALL(self._engine.get_function_address(f"bpfjit_interp_{variant}_call"))
                      for variant in VARIANTS}

    def run(self, image: ProgramImage, env: RunEnv, r1: int, r2: int, repeat: int = 1, checked: bool = False,
            runs: ctypes.c_uint64 | None = None) -> int:
        """Run the program from slot 0 with r1, r2 (r3-r5 = 0), `repeat` times in the native loop
        (stopping at the first run that does not end OK, such as one whose tail call is left to
        bpfjit.program); return r0 of the last run, and how many runs were made in `runs`."""
        variant = "checked" if checked else "fast"
        made = runs if runs is not None else ctypes.c_uint64()
        result = self._repeat[variant](ctypes.addressof(image.header), ctypes.byref(env), r1 & MASK64, r2 & MASK64,
                                       max(1, repeat), ctypes.byref(made))
        raise_for_trap(env, image)
        return result

    def repeat_address(self, checked: bool = False) -> int:
        """The native address of the repeat entry (for the capture batch loop, jit/batch.py)."""
        return ctypes.cast(self._repeat["checked" if checked else "fast"], ctypes.c_void_p).value

    def call_function(self, image: ProgramImage, env: RunEnv, start: int, args: Sequence[int],
                      checked: bool = False) -> int:
        """Run the BPF function at slot `start` with r1-r5 = args (a helper's callback)."""
        words = (ctypes.c_uint64 * 5)(*(a & MASK64 for a in list(args)[:5]))
        result = self._call["checked" if checked else "fast"](ctypes.addressof(image.header), ctypes.byref(env),
                                                              start, words)
        raise_for_trap(env, image)
        return result


def raise_for_trap(env: RunEnv, image: ProgramImage) -> None:
    """A run that reached a trap fails as the reference interpreter fails there."""
    if env.status == TRAP:
        raise BPFRuntimeError(env.insn, image.traps.get(env.insn, "invalid instruction"))


_lock = threading.Lock()
_interpreter: NativeInterpreter | None = None


def interpreter() -> NativeInterpreter:
    """This process's interpreter (built, or fetched from the object cache, on first use; it
    lives as long as the process, as the native helpers do)."""
    global _interpreter
    with _lock:
        if _interpreter is None:
            _interpreter = NativeInterpreter()
        return _interpreter

"""Helpers implemented in native code, bound in place of their Python callbacks.

A verified program's helper arguments are proven by the verifier, so a helper that sits on the
hot path of a packet (map updates, locks, ring buffers) can run as native code on the maps'
native memory without entering Python. This module answers, per helper id, where that native
implementation is; the engine binds ``@bpfjit_h<id>`` to it instead of a ctypes callback.
Programs that were not verified keep the Python helpers, which check every pointer.

Every native helper lives in one LLVM module (jit/native_maps.py, native_queue.py,
native_ringbuf.py, native_misc.py, native_packet.py, native_skb.py, native_fib.py,
native_perf.py, native_constants.py), compiled once per process on first use (its object code
kept in the object cache, jit/cache.py) and never freed. Its external symbols (libc functions,
the cpu-numbering words of runtime/maps/native.py, the forwarding table's word of
runtime/fib.py) are bound when it is linked, like a program's.
``bpf_get_smp_processor_id`` depends on the object's per-CPU slot count, so each count gets a
one-function module of its own, linked to the helper module (jit/native_misc.py).
"""
from __future__ import annotations

import ctypes
import threading

import llvmlite.binding as llvm

from bpfjit.runtime.environment import Environment
from bpfjit.runtime.fib import fib
from bpfjit.runtime.helpers import Helper
from bpfjit.runtime.maps import native as shared
from bpfjit.runtime.run_memory import CTX_SECRET
from bpfjit.runtime.stdhelpers import GET_SMP_PROCESSOR_ID

from . import (native_constants, native_fib, native_maps, native_misc, native_packet, native_perf, native_queue,
               native_ringbuf, native_skb)

_PARTS = (native_maps, native_queue, native_ringbuf, native_misc, native_packet, native_skb, native_fib, native_perf,
          native_constants)
MODULE_IR = "".join(part.MODULE_IR for part in _PARTS)
FUNCTIONS = {helper_id: entry for part in _PARTS for helper_id, entry in part.FUNCTIONS.items()}

_lock = threading.Lock()
_engines: list[llvm.ExecutionEngine] = []  # the linked modules, alive as long as the process
_addresses: dict[int, int] = {}
_cpu_number: list[int] = []  # the helper module's cpu_number, which the processor-id modules call
_processor_ids: dict[int, int] = {}  # per-CPU slot count -> its bpf_get_smp_processor_id


_python_fallbacks: list[object] = []  # their callbacks, alive as long as the module


def _symbols() -> dict[str, int]:
    names = native_maps.EXTERNAL_FUNCTIONS + native_misc.EXTERNAL_FUNCTIONS + native_ringbuf.EXTERNAL_FUNCTIONS
    return {**{name: shared.libc_address(name) for name in names},
            native_maps.CPU_KEY: shared.CPU_NUMBERING.key_address,
            native_maps.CPU_COUNTER: shared.CPU_NUMBERING.counter_address,
            native_packet.CTX_SECRET: ctypes.addressof(CTX_SECRET),
            native_fib.FIB_TABLE: ctypes.addressof(fib.native),
            **native_misc.symbols(), **_python_fallback_symbols()}


def _python_fallback_symbols() -> dict[str, int]:
    """The Python helpers the native ones hand what they cannot do (the map types they do not
    know, a multi-buffer packet, a context of another kind), through the engine's callback
    wrapper (which reports a failure in the run's RunEnv)."""
    from .engine import helper_callback  # engine imports this module
    symbols = {}
    fallbacks = {**native_maps.PYTHON_FALLBACKS, **native_packet.PYTHON_FALLBACKS,
                 **native_skb.PYTHON_FALLBACKS, **native_fib.PYTHON_FALLBACKS, **native_perf.PYTHON_FALLBACKS}
    for helper_id, impl in fallbacks.items():
        callback = helper_callback(Helper(helper_id, impl.__name__, impl))
        _python_fallbacks.append(callback)
        symbols[native_maps.PYTHON_PREFIX + impl.__name__] = ctypes.cast(callback, ctypes.c_void_p).value
    return symbols


def _link(ir: str, symbols: dict[str, int]) -> llvm.ExecutionEngine:
    """Compile (or fetch from the cache) a module of native helpers and link it in memory."""
    from . import engine  # engine imports this module: its target machines are needed only now
    linked = engine.link_object(engine.shared_object(ir), symbols)
    _engines.append(linked)
    return linked


def _helper_module() -> dict[int, int]:
    """Helper id -> address in the helper module, linked on first use (the caller holds _lock)."""
    if not _addresses:
        linked = _link(MODULE_IR, _symbols())
        _addresses.update({helper_id: linked.get_function_address(name)
                           for helper_id, (_, name) in FUNCTIONS.items()})
        _cpu_number.append(linked.get_function_address(native_misc.CPU_NUMBER))
    return _addresses


def _processor_id(ncpus: int) -> int:
    """The bpf_get_smp_processor_id of programs with `ncpus` per-CPU slots (the caller holds _lock)."""
    if ncpus not in _processor_ids:
        _helper_module()
        linked = _link(native_misc.processor_id_ir(ncpus), {native_misc.CPU_NUMBER: _cpu_number[0]})
        _processor_ids[ncpus] = linked.get_function_address(native_misc.PROCESSOR_ID)
    return _processor_ids[ncpus]


def native_address(helper_id: int, env: Environment) -> int | None:
    """The address of the native implementation of `helper_id`, or None for the Python one.

    Only the standard helpers have native twins: a helper the user registered under the same id
    replaces the standard one, and keeps its Python implementation."""
    helper = env.helpers.get(helper_id)
    if helper is None:
        return None
    if helper_id == GET_SMP_PROCESSOR_ID:
        ncpus = native_misc.processor_id_slots(helper)
        if ncpus is None:
            return None
        with _lock:
            return _processor_id(ncpus)
    if helper_id not in FUNCTIONS or helper.impl is not FUNCTIONS[helper_id][0]:
        return None
    with _lock:
        return _helper_module()[helper_id]


def bound_natively(address: int) -> bool:
    """Whether address is one of the native helpers (and so no ctypes callback)."""
    return address in _addresses.values() or address in _processor_ids.values()

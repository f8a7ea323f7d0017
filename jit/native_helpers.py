"""Helpers implemented in native code, bound in place of their Python callbacks.

A verified program's helper arguments are proven by the verifier, so a helper that sits on the
hot path of a packet (map updates, locks, ring buffers) can run as native code on the maps'
native memory without entering Python. This module answers, per helper id, where that native
implementation is; the engine binds ``@bpfjit_h<id>`` to it instead of a ctypes callback.
Programs that were not verified keep the Python helpers, which check every pointer.

Every native helper lives in one LLVM module (jit/native_maps.py, jit/native_misc.py), compiled
once per process on first use (its object code kept in the object cache, jit/cache.py) and never
freed. Its external symbols (libc functions, the cpu-numbering words of runtime/maps/native.py)
are bound when it is linked, like a program's.
"""
from __future__ import annotations

import threading

import llvmlite.binding as llvm

from bpfjit.runtime.environment import Environment
from bpfjit.runtime.maps import native as shared

from . import native_maps, native_misc

MODULE_IR = native_maps.MODULE_IR + native_misc.MODULE_IR
FUNCTIONS = {**native_maps.FUNCTIONS, **native_misc.FUNCTIONS}

_lock = threading.Lock()
_engine: llvm.ExecutionEngine | None = None
_addresses: dict[int, int] = {}


def _symbols() -> dict[str, int]:
    names = native_maps.EXTERNAL_FUNCTIONS + native_misc.EXTERNAL_FUNCTIONS
    return {**{name: shared.libc_address(name) for name in names},
            native_maps.CPU_KEY: shared.CPU_NUMBERING.key_address,
            native_maps.CPU_COUNTER: shared.CPU_NUMBERING.counter_address,
            **native_misc.symbols()}


def _build() -> dict[int, int]:
    """Compile (or fetch from the cache) and link the helper module: helper id -> address."""
    global _engine
    from . import engine  # engine imports this module: its target machines are needed only now
    obj = engine.shared_object(MODULE_IR)
    linked = llvm.create_mcjit_compiler(engine.empty_module(), engine.linking_machine())
    linked.set_object_cache(getbuffer_func=lambda module: obj)
    with engine.link_lock:
        for name, address in _symbols().items():
            llvm.add_symbol(name, address)
        linked.finalize_object()
    _engine = linked
    return {helper_id: linked.get_function_address(name) for helper_id, (_, name) in FUNCTIONS.items()}


def native_address(helper_id: int, env: Environment) -> int | None:
    """The address of the native implementation of `helper_id`, or None for the Python one.

    Only the standard helpers have native twins: a helper the user registered under the same id
    replaces the standard one, and keeps its Python implementation."""
    helper = env.helpers.get(helper_id)
    if helper_id not in FUNCTIONS or helper is None or helper.impl is not FUNCTIONS[helper_id][0]:
        return None
    with _lock:
        if not _addresses:
            _addresses.update(_build())
    return _addresses[helper_id]


def bound_natively(address: int) -> bool:
    """Whether address is one of the native helpers (and so no ctypes callback)."""
    return address in _addresses.values()


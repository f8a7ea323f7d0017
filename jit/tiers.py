"""Tiered start (``engine="auto"``): a program runs on the native interpreter at once, while its
JIT code is compiled on a background thread; runs move to the JIT as soon as that code is ready.

Why a thread and not a process: the code must land in this process (it is linked against this
process's maps, helpers and static-key sites), and llvmlite releases the GIL while LLVM optimises
and emits, which is most of a compile, so the interpreter keeps running meanwhile.

Both tiers run on the same memory with the same helpers, so maps, globals and the packet carry
over from one tier to the other, and a run is never repeated or lost in the switch: the switch
happens between runs.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

# A repeat on the interpreter while the JIT compiles is split into chunks of at most this long,
# so that the runs move to the JIT within about this much time of its code being ready.
CHUNK_NS = 1_000_000
# The compile thread first sleeps this long: the run that started it returns its result before
# the lowering (Python, holding the GIL up to a switch interval at a time) competes with it.
HEAD_START_S = 0.002


class Tiering:
    """The tier a program's next runs take, and the background compile that moves them up."""

    def __init__(self, compile_jit: Callable[[], object]):
        self._compile_jit = compile_jit
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def tier(self) -> str:
        """"jit" once the code is ready, else "interp". A compile that failed fails this call,
        as it would have failed a JIT run."""
        if not self._ready.is_set():
            return "interp"
        if self._error is not None:
            raise self._error
        return "jit"

    def start(self) -> None:
        """Start the compile, unless it has started. Called after the interpreter's first runs,
        so that the compile thread does not hold up the first result (Python's lowering holds
        the GIL for up to a switch interval at a time)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._compile, name="bpfjit-tier-up", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the JIT's code is ready (or its compile failed); whether it is."""
        self.start()
        return self._ready.wait(timeout)

    def _compile(self) -> None:
        time.sleep(HEAD_START_S)
        try:
            self._compile_jit()
        except BaseException as exc:  # kept for the next run to raise
            self._error = exc
        finally:
            self._ready.set()


def chunk_runs(previous: int, ns_per_run: float, remaining: int) -> int:
    """How many interpreter runs to do before asking again whether the JIT is ready: doubling from
    one, capped at CHUNK_NS worth of runs and at what is left."""
    cap = max(1, int(CHUNK_NS / max(ns_per_run, 1.0)))
    return max(1, min(previous * 2, cap, remaining))

"""How long one run may go on: an instruction budget and a wall-clock budget, on either engine.

Verified programs terminate, so runs are unlimited by default. A program nobody verified (raw
bytecode, assembly, a fuzzer's output) can loop forever; giving ``max_steps`` or ``timeout`` to
``Program.run``/``test_run`` makes such a run end with a clean ``BPFRuntimeError`` instead.
Both budgets travel in the invocation's :class:`~bpfjit.runtime.status.RunEnv`: the interpreter
counts instructions and looks at the clock itself; the JIT runs a sandboxed variant of the
program that counts instructions per block and polls ``RunEnv.stop``, which the
:class:`Watchdog`'s timer thread sets when the time budget is spent.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType

from bpfjit.errors import BPFError

from .status import RunEnv


@dataclass(frozen=True)
class Limits:
    """The budgets of one test run: instructions per invocation, seconds for the whole call."""
    max_steps: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int)
                                           or not 0 < self.max_steps < 1 << 63):
            raise BPFError(f"max_steps must be a positive int, got {self.max_steps!r}")
        if self.timeout is not None and (isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float))
                                         or not 0 < self.timeout < float("inf")):
            raise BPFError(f"timeout must be a positive number of seconds, got {self.timeout!r}")

    @property
    def bounded(self) -> bool:
        """Whether runs need the budgeted (sandboxed) code."""
        return self.max_steps is not None or self.timeout is not None


class Watchdog:
    """Hands out the RunEnv of each invocation of one test run, and stops the one in progress
    when the time budget is spent (from a timer thread: jitted code cannot look at a clock)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout if limits.timeout else 0.0
        self._lock = threading.Lock()
        self._env: RunEnv | None = None
        self._expired = False
        self._timer: threading.Timer | None = None
        if limits.timeout:
            self._timer = threading.Timer(limits.timeout, self._expire)
            self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def new_env(self) -> RunEnv:
        """A fresh RunEnv for the next invocation, carrying the budgets (stopped already if the
        time is up)."""
        env = RunEnv(self.limits.max_steps, self.limits.timeout, self.deadline)
        with self._lock:
            self._env = env
            env.stop = int(self._expired)
        return env

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            if self._env is not None:
                self._env.stop = 1

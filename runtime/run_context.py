"""The run in progress on this thread, as helpers see it.

Some helpers need the engine that is running them: ``bpf_loop`` and ``bpf_for_each_map_elem`` call
a BPF function of the program, ``bpf_tail_call`` replaces the running program, and any helper
that fails records why in the run's :class:`~bpfjit.runtime.status.RunEnv`, and every helper checks
the pointers it is given against the memory of the run (runtime/helper_args.py). Each engine enters a
:class:`RunContext` for the duration of a run (nested runs stack), and the helpers find it with
:func:`current`.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .environment import Environment
from .memory import Regions
from .status import RunEnv

# Calls the BPF function starting at a slot with five arguments and returns its r0.
FunctionCaller = Callable[[int, list[int]], int]


@dataclass(frozen=True)
class Redirect:
    """Where a redirecting program sends the packet, as the last redirect helper of the run asked:
    an interface (``bpf_redirect``: ``ifindex``) or an entry of a redirect map
    (``bpf_redirect_map``: the map's name and the key). ``flags``: the helper's flags that say how
    (``BPF_F_INGRESS`` for a tc redirect; ``BPF_F_BROADCAST`` / ``BPF_F_EXCLUDE_INGRESS`` for a
    DEVMAP or DEVMAP_HASH, whose key then does not matter)."""

    ifindex: int | None = None
    map: str | None = None
    key: int | None = None
    flags: int = 0


# RunEnv.redirect_kind: what the last redirect helper of an invocation did (0: none ran).
RECORD_CLEARED, RECORD_IFINDEX, RECORD_MAP = 1, 2, 3


def record_redirect(env: RunEnv, kind: int, target: int = 0, key: int = 0, flags: int = 0) -> None:
    """What a redirect helper writes, in the run's RunEnv: the JIT's inlined redirects and the
    native interpreter's write the same four words, so any of them may come last (target: the
    ifindex, or the map's handle)."""
    env.redirect_kind, env.redirect_target, env.redirect_key, env.redirect_flags = kind, target, key, flags


def redirect_of(kind: int, target: int, key: int, flags: int) -> Redirect | None:
    """The Redirect the four words of a record name (kind neither IFINDEX nor MAP: none)."""
    if kind == RECORD_IFINDEX:
        return Redirect(ifindex=target, flags=flags)
    if kind == RECORD_MAP:
        from .maps.base import map_from_handle  # the maps import this module
        found = map_from_handle(target)
        return Redirect(map=found.name if found is not None else None, key=key, flags=flags)
    return None


@dataclass
class RedirectInfo:
    """The kernel's per-CPU ``bpf_redirect_info`` for one test run: what the last redirect helper
    recorded (None: nothing, or a redirect_map lookup that missed, which clears it). It lasts the
    whole test run, across tail calls and repeats, as the kernel's does: each invocation's record
    (in its RunEnv, where native code can write it) is taken in when its run context ends."""

    target: Redirect | None = None

    def absorb(self, env: RunEnv) -> None:
        """Take the record an invocation left in env, if a redirect helper ran, and clear it."""
        if env.redirect_kind:
            self.target = redirect_of(env.redirect_kind, env.redirect_target, env.redirect_key, env.redirect_flags)
            env.redirect_kind = 0


@dataclass
class RunContext:
    env: RunEnv
    environment: Environment
    call_function: FunctionCaller
    regions: Regions  # the memory this run may touch: helpers check every pointer against it
    # JIT runs keep the BPF stack in native frames (below env.stack_top), not in a region: helpers
    # accept pointers there only when this is set (runtime/helper_args.py).
    native_stack: bool = False
    tail_call_target: Any = None  # the Program a successful bpf_tail_call switches to
    # Whether the running code makes tail calls natively, through the native entry tables of
    # prog arrays (the JIT's normal code): a tail call that fell back to the Python helper then
    # fills the slot's entry, so that the next one through that slot stays native.
    native_tail_calls: bool = False
    redirect: RedirectInfo = field(default_factory=RedirectInfo)
    errors: list[BaseException] = field(default_factory=list)  # exceptions of failed helpers


_local = threading.local()


def current() -> RunContext:
    found = current_or_none()
    if found is None:
        raise RuntimeError("no BPF program is running on this thread")
    return found


def current_or_none() -> RunContext | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


@contextmanager
def active(context: RunContext) -> Iterator[RunContext]:
    """Make context the current run for the duration. A packet region that follows its native
    context (runtime/run_memory.py PacketRegion) learns where the run's region table keeps it,
    so that every helper that moves the packet, native ones included, keeps the table on it."""
    stack = _local.__dict__.setdefault("stack", [])
    stack.append(context)
    bind_table = getattr(context.regions.named("packet"), "bind_table", None)
    if bind_table is not None:
        bind_table(context.env.regions or 0, context.env.region_count)
    try:
        yield context
    finally:
        if bind_table is not None:
            bind_table(0, 0)
        context.redirect.absorb(context.env)
        stack.pop()

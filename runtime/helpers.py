"""The helper registry: one entry per helper id, shared by the interpreter, the JIT and (later)
the verifier.

An implementation is a plain Python function of the five argument registers (unsigned 64-bit
ints) returning the new r0. The interpreter calls it directly; the JIT calls it through a ctypes
callback. Helpers that need runtime state (maps, the program's memory) close over it when the
runtime builds the registry for a program.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from bpfjit.errors import BPFError
from bpfjit.isa import MASK64

HelperFn = Callable[[int, int, int, int, int], int]


def errno_result(code: int) -> int:
    """A helper's failure, -errno, as the unsigned 64-bit r0 holds it."""
    return -code & MASK64


@dataclass(frozen=True)
class Prototype:
    """What the verifier will check a call against: the return kind and one kind per argument;
    for a kfunc of host objects, the name of their struct (runtime/kfuncs.py)."""
    ret: str = "integer"
    args: tuple[str, ...] = ()
    struct: str | None = None


@dataclass(frozen=True)
class Helper:
    id: int
    name: str
    impl: HelperFn
    proto: Prototype = field(default_factory=Prototype)
    # bpf_conformance's "unwind" convention: a zero result stops the whole program with r0 = 0.
    stops_on_zero: bool = False


class HelperRegistry:
    """Helpers by id (and by name for user registration)."""

    def __init__(self, helpers: list[Helper] | None = None):
        self._by_id: dict[int, Helper] = {}
        for helper in helpers or []:
            self.add(helper)

    def add(self, helper: Helper) -> Helper:
        if not 0 <= helper.id < 1 << 31:
            raise BPFError(f"helper id {helper.id} out of range")
        self._by_id[helper.id] = helper
        return helper

    def register(self, id: int, impl: HelperFn, name: str | None = None,
                 proto: Prototype | None = None, stops_on_zero: bool = False) -> Helper:
        return self.add(Helper(id, name or getattr(impl, "__name__", f"helper_{id}"), impl,
                               proto or Prototype(), stops_on_zero))

    def get(self, id: int) -> Helper | None:
        return self._by_id.get(id)

    def __contains__(self, id: int) -> bool:
        return id in self._by_id

    def __iter__(self) -> Iterator[Helper]:
        return iter(sorted(self._by_id.values(), key=lambda h: h.id))

    def copy(self) -> "HelperRegistry":
        return HelperRegistry(list(self))


def unwind_helper() -> Helper:
    """Helper #5 as bpf_conformance defines it: returns its argument, stops the program on 0.

    Only the conformance harness and the conformance plugin register it: in the kernel, helper 5
    is ktime_get_ns.
    """
    return Helper(5, "unwind", lambda a, b, c, d, e: a, Prototype("integer", ("integer",)), stops_on_zero=True)

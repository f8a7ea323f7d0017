"""The one check every helper makes on the pointers a program hands it.

The kernel's helpers trust their pointer arguments because the verifier proved them. bpfjit also
runs programs no verifier has seen (raw bytecode, assembly, hostile input), so every helper checks
each pointer against the memory the run may touch, for the exact size it reads or writes, before
using it: a bad pointer ends the run with a clean ``BPFRuntimeError`` (through
:class:`~bpfjit.runtime.status.HelperFault`) instead of a segfault, a write over foreign memory or
a read of uninitialised heap.

The memory a run may touch is its :class:`~bpfjit.runtime.memory.Regions`: maps, global data,
packet, context and, on the interpreter, its stack frames. On JIT runs the BPF stack frames are
allocas in the native thread stack, which has no region. A sandboxed (unverified) program's live
frames are listed in ``RunEnv.frames``; for a verified one, whose pointers the verifier proved,
the part of this thread's stack below the JIT's entry frame (``RunEnv.stack_top``, set by
jit/engine.py's entry loop) counts as the program's too.
"""
from __future__ import annotations

import ctypes
import threading

from . import run_context
from bpfjit.isa import STACK_SIZE

from .status import HelperFault

_libc = ctypes.CDLL(None, use_errno=True)
_libc.pthread_self.restype = ctypes.c_ulong
_libc.pthread_getattr_np.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
_libc.pthread_attr_getstack.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                        ctypes.POINTER(ctypes.c_size_t)]
_libc.pthread_attr_destroy.argtypes = [ctypes.c_void_p]
_stacks = threading.local()


def _thread_stack_low() -> int:
    """The lowest address of this thread's native stack (jitted BPF frames lie above it)."""
    if not hasattr(_stacks, "low"):
        attr = ctypes.create_string_buffer(128)  # pthread_attr_t (56 bytes on x86-64 glibc)
        low, size = ctypes.c_void_p(), ctypes.c_size_t()
        if _libc.pthread_getattr_np(_libc.pthread_self(), attr) == 0:
            _libc.pthread_attr_getstack(attr, ctypes.byref(low), ctypes.byref(size))
            _libc.pthread_attr_destroy(attr)
        _stacks.low = low.value or 0
    return _stacks.low


def _native_stack(run: run_context.RunContext) -> tuple[int, int] | None:
    """[low, high) of the native stack a JIT run's BPF frames live in; None on the interpreter."""
    if not run.native_stack or not run.env.stack_top:
        return None
    return _thread_stack_low(), run.env.stack_top


def _frame_room(run: run_context.RunContext, address: int) -> int:
    """Bytes from `address` to the end of the sandboxed JIT frame holding it (0: none): an
    unverified program's live frames are listed in RunEnv.frames (jit/lower.py)."""
    for low in run.env.frames[:run.env.frame_count]:
        if low <= address < low + STACK_SIZE:
            return low + STACK_SIZE - address
    return 0


def _room(address: int, write: bool) -> tuple[int, str]:
    """How many bytes from `address` on this run may access (0: none), and a note for errors."""
    run = run_context.current()
    region = run.regions.find(address, 1, write)
    if region is not None:
        if write and not region.writable:
            return 0, f" (read-only {region.name})"
        return region.start + region.size - address, ""
    framed = _frame_room(run, address)
    if framed:
        return framed, ""
    stack = _native_stack(run)
    if stack is not None and stack[0] <= address < stack[1]:
        return stack[1] - address, ""
    return 0, ""


def _fault(address: int, size: int, arg: int, write: bool, note: str) -> HelperFault:
    kind = "write" if write else "read"
    unit = "byte" if size == 1 else "bytes"
    return HelperFault(f"invalid {kind} of {size} {unit} at {address:#x}{note} (arg {arg})")


def accessible(address: int, size: int, write: bool = False) -> bool:
    """Whether the run may read (or write) all of [address, address + size)."""
    if size == 0:
        return True
    if address <= 0:
        return False
    run = run_context.current()
    region = run.regions.find(address, size, write)
    if region is not None:
        return region.writable or not write
    if _frame_room(run, address) >= size:
        return True
    stack = _native_stack(run)
    return stack is not None and stack[0] <= address and address + size <= stack[1]


def check(address: int, size: int, arg: int, write: bool = False) -> None:
    """Raise HelperFault unless the run may read (or write) [address, address + size); `arg`
    (1-5) names the argument register in the message."""
    if not accessible(address, size, write):
        raise _fault(address, size, arg, write, _room(address, write)[1] if address > 0 else "")


def read(address: int, size: int, arg: int) -> bytes:
    """The `size` bytes at `address`, checked."""
    check(address, size, arg)
    return ctypes.string_at(address, size) if size else b""


def write(address: int, data: bytes, arg: int) -> None:
    """Store `data` at `address`, checked for writability first."""
    check(address, len(data), arg, write=True)
    if data:
        ctypes.memmove(address, data, len(data))


def string(address: int, limit: int, arg: int) -> bytes:
    """The NUL-terminated string at `address` without its NUL, read no further than `limit`
    bytes nor past the end of the region it starts in (a string that runs off its region ends
    there). The first byte must be readable."""
    room = _room(address, False)[0] if address > 0 else 0
    if room == 0:
        raise _fault(address, 1, arg, False, "")
    data = ctypes.string_at(address, min(room, limit))
    end = data.find(b"\0")
    return data if end < 0 else data[:end]

"""The per-run record shared by both engines: how a run ended, and where it went wrong.

The JIT writes these fields from native code (the structure is passed to the compiled entry
point), the interpreter fills the same fields, and :func:`raise_for_status` turns them into the
same user-facing exception for either engine.
"""
from __future__ import annotations

import ctypes
import enum

from bpfjit.errors import BPFRuntimeError


class Status(enum.IntEnum):
    OK = 0
    UNWOUND = 1  # a helper asked to stop the program (bpf_conformance's "unwind" helper 5)
    BAD_CALLX = 2  # callx to a value that is neither a helper id nor a BPF function
    HELPER_FAILED = 3  # a Python helper raised
    CALL_DEPTH = 4  # a callx chain went deeper than MAX_CALL_FRAMES
    TAIL_CALL = 5  # bpf_tail_call succeeded: unwind, then run the target program


MAX_CALL_FRAMES = 8  # the kernel's limit: the main frame plus seven nested calls


class RunEnv(ctypes.Structure):
    """Layout known to the JIT (jit/lower.py reads and writes these fields by index)."""
    _fields_ = [
        ("status", ctypes.c_uint64),
        ("insn", ctypes.c_uint64),  # instruction index the status refers to
        ("value", ctypes.c_uint64),  # extra detail (the bad callx target, the failed helper's id)
        ("depth", ctypes.c_uint64),  # nested calls below the main frame (counted when callx can recurse)
        ("tail_calls", ctypes.c_uint64),  # successful bpf_tail_calls in this invocation
    ]


FIELD_STATUS, FIELD_INSN, FIELD_VALUE, FIELD_DEPTH = range(4)
MAX_TAIL_CALLS = 33


def raise_for_status(env: RunEnv, helper_error: BaseException | None = None, helper_name: str = "") -> None:
    """Raise the BPFRuntimeError a failed run deserves; return quietly for OK and UNWOUND."""
    status = Status(env.status)
    if status in (Status.OK, Status.UNWOUND, Status.TAIL_CALL):
        return
    if status == Status.BAD_CALLX:
        raise BPFRuntimeError(env.insn, f"callx to {env.value:#x}, which is neither a helper nor a BPF function")
    if status == Status.CALL_DEPTH:
        raise BPFRuntimeError(env.insn, f"more than {MAX_CALL_FRAMES} nested calls")
    name = f" ({helper_name})" if helper_name else ""
    raise BPFRuntimeError(env.insn, f"helper {env.value}{name} failed: {helper_error!r}")

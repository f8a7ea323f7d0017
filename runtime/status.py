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


class RunEnv(ctypes.Structure):
    """Layout known to the JIT (jit/lower.py reads and writes these fields by index)."""
    _fields_ = [
        ("status", ctypes.c_uint64),
        ("insn", ctypes.c_uint64),  # instruction index the status refers to
        ("value", ctypes.c_uint64),  # extra detail (the bad callx target)
    ]


FIELD_STATUS, FIELD_INSN, FIELD_VALUE = range(3)


def raise_for_status(env: RunEnv, helper_errors: list[BaseException] | None = None) -> None:
    """Raise the BPFRuntimeError a failed run deserves; return quietly for OK and UNWOUND."""
    status = Status(env.status)
    if status in (Status.OK, Status.UNWOUND):
        return
    if status == Status.BAD_CALLX:
        raise BPFRuntimeError(env.insn, f"callx to {env.value:#x}, which is neither a helper nor a BPF function")
    detail = f": {helper_errors[0]!r}" if helper_errors else ""
    raise BPFRuntimeError(env.insn, f"helper {env.value} failed{detail}")

"""The native twins: each benchmark's C source compiled for the host, called through ctypes.

Each source is compiled with its prelude (``cc -O2 -fPIC -include PRELUDE SOURCE.c``), as its own
translation unit, and all of them are linked into one shared object in a temporary directory.
The prelude turns ``BENCH(name)`` into ``uint64_t name(void *mem, uint64_t len)`` plus
``repeat_name(mem, len, n)``, which calls it n times through a volatile function pointer, so the
timed loop is native and the call can be neither inlined nor hoisted.
"""
from __future__ import annotations

import ctypes
import pathlib
import shutil
import subprocess
import tempfile
import time
from typing import Iterable

from bpfjit.errors import BPFError

from .cases import PROGS, Case

ENTRY_ARGS = [ctypes.c_void_p, ctypes.c_uint64]
REPEAT_ARGS = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]


class NativeBuildError(BPFError):
    """No C compiler, or the native twins did not compile."""


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build(cases: Iterable[Case], directory: pathlib.Path) -> ctypes.CDLL:
    """Compile the native twin of every case into directory/suite.so and load it."""
    cc = compiler()
    if cc is None:
        raise NativeBuildError("no C compiler (cc, gcc or clang) on PATH: the native column needs one")
    cases = [case for case in cases if case.native_twin]
    objects = []
    for source, prelude in sorted({(case.source, case.prelude) for case in cases}):
        obj = directory / f"{source}.o"
        _run([cc, "-O2", "-fPIC", "-c", "-include", str(PROGS / prelude), "-o", str(obj),
              str(PROGS / f"{source}.c")])
        objects.append(str(obj))
    library = directory / "suite.so"
    _run([cc, "-shared", "-o", str(library), *objects])
    lib = ctypes.CDLL(str(library))
    for case in cases:
        for symbol, argtypes in ((case.function, ENTRY_ARGS), (f"repeat_{case.function}", REPEAT_ARGS)):
            fn = getattr(lib, symbol)
            fn.argtypes, fn.restype = argtypes, ctypes.c_uint64
    return lib


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise NativeBuildError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")


class NativeLibrary:
    """The shared object's lifetime: built into a temporary directory removed on close()."""

    def __init__(self, cases: Iterable[Case]):
        self._tmp = tempfile.TemporaryDirectory(prefix="bpfjit-bench-")
        try:
            self.lib = build(cases, pathlib.Path(self._tmp.name))
        except BaseException:
            self._tmp.cleanup()
            raise

    def runner(self, case: Case, data: bytes) -> "NativeRun":
        return NativeRun(self.lib, case, data)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "NativeLibrary":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NativeRun:
    """One case's input in a native buffer, run n times by repeat_FUNCTION."""

    def __init__(self, lib: ctypes.CDLL, case: Case, data: bytes):
        self.buffer = ctypes.create_string_buffer(data, len(data))
        self.length = len(data)
        self.repeat = getattr(lib, f"repeat_{case.function}")

    def run(self, n: int) -> tuple[int, float]:
        """r0 of the last run and the mean ns per run."""
        start = time.perf_counter_ns()
        retval = self.repeat(self.buffer, self.length, n)
        return retval, (time.perf_counter_ns() - start) / n

    @property
    def memory(self) -> bytes:
        return self.buffer.raw[:self.length]

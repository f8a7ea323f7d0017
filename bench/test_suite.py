"""The userspace-BPF micro-suite: each program jitted, interpreted and as native C.

Each program has one source, bench/suite/NAME.c, written with BENCH(name): build.sh compiles it
for BPF with bpf_suite.h (a raw program: r1 = memory, r2 = its length; objects committed), and
this suite compiles it for the host with native_suite.h (`uint64_t name(void *mem, uint64_t
len)` plus its repeat harness), using the system `cc -O2 -shared -fPIC` in a temporary directory,
so the jitted and the native code start from the very same C:

``simple`` returns a constant; ``memory_a_plus_b`` sums two u64 in memory; ``log2_int`` xors the
integer log2 of 1024 u64; ``prime`` counts the primes below 10,000 by trial division;
``strcmp_full`` / ``strcmp_fail`` compare the two 1 MiB halves of memory byte by byte (identical /
differing at 27%); ``memcpy`` copies 1 MiB within a 2 MiB buffer with a byte loop; ``switch`` runs
a 64-case switch over 4096 i32.

Inputs come from random.Random(seed); every expected result is computed here in plain Python and
checked on the interpreter, the JIT and the native build before anything is timed. Timings in
extra_info are per run: the JIT's from test_run(repeat=N) (its repeat loop is native code), the
native one from repeat_NAME(mem, len, n), which calls NAME n times through a volatile function
pointer, the interpreter's from test_run on a smaller input where the full one would take too long.
"""
from __future__ import annotations

import ctypes
import dataclasses
import pathlib
import random
import shutil
import struct
import subprocess
import tempfile
import time
from typing import Callable

import pytest

import bpfjit

SUITE = pathlib.Path(__file__).resolve().parent / "suite"
MASK64 = (1 << 64) - 1
MIB = 1 << 20


# --- inputs and expected results, in plain Python ---------------------------------------------------

def data_u64(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def log2_data(count: int, seed: int = 2) -> bytes:
    rng = random.Random(seed)
    return data_u64([rng.getrandbits(rng.randint(0, 64)) for _ in range(count)])


def log2_expected(data: bytes) -> int:
    result = 0
    for (value,) in struct.iter_unpack("<Q", data):
        result ^= value.bit_length() - 1 if value else 0
    return result


def prime_expected(data: bytes) -> int:
    limit = struct.unpack_from("<Q", data)[0]
    sieve = bytearray([1]) * max(limit, 2)
    sieve[0:2] = b"\0\0"
    for n in range(2, int(limit ** 0.5) + 1):
        if sieve[n]:
            sieve[n * n::n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve[:limit])


def halves_data(half: int, differ_at: float | None, seed: int = 4) -> bytes:
    """Two halves of `half` random bytes, identical, or the second one differing at one byte."""
    first = random.Random(seed).randbytes(half)
    second = bytearray(first)
    if differ_at is not None:
        second[int(half * differ_at)] ^= 0x5A
    return first + bytes(second)


def strcmp_expected(data: bytes) -> int:
    half = len(data) // 2
    for i in range(half):
        if data[i] != data[half + i]:
            return i
    return half


def memcpy_data(half: int, seed: int = 5) -> bytes:
    return random.Random(seed).randbytes(half) + bytes(half)


def switch_data(count: int, seed: int = 6) -> bytes:
    rng = random.Random(seed)
    return struct.pack(f"<{count}i", *(rng.randint(-2 ** 31, 2 ** 31 - 1) for _ in range(count)))


def switch_expected(data: bytes) -> int:
    result = 0
    for (x,) in struct.iter_unpack("<i", data):
        result = ((result ^ (x & MASK64)) + (x & 63) * 0x9E3779B1 % 1000003) & MASK64
    return result


@dataclasses.dataclass
class Case:
    name: str                          # the benchmark, and its file stem in bench/suite unless source says
    function: str                      # BPF program / C function name
    data: Callable[[], bytes]          # the benchmark input
    expected: Callable[[bytes], int]   # plain-Python result for any input
    jit_repeat: int                    # runs per JIT / native timing round
    interp_data: Callable[[], bytes]   # input for the interpreter (smaller when the full one is slow)
    check_memory: bool = False         # the data after a run must be the expected memcpy result
    source: str = ""                   # file stem when several benchmarks share one program

    @property
    def stem(self) -> str:
        return self.source or self.name


CASES = [
    Case("simple", "simple", lambda: bytes(8), lambda d: 0, 2_000_000, lambda: bytes(8)),
    Case("memory_a_plus_b", "memory_a_plus_b", lambda: data_u64([0xFEDCBA9876543210, 0x123456789ABCDEF1]),
         lambda d: (struct.unpack_from("<Q", d)[0] + struct.unpack_from("<Q", d, 8)[0]) & MASK64,
         2_000_000, lambda: data_u64([0xFEDCBA9876543210, 0x123456789ABCDEF1])),
    Case("log2_int", "log2_int", lambda: log2_data(1024), log2_expected, 5_000, lambda: log2_data(128)),
    Case("prime", "prime", lambda: data_u64([10_000]), prime_expected, 4, lambda: data_u64([200])),
    # One program, two inputs: identical halves, or halves that differ at about 27%.
    Case("strcmp_full", "strcmp_halves", lambda: halves_data(MIB, None), strcmp_expected, 20,
         lambda: halves_data(1024, None), source="strcmp_halves"),
    Case("strcmp_fail", "strcmp_halves", lambda: halves_data(MIB, 0.27), strcmp_expected, 60,
         lambda: halves_data(1024, 0.27), source="strcmp_halves"),
    Case("memcpy", "memcpy_bench", lambda: memcpy_data(MIB), lambda d: len(d) // 2, 20,
         lambda: memcpy_data(1024), check_memory=True),
    Case("switch", "switch_bench", lambda: switch_data(4096), switch_expected, 1_000, lambda: switch_data(256)),
]
IDS = [case.name for case in CASES]
ROUNDS = 7
NATIVE_NS: dict[str, float] = {}
JIT_NS: dict[str, float] = {}


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def expected_memory(data: bytes) -> bytes:
    half = len(data) // 2
    return data[:half] * 2


# --- the native builds --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def native_lib():
    """All native builds in one shared object, made with the system compiler."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no system C compiler (cc)")
    with tempfile.TemporaryDirectory(prefix="bpfjit-suite-") as tmp:
        lib_path = pathlib.Path(tmp) / "suite.so"
        sources = sorted({str(SUITE / f"{case.stem}.c") for case in CASES})
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-include", str(SUITE / "native_suite.h"),
                        "-o", str(lib_path), *sources], check=True)
        lib = ctypes.CDLL(str(lib_path))
        for case in CASES:
            for symbol, argtypes in ((case.function, [ctypes.c_void_p, ctypes.c_uint64]),
                                     (f"repeat_{case.function}", [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64])):
                fn = getattr(lib, symbol)
                fn.argtypes, fn.restype = argtypes, ctypes.c_uint64
        yield lib


class NativeRun:
    """One case's input in a native buffer, run through repeat_NAME."""

    def __init__(self, lib, case: Case, data: bytes):
        self.buffer = ctypes.create_string_buffer(data, len(data))
        self.length = len(data)
        self.repeat = getattr(lib, f"repeat_{case.function}")

    def run(self, n: int) -> tuple[int, float]:
        start = time.perf_counter_ns()
        retval = self.repeat(self.buffer, self.length, n)
        return retval, (time.perf_counter_ns() - start) / n


def native_checked(lib, case: Case, data: bytes, expected: int) -> NativeRun:
    native = NativeRun(lib, case, data)
    retval, _ = native.run(1)
    assert retval == expected, f"native {case.name}: {retval:#x} != expected {expected:#x}"
    if case.check_memory:
        assert native.buffer.raw == expected_memory(data), f"native {case.name}: wrong memory"
    return native


def measure_native(lib, case: Case, data: bytes, expected: int, rounds: int = ROUNDS, repeat: int = 0) -> float:
    native = native_checked(lib, case, data, expected)
    repeat = repeat or case.jit_repeat
    native.run(repeat)  # warm-up
    return median([native.run(repeat)[1] for _ in range(rounds)])


def runs_for(ns_per_run: float, budget_ns: float = 10e6) -> int:
    return max(1, min(2_000_000, int(budget_ns / max(ns_per_run, 1.0))))


def jit_checked(case: Case, data: bytes, expected: int):
    prog = bpfjit.load(SUITE / f"{case.stem}.bpf.o").programs[case.function]
    result = prog.test_run(data, engine="jit")
    assert result.retval == expected, f"jit {case.name}: {result.retval:#x} != expected {expected:#x}"
    if case.check_memory:
        assert result.data_out == expected_memory(data), f"jit {case.name}: wrong memory"
    return prog


# --- the benchmarks ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_native(benchmark, native_lib, case: Case):
    data = case.data()
    expected = case.expected(data)
    native = native_checked(native_lib, case, data, expected)
    per_run: list[float] = []

    def run():
        retval, ns = native.run(case.jit_repeat)
        assert retval == expected
        per_run.append(ns)

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    NATIVE_NS[case.name] = median(per_run)
    benchmark.extra_info["ns_per_run"] = round(NATIVE_NS[case.name], 2)
    benchmark.extra_info["runs_per_round"] = case.jit_repeat
    benchmark.extra_info["input_bytes"] = len(data)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jit(benchmark, native_lib, case: Case):
    data = case.data()
    expected = case.expected(data)
    prog = jit_checked(case, data, expected)
    per_run: list[float] = []

    def run():
        result = prog.test_run(data, repeat=case.jit_repeat, engine="jit")
        assert result.retval == expected
        per_run.append(result.duration_ns)

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    JIT_NS[case.name] = median(per_run)
    if case.name not in NATIVE_NS:  # test_native deselected: measure it here
        NATIVE_NS[case.name] = measure_native(native_lib, case, data, expected)
    benchmark.extra_info["ns_per_run"] = round(JIT_NS[case.name], 2)
    benchmark.extra_info["native_ns_per_run"] = round(NATIVE_NS[case.name], 2)
    benchmark.extra_info["jit_over_native"] = round(JIT_NS[case.name] / NATIVE_NS[case.name], 3)
    benchmark.extra_info["runs_per_round"] = case.jit_repeat
    benchmark.extra_info["input_bytes"] = len(data)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_interp(benchmark, native_lib, case: Case):
    """The reference interpreter on the small input, with the JIT and native C on that same input."""
    data = case.interp_data()
    expected = case.expected(data)
    prog = jit_checked(case, data, expected)
    per_run: list[float] = []

    def run():
        result = prog.test_run(data, engine="interp")
        assert result.retval == expected, f"interp {case.name}: {result.retval:#x} != expected {expected:#x}"
        if case.check_memory:
            assert result.data_out == expected_memory(data), f"interp {case.name}: wrong memory"
        per_run.append(result.duration_ns)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)  # the warm-up round checks the result first
    interp_ns = median(per_run)
    repeat = runs_for(prog.test_run(data, repeat=100, engine="jit").duration_ns)
    jit_ns = median([prog.test_run(data, repeat=repeat, engine="jit").duration_ns for _ in range(3)])
    native_ns = measure_native(native_lib, case, data, expected, rounds=3, repeat=runs_for(jit_ns / 2))
    benchmark.extra_info["ns_per_run"] = round(interp_ns, 1)
    benchmark.extra_info["input_bytes"] = len(data)
    benchmark.extra_info["jit_ns_per_run_same_input"] = round(jit_ns, 2)
    benchmark.extra_info["native_ns_per_run_same_input"] = round(native_ns, 2)
    benchmark.extra_info["interp_over_jit"] = round(interp_ns / jit_ns, 1)

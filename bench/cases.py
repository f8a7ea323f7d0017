"""What each benchmark computes: its program, its input, and its expected result in plain Python.

Every expected result here is computed independently of the code under test, and every engine's
result is compared with it before anything is timed (see measure.py): a wrong result fails the
bench. Inputs come from random.Random(seed), so every run times the same work.
"""
from __future__ import annotations

import dataclasses
import pathlib
import random
import struct
from typing import Any, Callable

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
MASK64 = (1 << 64) - 1
MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark.

    The BPF object is progs/SOURCE.bpf.o (and progs/SOURCE.v4.bpf.o where -mcpu=v4 code differs);
    the native twin is SOURCE.c compiled with ``prelude``, exporting ``FUNCTION(mem, len)`` and
    ``repeat_FUNCTION(mem, len, n)``. ``check_state``, when given, is called with a freshly loaded
    object after ``runs`` runs of the program and raises AssertionError when the maps or globals
    are not what those runs must leave.
    """

    name: str
    source: str
    function: str
    data: Callable[[], bytes]
    expected: Callable[[bytes], int]
    repeat: int                        # runs per JIT / native timing round
    interp_data: Callable[[], bytes]   # the interpreter's input (smaller when the full one is slow)
    memory: Callable[[bytes], bytes] | None = None  # the data a run must leave, from its input
    prelude: str = "native_suite.h"
    group: str = "micro"               # "micro": the standard suite; "packet": XDP programs
    check_state: Callable[[Any, int], None] | None = None

    def object_path(self, cpu: str = "v3") -> pathlib.Path:
        return PROGS / (f"{self.source}.bpf.o" if cpu == "v3" else f"{self.source}.{cpu}.bpf.o")

    def cpu_variants(self) -> list[str]:
        """v3, then v4 where its code differs, and clang's default cpu where the program is also
        built as users build it without -mcpu (``default``)."""
        return ["v3"] + [cpu for cpu in ("v4", "default") if self.object_path(cpu).exists()]


def halves_copied(data: bytes) -> bytes:
    """memcpy's result: the first half copied over the second."""
    half = len(data) // 2
    return data[:half] * 2


# memcpy_regions: a constant-size copy between constant offsets of one buffer (bench/progs).
REGION, REGION_SRC, REGION_DST = 4096, 64, 8192


def region_copied(data: bytes) -> bytes:
    """memcpy_regions' result: REGION bytes from REGION_SRC copied to REGION_DST."""
    out = bytearray(data)
    out[REGION_DST:REGION_DST + REGION] = data[REGION_SRC:REGION_SRC + REGION]
    return bytes(out)


# --- inputs and expected results -----------------------------------------------------------------

def data_u64(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def a_plus_b_data() -> bytes:
    return data_u64([0xFEDCBA9876543210, 0x123456789ABCDEF1])


def a_plus_b_expected(data: bytes) -> int:
    a, b = struct.unpack_from("<QQ", data)
    return (a + b) & MASK64


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


MICRO_CASES = [
    Case("simple", "simple", "simple", lambda: bytes(8), lambda d: 0, 2_000_000, lambda: bytes(8)),
    Case("memory_a_plus_b", "memory_a_plus_b", "memory_a_plus_b", a_plus_b_data, a_plus_b_expected,
         2_000_000, a_plus_b_data),
    Case("log2_int", "log2_int", "log2_int", lambda: log2_data(1024), log2_expected, 5_000,
         lambda: log2_data(128)),
    Case("prime", "prime", "prime", lambda: data_u64([10_000]), prime_expected, 4,
         lambda: data_u64([200])),
    # One program, two inputs: identical halves, or halves that differ at about 27%.
    Case("strcmp_full", "strcmp_halves", "strcmp_halves", lambda: halves_data(MIB, None),
         strcmp_expected, 20, lambda: halves_data(1024, None)),
    Case("strcmp_fail", "strcmp_halves", "strcmp_halves", lambda: halves_data(MIB, 0.27),
         strcmp_expected, 60, lambda: halves_data(1024, 0.27)),
    Case("memcpy", "memcpy", "memcpy_bench", lambda: memcpy_data(MIB), lambda d: len(d) // 2, 20,
         lambda: memcpy_data(1024), memory=halves_copied),
    # The shape users write: a fixed-size byte loop between two regions of one buffer.
    Case("memcpy_regions", "memcpy_regions", "memcpy_regions_bench", lambda: memcpy_data(8192), lambda d: REGION,
         20_000, lambda: memcpy_data(8192), memory=region_copied),
    Case("switch", "switch", "switch_bench", lambda: switch_data(4096), switch_expected, 1_000,
         lambda: switch_data(256)),
]

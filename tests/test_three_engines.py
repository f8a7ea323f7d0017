"""Every tests/progs program the kernel accepts gives the same results on all three engines.

Opt-in (-m kernel): the kernel engine loads programs into the running kernel, in a child process.
Compared: retval, data_out, and the bytes of every map the kernel can read back (global data,
arrays, hashes). Per-CPU maps are left out: the kernel runs the program on whichever CPU it is
on, while bpfjit's slot 0 is the calling thread's.
"""
from __future__ import annotations

import ctypes
import pathlib

import pytest
from bpfjit.kernel import kernel_test_run
from bpfjit.runtime.map_types import MapType
from packets import IPPROTO_UDP, frame, ipv4, udp

import bpfjit
from bpfjit.errors import KernelEngineError

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_engine")]
PROGS = pathlib.Path(__file__).resolve().parent / "progs"

# Programs whose results depend on the machine or the moment (time, randomness, pids, cpus):
# they are compared on the other engines by their own tests, not here.
NONDETERMINISTIC = {("user_helper.o", "pid"), ("maps_helpers.o", "misc"), ("maps_helpers.o", "percpu_ops")}
COMPARED_TYPES = {MapType.ARRAY, MapType.HASH, MapType.LRU_HASH}


def packet() -> bytes:
    return frame(ipv4(IPPROTO_UDP, udp(53, b"data")))


def cases() -> list[tuple[pathlib.Path, str]]:
    found = []
    for obj in sorted(PROGS.glob("*.o")):
        try:
            names = list(bpfjit.load(obj).programs)
        except bpfjit.BPFError:
            continue  # objects bpfjit rejects (user_helper.o needs a user helper) have their own tests
        found += [(obj, name) for name in names if (obj.name, name) not in NONDETERMINISTIC]
    return found


def our_map_bytes(m) -> list[tuple[bytes, bytes]]:
    entries = []
    for key in m.keys():
        raw_key = key.to_bytes(m.key_size, "little") if isinstance(key, int) else bytes(key)
        address = m.lookup(raw_key)
        entries.append((raw_key, ctypes.string_at(address, m.value_size)))
    return sorted(entries)


def without_pointer_words(entries: list[tuple[bytes, bytes]], pointers) -> list[tuple[bytes, bytes]]:
    """Global data with its function/data pointer words zeroed: libbpf leaves them unrelocated
    (the word keeps its addend) where bpfjit resolves them (docs/semantics.md#global-data)."""
    masked = []
    for key, value in entries:
        value = bytearray(value)
        for offset, _ in pointers:
            value[offset:offset + 8] = bytes(8)
        masked.append((key, bytes(value)))
    return masked


@pytest.mark.parametrize("obj, program", cases(), ids=lambda v: v.name if isinstance(v, pathlib.Path) else v)
def test_same_results_on_interp_jit_and_kernel(obj, program):
    data = packet()
    try:
        kernel = kernel_test_run(obj, program, data, repeat=3)
    except KernelEngineError as exc:
        if "rejected" in str(exc):
            complaint = [line for line in str(exc).splitlines()
                         if line.strip() and not line.startswith(("processed ", "verification time"))][-1]
            pytest.skip(f"the kernel's verifier rejects {obj.name}:{program}: {complaint.strip()}")
        if ": 524:" in str(exc):  # ENOTSUPP: BPF_PROG_TEST_RUN does not run this program type
            pytest.skip(f"the kernel cannot test-run {obj.name}:{program} (ENOTSUPP)")
        raise
    for engine in ("reference", "jit"):
        ours = bpfjit.load(obj)
        result = ours.programs[program].test_run(data, repeat=3, engine=engine)
        assert result.retval & 0xFFFF_FFFF == kernel.retval, engine
        assert result.data_out == kernel.data_out, engine
        pointers = {d.name: d.pointers for d in ours.elf.data_sections}
        for name, m in ours.maps.items():
            if m.map_type not in COMPARED_TYPES:
                continue
            mine, theirs = our_map_bytes(m), sorted(kernel.map(name))
            if name in pointers:
                mine = without_pointer_words(mine, pointers[name])
                theirs = without_pointer_words(theirs, pointers[name])
            assert mine == theirs, f"{engine}: map {name}"

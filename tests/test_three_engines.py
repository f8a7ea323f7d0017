"""Every tests/progs program the kernel accepts gives the same results on all three engines.

Opt-in (-m kernel): the kernel engine loads programs into the running kernel, in a child process.
Compared: retval, data_out, and the bytes of every map the kernel can read back (global data,
arrays, hashes). Per-CPU maps are left out: the kernel runs the program on whichever CPU it is
on, while bpfjit's slot 0 is the calling thread's. Words whose value is each engine's own are
zeroed on both sides: pointers in global data (libbpf leaves them unrelocated), function-pointer
slots a program fills (a kernel address there, a function's token here) and kptr fields (the
kernel copies them out as zeros). Objects with CO-RE relocations are relocated against the
running kernel's types, as libbpf relocates them for the kernel engine.
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
from bpfjit.runtime.context import RUN_CTX
from bpfjit.runtime.btf.functions import function_pointers

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_engine")]
PROGS = pathlib.Path(__file__).resolve().parent / "progs"

# Programs whose results depend on the machine or the moment (time, randomness, pids, cpus):
# they are compared on the other engines by their own tests, not here.
NONDETERMINISTIC = {("user_helper.o", "pid"), ("maps_helpers.o", "misc"), ("maps_helpers.o", "percpu_ops")}
COMPARED_TYPES = {MapType.ARRAY, MapType.HASH, MapType.LRU_HASH}
KERNEL_BTF = pathlib.Path("/sys/kernel/btf/vmlinux")
CO_RE_OBJECTS = {"core_reloc.o"}  # relocated against KERNEL_BTF, as libbpf does in the kernel engine


def packet() -> bytes:
    return frame(ipv4(IPPROTO_UDP, udp(53, b"data")))


def cases() -> list[tuple[pathlib.Path, str]]:
    found = []
    for obj in sorted(PROGS.glob("*.o")):
        try:
            programs = bpfjit.load(obj).programs
        except bpfjit.BPFError:
            continue  # objects bpfjit rejects (user_helper.o needs a user helper) have their own tests
        # Programs that take a ctx and no packet (syscall ones) are compared by their own tests.
        found += [(obj, name) for name, program in programs.items()
                  if (obj.name, name) not in NONDETERMINISTIC and program.type.test_run != RUN_CTX]
    return found


def our_map_bytes(m) -> list[tuple[bytes, bytes]]:
    entries = []
    for key in m.keys():
        raw_key = key.to_bytes(m.key_size, "little") if isinstance(key, int) else bytes(key)
        address = m.lookup(raw_key)
        entries.append((raw_key, ctypes.string_at(address, m.value_size)))
    return sorted(entries)


def without_words(entries: list[tuple[bytes, bytes]], offsets: set[int]) -> list[tuple[bytes, bytes]]:
    """The entries with the 8-byte words at these value offsets zeroed."""
    masked = []
    for key, value in entries:
        value = bytearray(value)
        for offset in offsets:
            value[offset:offset + 8] = bytes(8)
        masked.append((key, bytes(value)))
    return masked


def engine_words(obj: bpfjit.Object, name: str) -> set[int]:
    """The value offsets of a map whose words each engine fills its own way: the pointers global
    data holds at load, its function-pointer slots, and kptr fields."""
    m = obj.maps[name]
    offsets = {offset for d in obj.elf.data_sections if d.name == name for offset, _ in d.pointers}
    if m.value_type_id:
        offsets |= {slot.offset for slot in function_pointers(obj.btf, m.value_type_id)}
    if m.kptrs is not None:
        offsets |= set(m.kptrs.offsets)
    return offsets


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
        if "not found in kernel or module BTFs" in str(exc):  # the host kfuncs a test registered
            pytest.skip(f"{obj.name}:{program} calls kfuncs of bpfjit's host, which the kernel lacks")
        raise
    for engine in ("reference", "jit"):
        # Against the kernel's types only the program under test loads (the kernel engine's load):
        # the object's other CO-RE programs read fields of its own types that vmlinux lacks.
        ours = bpfjit.load(obj, programs=[program], btf=KERNEL_BTF) if obj.name in CO_RE_OBJECTS \
            else bpfjit.load(obj)
        result = ours.programs[program].test_run(data, repeat=3, engine=engine)
        assert result.retval & 0xFFFF_FFFF == kernel.retval, engine
        assert result.data_out == kernel.data_out, engine
        for name, m in ours.maps.items():
            if m.map_type not in COMPARED_TYPES:
                continue
            words = engine_words(ours, name)
            mine, theirs = without_words(our_map_bytes(m), words), without_words(sorted(kernel.map(name)), words)
            assert mine == theirs, f"{engine}: map {name}"

"""Global sections that hold a bpf_spin_lock (tests/progs/lock_sections.c): Python's writes to
them never touch the lock word, as the kernel's map updates skip a value's special fields, so
a program holding the lock keeps it.

The threaded test runs the counting program from four threads while a fifth keeps writing the
sections from Python (the lock variables themselves, the setting beside them): every count stays
exact, and the lock words end released."""
from __future__ import annotations

import ctypes
import pathlib
import threading

import pytest

import bpfjit

from conftest import traffic_beside_tool

PROGS = pathlib.Path(__file__).parent / "progs"
PACKET = bytes(60)


def _lock_word(obj: bpfjit.Object, section: str) -> ctypes.c_uint32:
    m = obj.maps[section]
    return ctypes.c_uint32.from_address(m.value_address(0) + m.lock_offset)


def test_python_writes_leave_a_held_lock_alone():
    obj = bpfjit.load(PROGS / "lock_sections.o")
    stats, bss = _lock_word(obj, ".data.stats"), _lock_word(obj, ".bss")
    stats.value = bss.value = 1  # as if a program held both locks now
    obj.globals["stats_lock"] = {"val": 0}
    obj.section(".data.stats").hold = 5
    obj.globals["bss_lock"] = {"val": 0}
    obj.bss.bss_packets = 9
    obj.maps[".data.stats"][0] = {"stats_lock": {"val": 0}, "packets": 3, "bytes": 4, "hold": 6}
    assert (stats.value, bss.value) == (1, 1)
    # Everything around the lock word was written, and the lock reads as zero (its state is no value).
    assert obj.globals.as_dict() == {"hold": 6, "stats_lock": {"val": 0}, "packets": 3, "bytes": 4,
                                     "bss_lock": {"val": 0}, "bss_packets": 9}


@pytest.mark.parametrize("engine", ["jit", "interp"])
def test_threads_count_exactly_while_python_writes_the_sections(engine):
    obj = bpfjit.load(PROGS / "lock_sections.o")
    program = obj.programs["count"]
    if engine == "jit":
        program.compile()
    threads, runs, repeat = 4, 40, 500
    done = threading.Event()

    def traffic() -> None:
        for _ in range(runs):
            program.test_run(PACKET, repeat=repeat, engine=engine)

    def tool() -> None:
        setting = 0
        while not done.is_set():
            setting += 1
            obj.globals["stats_lock"] = {"val": 0}
            obj.globals["bss_lock"] = {"val": 0}
            obj.section(".data.stats").hold = 64 - setting % 2

    assert not any(t.is_alive() for t in traffic_beside_tool(traffic, threads, tool, done))
    total = threads * runs * repeat
    assert obj.globals["packets"] == total
    assert obj.globals["bytes"] == total * len(PACKET)
    assert obj.globals["bss_packets"] == total
    assert (_lock_word(obj, ".data.stats").value, _lock_word(obj, ".bss").value) == (0, 0)


def test_the_reference_interpreter_counts_under_the_section_lock():
    obj = bpfjit.load(PROGS / "lock_sections.o")
    obj.programs["count"].test_run(PACKET, repeat=7, engine="reference")
    assert (obj.globals["packets"], obj.globals["bytes"], obj.globals["bss_packets"]) == (7, 7 * 60, 7)

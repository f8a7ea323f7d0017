"""Global sections that hold a bpf_spin_lock (tests/progs/lock_sections.c: a `.data.NAME`
section and the plain `.bss`; lock_sections_bss.c: a `.bss.NAME` section): Python's writes to
them never touch the lock word, as the kernel's map updates skip a value's special fields, so
a program holding the lock keeps it. Two locks in one section (lock_sections_two.c) are refused
at load, as two in one map value are (docs/semantics.md#spin-locks).

The threaded tests run a counting program from several threads while one more keeps writing the
sections from Python (the lock variables themselves, the settings beside them): every count stays
exact (derived by hand: each run adds one, or the packet's length), and the lock words end
released."""
from __future__ import annotations

import ctypes
import pathlib
import threading
from typing import Callable

import pytest

import bpfjit

from conftest import ENGINES, traffic_beside_tool

PROGS = pathlib.Path(__file__).parent / "progs"
PACKET = bytes(60)
BSS_SECTION = ".bss.counts"  # lock_sections_bss.c's section


def _lock_word(obj: bpfjit.Object, section: str) -> ctypes.c_uint32:
    m = obj.maps[section]
    return ctypes.c_uint32.from_address(m.value_address(0) + m.lock_offset)


def _hammer(obj: bpfjit.Object, engine: str, threads: int, runs: int, repeat: int,
            write: Callable[[int], None]) -> None:
    """Run obj's `count` program on `threads` threads (`runs` runs of `repeat` each) while one
    more calls write(n) with n = 1, 2, ... (Python writing the sections) until they are done."""
    program = obj.programs["count"]
    program.prepare(engine)
    done = threading.Event()

    def traffic() -> None:
        for _ in range(runs):
            program.test_run(PACKET, repeat=repeat, engine=engine)

    def tool() -> None:
        setting = 0
        while not done.is_set():
            setting += 1
            write(setting)

    assert not any(t.is_alive() for t in traffic_beside_tool(traffic, threads, tool, done))


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


def test_python_writes_leave_a_held_lock_of_a_bss_section_alone():
    obj = bpfjit.load(PROGS / "lock_sections_bss.o")
    lock = _lock_word(obj, BSS_SECTION)
    lock.value = 1
    obj.globals["counts_lock"] = {"val": 0}
    obj.section(BSS_SECTION).hold = 5
    obj.maps[BSS_SECTION][0] = {"counts_lock": {"val": 0}, "hits": 3, "spins": 2, "hold": 6}
    assert lock.value == 1
    assert obj.globals.as_dict() == {"counts_lock": {"val": 0}, "hits": 3, "spins": 2, "hold": 6}


@pytest.mark.parametrize("engine", ["jit", "interp"])
def test_threads_count_exactly_while_python_writes_the_sections(engine):
    obj = bpfjit.load(PROGS / "lock_sections.o")

    def write(setting: int) -> None:
        obj.globals["stats_lock"] = {"val": 0}
        obj.globals["bss_lock"] = {"val": 0}
        obj.section(".data.stats").hold = 64 - setting % 2

    threads, runs, repeat = 4, 40, 500
    _hammer(obj, engine, threads, runs, repeat, write)
    total = threads * runs * repeat
    assert obj.globals["packets"] == total
    assert obj.globals["bytes"] == total * len(PACKET)
    assert obj.globals["bss_packets"] == total
    assert (_lock_word(obj, ".data.stats").value, _lock_word(obj, ".bss").value) == (0, 0)


# Threads, runs, repeats and the busy work of each run under the lock (lock_sections_bss.c's
# `hold`) per engine. The reference interpreter is ~1000 times slower, and a thread there that
# waits a second for the lock fails its run (stdhelpers.wait_for_spin_lock): on a loaded machine
# 32 spins under the lock made other threads wait that long, so it spins once.
BSS_LOAD = {"reference": (3, 4, 10, 1), "jit": (4, 40, 500, 32), "interp": (4, 40, 500, 32)}


@pytest.mark.parametrize("engine", ENGINES)
def test_threads_count_exactly_under_a_bss_section_s_lock_while_python_writes_it(engine):
    obj = bpfjit.load(PROGS / "lock_sections_bss.o")
    threads, runs, repeat, spins = BSS_LOAD[engine]
    obj.globals["hold"] = spins

    def write(_setting: int) -> None:
        obj.globals["counts_lock"] = {"val": 0}
        obj.section(BSS_SECTION).hold = spins

    _hammer(obj, engine, threads, runs, repeat, write)
    total = threads * runs * repeat
    assert (obj.globals["hits"], obj.globals["spins"]) == (total, total * spins)
    assert _lock_word(obj, BSS_SECTION).value == 0


def test_the_reference_interpreter_counts_under_the_section_lock():
    obj = bpfjit.load(PROGS / "lock_sections.o")
    obj.programs["count"].test_run(PACKET, repeat=7, engine="reference")
    assert (obj.globals["packets"], obj.globals["bytes"], obj.globals["bss_packets"]) == (7, 7 * 60, 7)


def test_two_locks_in_one_bss_section_are_refused_at_load():
    # first_lock is at offset 0 of .bss.pair, second_lock at 16 (llvm-objdump -t lock_sections_two.o).
    with pytest.raises(bpfjit.BTFError, match=r"^BTF: type id \d+: more than one 'struct bpf_spin_lock' "
                                              r"\(at offsets 0 and 16\)$"):
        bpfjit.load(PROGS / "lock_sections_two.o")

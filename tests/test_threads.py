"""Programs run from several Python threads at once (tests/progs/spinlock.c).

* bpf_spin_lock excludes: two threads bump a counter in a map value and one in a ``.bss.A``
  private section, each under its lock, as fast as they can for about a second; both counters
  must equal the exact number of runs. The increments are a load, some busy work and a store,
  so that without the lock the threads lose updates (checked by hand with no-op lock helpers:
  the JIT test then fails within its second).
* The GIL is released while jitted code runs: during one long native run of a loop with no helper
  calls, the main thread keeps running Python code.
"""
from __future__ import annotations

import pathlib
import threading
import time

from bpfjit.object import load

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
OBJ = PROGS / "spinlock.o"
PACKET = bytes(64)
XDP_PASS = 2
MASK64 = (1 << 64) - 1


def _lcg(acc: int, loops: int) -> int:
    """What the programs' loops compute: `loops` steps of an LCG from acc."""
    for i in range(loops):
        acc = (acc * 6364136223846793005 + i) & MASK64
    return acc


def _hammer(engine: str, seconds: float, batch: int, hold: int) -> None:
    obj = load(OBJ)
    obj.data.hold = hold
    prog = obj.programs["bump"]
    if engine == "jit":
        prog.compile()  # before the clock starts
    counters, private = obj.maps["counters"], obj.section(".bss.A")
    assert counters[0] == {"lock": {"val": 0}, "count": 0, "scratch": 0}
    assert private.gcount == 0

    start = threading.Barrier(2)
    runs = [0, 0]
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            start.wait()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                result = prog.test_run(PACKET, repeat=batch, engine=engine)
                assert result.retval == XDP_PASS
                runs[slot] += batch
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 30)
        assert not t.is_alive(), "a worker is stuck (a lock never released?)"
    assert not errors, errors
    assert runs[0] > 0 and runs[1] > 0
    total = runs[0] + runs[1]
    # Exact counts: no increment lost, none doubled; the lock words read back as zero; the last
    # run's busy work started from count total - 1.
    assert counters[0] == {"lock": {"val": 0}, "count": total, "scratch": _lcg(total - 1, hold)}
    assert private.gcount == total
    assert private.gscratch == _lcg(total - 1, hold)
    assert private.glock == {"val": 0}


def test_spin_lock_two_threads_jit():
    _hammer("jit", seconds=1.0, batch=200, hold=64)


def test_spin_lock_two_threads_interp():
    _hammer("reference", seconds=0.5, batch=5, hold=2)


def test_busy_loop_agrees_on_both_engines():
    obj = load(OBJ)
    obj.data.loops = 300
    for engine in ("reference", "jit"):
        obj.bss.busy_result = 0
        assert obj.programs["busy"].test_run(PACKET, engine=engine).retval == XDP_PASS
        assert obj.bss.busy_result == _lcg(len(PACKET), 300)


def test_gil_released_during_native_run():
    obj = load(OBJ)
    obj.data.loops = 256
    prog = obj.programs["busy"]
    prog.compile()
    repeat = 2_000_000

    started, done = threading.Event(), threading.Event()
    result = {}

    def worker() -> None:
        started.set()
        try:
            result["run"] = prog.test_run(PACKET, repeat=repeat)
        finally:
            done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    count, max_gap = 0, 0.0
    last = time.perf_counter()
    while not done.is_set():
        now = time.perf_counter()
        max_gap = max(max_gap, now - last)
        last = now
        count += 1
    thread.join()

    run = result["run"]
    assert run.retval == XDP_PASS
    assert obj.bss.busy_result == _lcg(len(PACKET), 256)
    native = run.duration_ns * repeat / 1e9  # seconds spent in the native repeat loop
    assert native > 0.1, f"the native run took only {native:.3f} s: too short to show anything"
    # Holding the GIL through native code would stall this loop for the whole run.
    assert count > 1000, f"the main thread advanced only {count} times in {native:.2f} s"
    assert max_gap < native / 4, f"the main thread stalled for {max_gap:.3f} s of {native:.3f} s"

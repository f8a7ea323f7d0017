"""Thread scaling: Python threads running one jitted program that counts into one shared hash map.

Each thread sends its own UDP flow through ``hash_counter`` (bench/progs/hash_counter.c), so the
threads share the map (its buckets, its element allocator, its lock-free lookups) but not a value
that would make every update contend for one cache line. A thread calls ``test_run(frame,
repeat=BATCH)`` in a loop: the repeat loop is native code, entered without the GIL, so the threads
run the program in parallel and only the loop around the calls is Python.

After a timed round, every flow's packet count must equal the runs its thread made (the counts
stay exact), and the throughput is runs per second over all threads. ``python -m bpfjit.bench.threads``
prints one line per thread count, with the ratio to one thread and the machine's CPU.
"""
from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass

import bpfjit
from bpfjit.packets import udp4_frame

from .cases import PROGS

BATCH = 50_000  # runs per test_run call (about a millisecond): the Python around each call, which holds
# the GIL for tens of microseconds, must not count (at 2,000 runs a call it was half the time, and
# two threads queueing for the GIL made fewer runs than one)
PROGRAM = "hash_counter"


@dataclass
class Round:
    threads: int
    runs: int
    seconds: float

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.seconds


def flow_frame(thread: int) -> bytes:
    """Thread `thread`'s packet: a UDP flow of its own (source port 10000 + thread)."""
    return udp4_frame(10_000 + thread, 53, bytes(18))


def run_round(threads: int, seconds: float, engine: str = "jit") -> Round:
    """Run `threads` threads for about `seconds` on one freshly loaded object; check the counts."""
    obj = bpfjit.load(str(PROGS / f"{PROGRAM}.bpf.o"), programs=[PROGRAM], ncpus=threads)
    program = obj.programs[PROGRAM]
    program.test_run(flow_frame(0), engine=engine)  # compile before the clock starts
    obj.maps["flow_counts"].clear()
    done = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def work(index: int) -> None:
        frame = flow_frame(index)
        start.wait()
        while not stop.is_set():
            program.test_run(frame, repeat=BATCH, engine=engine)
            done[index] += BATCH

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    counts = sorted(value["packets"] for value in obj.maps["flow_counts"].values())
    if counts != sorted(done):
        raise AssertionError(f"{threads} threads: the map counted {counts}, the threads ran {sorted(done)}")
    return Round(threads, sum(done), elapsed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="the most threads to try (default 2)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per thread count; the best is kept")
    args = parser.parse_args(argv)
    import cpuinfo  # slow to ask: only when reporting
    print(f"{PROGRAM} on the JIT, one UDP flow per thread, {cpuinfo.get_cpu_info().get('brand_raw', '?')}")
    base = None
    for threads in range(1, args.threads + 1):
        best = max((run_round(threads, args.seconds) for _ in range(args.rounds)), key=lambda r: r.runs_per_second)
        base = base or best.runs_per_second
        print(f"{threads} thread(s): {best.runs_per_second / 1e6:7.2f} M runs/s  "
              f"{best.runs_per_second / base:4.2f}x one thread  (counts exact)")


if __name__ == "__main__":
    main()

"""Runs over a capture: packets per second of a simple XDP filter run once per packet.

The filter is the bundled firewall (bpfjit/data/firewall.c: parse, a blocklist, per-source
counters in a hash map, an echo reply) on the bundled frames repeated to PACKETS packets, held in
memory (a capture file already read: the reader is not timed). bpfjit's figures are those of
``Program.run_capture`` (the native batches of the JIT, on one thread and on several, and of the
native interpreter), wall time with Python included; the kernel's is its test run
packet by packet (``--kernel``: BPF_PROG_TEST_RUN once per packet in the kernel engine's child,
the time of the syscalls alone). Every engine must count the same actions.
``python -m bpfjit.bench.capture`` prints one line per engine with the machine's CPU.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources

import bpfjit

PACKETS = 200_000


@dataclass
class Throughput:
    engine: str
    packets: int
    seconds: float
    actions: dict[int | None, int]

    @property
    def per_second(self) -> float:
        return self.packets / self.seconds


def firewall_path() -> str:
    return str(resources.files("bpfjit") / "data" / "firewall.o")


def frames(count: int = PACKETS) -> list[bytes]:
    """The bundled frames (bpfjit/data/packets.hex, one per line) repeated to `count`."""
    text = (resources.files("bpfjit") / "data" / "packets.hex").read_text()
    bodies = (line.partition("#")[0].strip() for line in text.splitlines())
    bundled = [bytes.fromhex(body) for body in bodies if body]
    return [bundled[i % len(bundled)] for i in range(count)]


def run_bpfjit(engine: str, packets: list[bytes], threads: int = 1) -> Throughput:
    """One pass of a fresh load over the packets, counting the verdicts."""
    program = bpfjit.load(firewall_path(), ncpus=max(threads, 1)).programs["firewall"]
    program.prepare(engine)
    started = time.perf_counter()
    actions: Counter = Counter()
    for batch in program.run_capture(packets, engine=engine, threads=threads, keep_data=False).batches():
        actions.update(batch.retvals)
    return Throughput(f"{engine}, {threads} thread{'s' if threads > 1 else ''}", len(packets),
                      time.perf_counter() - started, dict(actions))


def run_kernel(packets: list[bytes]) -> Throughput:
    """The kernel's test run, once per packet, on one load: the time of the syscalls."""
    from bpfjit.kernel import KernelRun, kernel_test_runs
    runs = kernel_test_runs(firewall_path(), "firewall", [KernelRun(data, None, 1) for data in packets],
                            timeout=120 + len(packets) / 1000, read_maps=())
    actions = Counter(None if isinstance(r, bpfjit.BPFError) else r.retval for r in runs.results)
    seconds = sum(r.syscall_ns for r in runs.results if not isinstance(r, bpfjit.BPFError)) / 1e9
    return Throughput("kernel test run, packet by packet", len(packets), seconds, dict(actions))


def measure(count: int = PACKETS, threads: int = 2, rounds: int = 3, kernel: bool = False) -> list[Throughput]:
    """The fastest of `rounds` passes of each engine (the JIT on 1..threads threads, the native
    interpreter, and with `kernel` the kernel's test run); AssertionError if one counts other
    actions than the JIT on one thread."""
    packets = frames(count)
    passes = [lambda threads=threads: run_bpfjit("jit", packets, threads) for threads in range(1, threads + 1)]
    passes.append(lambda: run_bpfjit("interp", packets))
    if kernel:
        passes.append(lambda: run_kernel(packets[:count // 4]))
    results, reference = [], None
    for run in passes:
        best = max((run() for _ in range(rounds)), key=lambda t: t.per_second)
        shares = {action: n / best.packets for action, n in best.actions.items()}
        reference = reference or shares
        if shares.keys() != reference.keys() or any(abs(shares[a] - reference[a]) > 0.01 for a in shares):
            raise AssertionError(f"{best.engine}: the actions {best.actions} differ from the JIT's")
        results.append(best)
    return results


def text(results: list[Throughput]) -> str:
    return "\n".join(f"{t.engine:<36} {t.per_second / 1e6:6.2f} M packets/s" for t in results) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=PACKETS, help=f"packets per pass (default {PACKETS:,})")
    parser.add_argument("--threads", type=int, default=2, help="the most threads to try (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="passes per engine; the fastest is kept")
    parser.add_argument("--kernel", action="store_true", help="also the kernel's test run (needs root)")
    args = parser.parse_args(argv)
    import cpuinfo  # slow to ask: only when reporting
    print(f"firewall over {args.packets:,} in-memory packets, {cpuinfo.get_cpu_info().get('brand_raw', '?')}")
    print(text(measure(args.packets, args.threads, args.rounds, args.kernel)), end="")


if __name__ == "__main__":
    main()

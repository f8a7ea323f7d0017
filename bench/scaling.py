"""Start-up and compile-time scaling (issue 12): what a user waits for before a first run.

* ``import bpfjit``, in a fresh interpreter (``python -X importtime``): the public API loads its
  modules lazily, and no LLVM until a program is compiled.
* A chain of N compares, ``if r1 == i return i`` for i < N (``early_returns``, the shape of a
  long C ``switch`` or rule list at -O2): verification, then the compile (lowering, LLVM passes,
  code generation and link), with the object-code cache off. 33,333 compares make a program of
  100,002 instructions.

``python -m bpfjit.bench.scaling`` prints one line per size (best of its rounds: this measures
the compiler, and the shared machine only ever adds time).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from bpfjit.isa import Insn

from .measure import code_cache

SIZES = (1_000, 8_000, 33_333)


def early_returns(n: int) -> list[Insn]:
    """r1 = *(u64 *)mem; if r1 == i return i, for i < n; return -1: a chain of n compares."""
    insns = [Insn(0x79, 1, 1, 0, 0)]
    for i in range(n):
        insns += [Insn(0x55, 1, 0, 2, i), Insn(0xB7, 0, 0, 0, i), Insn(0x95)]
    return insns + [Insn(0xB7, 0, 0, 0, -1), Insn(0x95)]


@dataclass
class Compile:
    compares: int
    instructions: int
    verify_seconds: float
    compile_seconds: float


def import_ms(rounds: int = 5) -> float:
    """The cumulative time of ``import bpfjit`` in a fresh interpreter, in ms (best of rounds)."""
    times = []
    for _ in range(rounds):
        report = subprocess.run([sys.executable, "-X", "importtime", "-c", "import bpfjit"],
                                capture_output=True, text=True, check=True).stderr
        line = next(line for line in report.splitlines() if re.search(r"\|\s+bpfjit$", line))
        times.append(int(line.split("|")[1]) / 1000)
    return min(times)


def compile_chain(compares: int, rounds: int = 3) -> Compile:
    """Verification and compile times of early_returns(compares), best of rounds, cache off."""
    from bpfjit.program import Program
    insns = early_returns(compares)
    verify = compile_ = float("inf")
    with code_cache({"BPFJIT_CACHE": "off"}):
        for _ in range(rounds):
            started = time.perf_counter()
            program = Program(insns)
            loaded = time.perf_counter()
            program.compile().close()
            verify, compile_ = min(verify, loaded - started), min(compile_, time.perf_counter() - loaded)
    return Compile(compares, len(insns), verify, compile_)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"import bpfjit: {import_ms():.1f} ms")
    print(f"{'compares':>9} {'instructions':>13} {'verify s':>9} {'compile s':>10}")
    for compares in SIZES:
        result = compile_chain(compares, args.rounds)
        print(f"{result.compares:>9,} {result.instructions:>13,} {result.verify_seconds:>9.2f} "
              f"{result.compile_seconds:>10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

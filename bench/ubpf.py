"""The micro-suite side by side with uBPF (github.com/iovisor/ubpf), built from source here.

Opt-in: set UBPF_DIR to a uBPF build directory (``bench/build_ubpf.sh UBPF_SOURCE`` makes one and
prints it). Without it, nothing here runs and ``main`` says so. bench/ubpf_driver.c is compiled
against that build's ``libubpf.a``; it runs a program's bytecode on uBPF's interpreter and on its
JIT, each on one buffer, and prints their results and median ns per run.

Only the micro cases apply: uBPF has no maps and the packet programs need their context; the
micro programs are raw ``f(mem, len)`` functions without helpers, which uBPF runs as
``r1 = mem, r2 = len`` exactly as bpfjit does. Each case runs the same object, function and data
as the bench (bench/cases.py, bench/measure.py), and uBPF's results are checked against the
case's expected ones before its times count. uBPF runs with its defaults: the interpreter checks
every load and store against the memory and its stack; the JIT checks none.

    UBPF_DIR=/path/to/ubpf/build python -m bpfjit.bench.ubpf [ROUNDS]
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import tempfile

from bpfjit.errors import BPFError

from . import measure
from .cases import MICRO_CASES, Case
from .native import compiler

DRIVER_SOURCE = pathlib.Path(__file__).resolve().parent / "ubpf_driver.c"
NATIVE_INTERP = "interp"  # bpfjit's native interpreter, as bpfjit.program.ENGINES names it
BUDGET_MS = 20  # about this long per timed round, as measure.runs_for sizes bpfjit's rounds


class UbpfError(BPFError):
    """uBPF is not where UBPF_DIR says, the driver did not build, or a run failed."""


@dataclasses.dataclass(frozen=True)
class UbpfBuild:
    """A uBPF build directory and the source tree it was configured from."""
    build: pathlib.Path
    source: pathlib.Path

    @property
    def library(self) -> pathlib.Path:
        return self.build / "lib" / "libubpf.a"

    @property
    def include_dirs(self) -> list[pathlib.Path]:
        return [self.source / "vm" / "inc", self.build / "vm"]  # ubpf.h, and the generated ubpf_config.h


def ubpf_build(env: dict[str, str] | None = None) -> UbpfBuild | None:
    """The build UBPF_DIR names (None when unset); UbpfError when it is not a built uBPF."""
    directory = (os.environ if env is None else env).get("UBPF_DIR")
    if not directory:
        return None
    build = pathlib.Path(directory).resolve()
    cache = build / "CMakeCache.txt"
    if not cache.is_file():
        raise UbpfError(f"UBPF_DIR={directory}: not a CMake build directory (no CMakeCache.txt); "
                        "make one with bench/build_ubpf.sh UBPF_SOURCE")
    source = next((line.split("=", 1)[1] for line in cache.read_text().splitlines()
                   if line.startswith("CMAKE_HOME_DIRECTORY:")), None)
    found = UbpfBuild(build, pathlib.Path(source)) if source else None
    if found is None or not found.library.is_file() or not (found.source / "vm" / "inc" / "ubpf.h").is_file():
        raise UbpfError(f"UBPF_DIR={directory}: no built uBPF there (lib/libubpf.a and its source's "
                        "vm/inc/ubpf.h); build it with bench/build_ubpf.sh UBPF_SOURCE")
    return found


@dataclasses.dataclass(frozen=True)
class UbpfTimes:
    """uBPF's median ns per run on one case; jit_ns is None when uBPF could not JIT it."""
    interp_ns: float
    jit_ns: float | None


class UbpfDriver:
    """bench/ubpf_driver.c built against one uBPF build, in a temporary directory (close() removes it)."""

    def __init__(self, build: UbpfBuild):
        self._tmp = tempfile.TemporaryDirectory(prefix="bpfjit-ubpf-")
        self.directory = pathlib.Path(self._tmp.name)
        self.executable = self.directory / "ubpf_driver"
        cc = compiler()
        if cc is None:
            self.close()
            raise UbpfError("no C compiler (cc, gcc or clang) on PATH: the uBPF driver needs one")
        includes = [f"-I{path}" for path in build.include_dirs]
        command = [cc, "-O2", "-o", str(self.executable), str(DRIVER_SOURCE), *includes, str(build.library), "-lm"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            self.close()
            raise UbpfError(f"building the uBPF driver failed: {' '.join(command)}\n{done.stderr.strip()}")

    def time(self, case: Case, code: bytes, data: bytes, rounds: int, budget_ms: float = BUDGET_MS) -> UbpfTimes:
        """Both uBPF engines on `data`, each checked against the case's expected result first
        (measure.WrongResult when it differs); rounds of about budget_ms each."""
        code_file, data_file, out = (self.directory / name for name in ("code.bin", "data.bin", "out"))
        code_file.write_bytes(code)
        data_file.write_bytes(data)
        done = subprocess.run([str(self.executable), str(code_file), str(data_file), str(rounds), str(budget_ms),
                               str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            raise UbpfError(f"{case.name}: {done.stderr.strip() or f'the uBPF driver exited with {done.returncode}'}")
        interp_retval, interp_ns, jit_retval, jit_ns = done.stdout.split()
        measure.check("uBPF interpreter", case, int(interp_retval), out.with_suffix(".interp").read_bytes(), data)
        jitted = float(jit_ns) >= 0
        if jitted:
            measure.check("uBPF JIT", case, int(jit_retval), out.with_suffix(".jit").read_bytes(), data)
        return UbpfTimes(float(interp_ns), float(jit_ns) if jitted else None)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "UbpfDriver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def case_bytecode(case: Case, cpu: str = "v3") -> bytes:
    """The bytecode of the case's function as the bench loads it (no maps, no relocations left)."""
    program, _ = measure.load_program(case, cpu)
    return program.bytecode


def time_interp(case: Case, data: bytes, rounds: int) -> float:
    """bpfjit's native interpreter on `data`, its native repeat loop sized to about BUDGET_MS a
    round from a first timing of 1,000 runs (one run's time is mostly Python's call: sized from
    it, a round of a short program would time that call, not the interpreter)."""
    program = measure.checked_program(case, "v3", NATIVE_INTERP, data)
    repeat = measure.runs_for(program.test_run(data, repeat=1000, engine=NATIVE_INTERP).duration_ns,
                              BUDGET_MS * 1e6)
    program.test_run(data, repeat=repeat, engine=NATIVE_INTERP)  # warm-up
    return measure.median([program.test_run(data, repeat=repeat, engine=NATIVE_INTERP).duration_ns
                           for _ in range(rounds)])


@dataclasses.dataclass(frozen=True)
class SideBySide:
    """One micro case: ns per run of bpfjit's native interpreter and JIT, and of uBPF's."""
    name: str
    interp_ns: float
    ubpf_interp_ns: float
    ubpf_jit_ns: float | None
    jit_ns: float

    @property
    def interp_over_ubpf(self) -> float:
        """The issue-16 ratio: bpfjit's native interpreter / uBPF's interpreter (< 1 is faster)."""
        return self.interp_ns / self.ubpf_interp_ns


def side_by_side(driver: UbpfDriver, cases: list[Case], rounds: int) -> list[SideBySide]:
    """Every case on all four engines in this one process, on the bench's full data."""
    rows = []
    for case in cases:
        data = case.data()
        ubpf = driver.time(case, case_bytecode(case), data, rounds)
        rows.append(SideBySide(case.name, time_interp(case, data, rounds), ubpf.interp_ns,
                               ubpf.jit_ns, measure.time_jit(case, "v3", data, rounds)))
    return rows


def table(rows: list[SideBySide]) -> str:
    """A Markdown table: ns per run per engine, and the interpreters' ratio."""
    def ns(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    lines = ["| program | bpfjit interp ns | uBPF interp ns | interp / uBPF | uBPF JIT ns | bpfjit JIT ns |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {row.name} | {ns(row.interp_ns)} | {ns(row.ubpf_interp_ns)} | {row.interp_over_ubpf:.2f}x "
              f"| {ns(row.ubpf_jit_ns)} | {ns(row.jit_ns)} |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rounds = int(args[0]) if args else 7
    try:
        build = ubpf_build()
        if build is None:
            print("UBPF_DIR is not set: nothing to compare with (build uBPF with bench/build_ubpf.sh UBPF_SOURCE "
                  "and set UBPF_DIR to the directory it prints)")
            return 0
        from .report import machine
        info = machine()
        with UbpfDriver(build) as driver:
            rows = side_by_side(driver, MICRO_CASES, rounds)
    except BPFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{info['cpu']} ({info['cores']} cores), median of {rounds} rounds, ns per run\n")
    print(table(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

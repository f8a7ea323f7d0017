"""Timing each engine on each benchmark, after checking that every engine computes the right thing.

All timings are per run, with call overhead left out: the JIT's from ``test_run(repeat=N)`` (its
repeat loop is native code), the native twin's from ``repeat_NAME(mem, len, n)``, the kernel's
from BPF_PROG_TEST_RUN's own repeat loop, the interpreter's from ``test_run`` on the case's
smaller ``interp_data``. The JIT/interpreter speedup compares both engines on that same smaller
input. Each figure is the median of ``rounds`` rounds.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import statistics
import tempfile
import time
from typing import Callable

import bpfjit
from bpfjit.errors import BPFError, VerifierError
from bpfjit import kernel

from .cases import Case
from .native import NativeLibrary


class WrongResult(BPFError):
    """An engine computed something other than the expected result: nothing gets timed."""


@dataclasses.dataclass
class CompileSplit:
    """Median milliseconds of a cold load + compile, phase by phase."""
    load: float
    verify: float  # the verifier with its structural checks and the ctx rewrite (those alone if rejected)
    lower: float
    optimise: float
    codegen: float  # emitting object code, and linking it into memory

    @property
    def total(self) -> float:
        return self.load + self.verify + self.lower + self.optimise + self.codegen


@dataclasses.dataclass
class Row:
    """One benchmark's results (ns per run; None where that engine did not run)."""
    name: str
    group: str
    cpu: str
    jit_ns: float | None = None
    native_ns: float | None = None
    interp_ns: float | None = None       # the native interpreter (engine="interp"), on the full data
    reference_ns: float | None = None    # the Python reference interpreter, on interp_data
    jit_small_ns: float | None = None    # the JIT on interp_data, for the reference's ratio
    kernel_ns: float | None = None
    kernel_note: str = ""
    verifier_note: str = ""  # why the verifier rejects the program (it then ran unverified)
    compile: CompileSplit | None = None
    hit_load_ms: float | None = None     # a load, then a compile served by the object-code cache
    hit_compile_ms: float | None = None

    @property
    def label(self) -> str:
        return self.name if self.cpu == "v3" else f"{self.name} ({self.cpu})"

    @property
    def jit_over_native(self) -> float | None:
        return self.jit_ns / self.native_ns if self.jit_ns and self.native_ns else None

    @property
    def interp_over_jit(self) -> float | None:
        return self.interp_ns / self.jit_ns if self.interp_ns and self.jit_ns else None

    @property
    def reference_over_jit(self) -> float | None:
        return self.reference_ns / self.jit_small_ns if self.reference_ns and self.jit_small_ns else None

    @property
    def jit_over_kernel(self) -> float | None:
        return self.jit_ns / self.kernel_ns if self.jit_ns and self.kernel_ns else None


def median(values: list[float]) -> float:
    return statistics.median(values)


def load_program(case: Case, cpu: str = "v3", verify: bool = False, fill: bool = True):
    """A fresh object's program, and the object (for its maps and globals).

    verify: through the verifier first, as the bench loads every program; one the verifier
    rejects (``rejection`` says why) loads unverified, so that it can still be timed.
    fill: the case's map entries written (what a run needs; a compile-time measure does not).
    """
    obj = bpfjit.load(case.object_path(cpu), programs=[case.function],
                      verify=verify and not rejection(case, cpu))
    for name, entries in (case.map_entries() if fill and case.map_entries else {}).items():
        for key, value in entries:
            obj.maps[name].update_elem(key, value)  # as the user updates them (not a program)
    return obj.programs[case.function], obj


def rejection(case: Case, cpu: str) -> str:
    """Why the verifier rejects the case's program ("" when it accepts it)."""
    return _rejection(str(case.object_path(cpu)), case.function)


@functools.lru_cache(maxsize=None)
def _rejection(path: str, function: str) -> str:
    """Asked once per process and program (cases may share one): giving up on a loop it cannot
    bound takes the verifier seconds."""
    try:
        bpfjit.load(path, programs=[function], verify=True)
    except VerifierError as error:
        return str(error)
    return ""


def check(engine: str, case: Case, retval: int, memory: bytes | None, data: bytes) -> None:
    expected = case.expected(data)
    if retval != expected:
        raise WrongResult(f"{case.name}: {engine} returned {retval:#x}, expected {expected:#x}")
    if case.memory is not None and memory != case.memory(data):
        raise WrongResult(f"{case.name}: {engine} left the wrong memory")


def checked_program(case: Case, cpu: str, engine: str, data: bytes):
    """A fresh program whose first run on `data` was checked (result, memory, maps and globals)."""
    return checked_object(case, cpu, engine, data)[0]


def checked_object(case: Case, cpu: str, engine: str, data: bytes):
    """checked_program's program, and its object (for a case that drains it between rounds)."""
    program, obj = load_program(case, cpu, verify=True)
    result = program.test_run(data, engine=engine)
    check(engine, case, result.retval, result.data_out, data)
    if case.check_state is not None:
        try:
            case.check_state(obj, 1)
        except AssertionError as exc:
            raise WrongResult(f"{case.name}: {engine} left the wrong state: {exc}") from None
    return program, obj


def runs_for(ns_per_run: float, budget_ns: float = 20e6, most: int = 5_000_000) -> int:
    """Runs that take about budget_ns: enough to swamp the clock and the call (at most `most`)."""
    return max(1, min(most, int(budget_ns / max(ns_per_run, 0.5))))


def timed_rounds(case: Case, program, obj, data: bytes, engine: str, repeat: int, rounds: int) -> float:
    """The median ns per run of `rounds` rounds of `repeat` runs, after the case's warm-up rounds;
    a case whose state fills up is drained before each round."""
    def one_round() -> float:
        if case.drain is not None:
            case.drain(obj)
        return program.test_run(data, repeat=repeat, engine=engine).duration_ns

    for _ in range(case.warmup_rounds):
        one_round()
    return median([one_round() for _ in range(rounds)])


def time_jit(case: Case, cpu: str, data: bytes, rounds: int, calibrate: bool = False) -> float:
    """calibrate: runs per round chosen to take about 20 ms on this data (for the interpreter's
    smaller input), instead of the case's repeat."""
    program, obj = checked_object(case, cpu, "jit", data)
    repeat = case.repeat
    if calibrate:
        repeat = runs_for(program.test_run(data, repeat=100).duration_ns, most=case.max_repeat)
    return timed_rounds(case, program, obj, data, "jit", repeat, rounds)


def time_reference(case: Case, cpu: str, data: bytes, rounds: int) -> float:
    program = checked_program(case, cpu, "reference", data)
    return median([program.test_run(data, engine="reference").duration_ns for _ in range(rounds)])


def time_interp(case: Case, cpu: str, data: bytes, rounds: int) -> float:
    """The native interpreter, its repeat loop sized to about 20 ms a round."""
    program, obj = checked_object(case, cpu, "interp", data)
    once = program.test_run(data, engine="interp").duration_ns  # mostly Python's call, for a short program
    probe = max(1, min(1000, int(1e6 // max(once, 1.0))))  # about 1 ms of runs: the call's cost fades
    repeat = runs_for(program.test_run(data, repeat=probe, engine="interp").duration_ns,
                      most=case.max_repeat)
    return timed_rounds(case, program, obj, data, "interp", repeat, rounds)


def time_native(native: NativeLibrary, case: Case, data: bytes, rounds: int) -> float:
    run = native.runner(case, data)
    retval, _ = run.run(1)
    check("native", case, retval, run.memory, data)
    run.run(case.repeat)  # warm-up
    return median([run.run(case.repeat)[1] for _ in range(rounds)])


def time_kernel(case: Case, cpu: str, data: bytes, rounds: int) -> tuple[float | None, str]:
    """The kernel JIT's ns per run, or None and why not (rejected, unavailable)."""
    if case.group == "micro":
        return None, ("not tried: a raw f(mem, len) program, and no kernel program type runs "
                      "on a MiB buffer it can loop over")
    entries = case.map_entries() if case.map_entries else None
    try:
        first = kernel.kernel_test_run(case.object_path(cpu), case.function, data, repeat=1, map_updates=entries)
        if first.retval != case.expected(data):
            raise WrongResult(f"{case.name}: kernel returned {first.retval:#x}, "
                              f"expected {case.expected(data):#x}")
        return median([kernel.kernel_test_run(case.object_path(cpu), case.function, data,
                                              repeat=case.repeat, map_updates=entries).duration_ns
                       for _ in range(rounds)]), ""
    except BPFError as exc:
        if isinstance(exc, WrongResult):
            raise
        return None, _kernel_reason(exc)


def _kernel_reason(exc: BPFError) -> str:
    """The kernel engine's complaint in one short line: what failed, and the verifier's last word."""
    first = str(exc).strip().splitlines()[0]
    reason = first.split(".o: ", 1)[-1]  # drop "kernel engine: loading program P of PATH"
    log = [line for line in (getattr(exc, "verifier_log", "") or "").splitlines()
           if line.strip() and not line.startswith("processed ")]
    return f"{reason}: {log[-1].strip()}" if log else reason


@contextlib.contextmanager
def code_cache(setting: dict[str, str]):
    """Run with the object-code cache set by these environment variables (see jit/cache.py)."""
    saved = {name: os.environ.get(name) for name in ("BPFJIT_CACHE", "BPFJIT_CACHE_DIR")}
    os.environ.update(setting)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def compile_split(case: Case, cpu: str, rounds: int) -> CompileSplit:
    """Cold load + verify + lower + optimise + codegen (+ link), median of `rounds` fresh loads,
    with the object-code cache off."""
    samples = []
    with code_cache({"BPFJIT_CACHE": "off"}):
        for _ in range(rounds):
            started = time.perf_counter()
            program, _ = load_program(case, cpu, verify=True, fill=False)
            loaded = time.perf_counter() - started
            times = program.compile().times
            samples.append((loaded - program.check_seconds, program.check_seconds,
                            times.lower, times.optimise, times.codegen + times.link))
    return CompileSplit(*(1e3 * median([s[i] for s in samples]) for i in range(5)))


def cache_hit_ms(case: Case, cpu: str, rounds: int) -> tuple[float, float]:
    """Milliseconds of a load, and of a compile served by the object-code cache (median)."""
    with tempfile.TemporaryDirectory(prefix="bpfjit-cache-") as folder, \
            code_cache({"BPFJIT_CACHE": "on", "BPFJIT_CACHE_DIR": folder}):
        load_program(case, cpu, verify=True, fill=False)[0].compile()  # fills the cache
        loads, compiles = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            program, _ = load_program(case, cpu, verify=True, fill=False)
            loaded = time.perf_counter()
            compiled = program.compile()
            if not compiled.times.cache_hit:
                raise WrongResult(f"{case.name}: the second compile missed the object-code cache")
            loads.append(loaded - started)
            compiles.append(time.perf_counter() - loaded)
    return 1e3 * median(loads), 1e3 * median(compiles)


Step = Callable[[str], None]


def measure(case: Case, cpu: str, native: NativeLibrary | None, rounds: int, kernel_engine: bool,
            step: Step = lambda what: None) -> Row:
    """Every engine on one case; `step` is told what is about to run (for a progress bar)."""
    row = Row(case.name, case.group, cpu)
    step(f"{case.name}: verify")
    row.verifier_note = rejection(case, cpu)
    data, small = case.data(), case.interp_data()
    step(f"{case.name}: compile")
    row.compile = compile_split(case, cpu, rounds)
    row.hit_load_ms, row.hit_compile_ms = cache_hit_ms(case, cpu, rounds)
    step(f"{case.name}: jit")
    row.jit_ns = time_jit(case, cpu, data, rounds)
    step(f"{case.name}: reference interpreter")
    row.reference_ns = time_reference(case, cpu, small, max(1, rounds // 2))
    row.jit_small_ns = time_jit(case, cpu, small, rounds, calibrate=True)
    step(f"{case.name}: native interpreter")
    row.interp_ns = time_interp(case, cpu, data, rounds)
    step(f"{case.name}: native")
    if native is not None and case.native_twin:
        row.native_ns = time_native(native, case, data, rounds)
    step(f"{case.name}: kernel")
    if kernel_engine:
        row.kernel_ns, row.kernel_note = time_kernel(case, cpu, data, rounds)
    return row


STEPS_PER_CASE = 7

"""The benchmark suite under pytest-benchmark: each program jitted, interpreted and as native C.

The cases (bench/cases.py, bench/packets.py), the native builds (bench/native.py) and the
checks (bench/measure.py) are the ones ``bpfjit bench`` uses; see those modules for what each
program computes and how each engine is timed. Every result is checked against its plain-Python
expected value before anything is timed. Per-run figures land in each benchmark's extra_info:
the JIT's come from test_run(repeat=N) (a native loop), the native twin's from repeat_NAME. The
helper-heavy programs have no native twin; a program whose state fills up (a ring buffer) is
drained before each round, outside the timing.
Programs load through the verifier; one it rejects loads unverified, and test_compile_cold's
extra_info says why.
"""
from __future__ import annotations

import pytest

from bpfjit.bench import measure
from bpfjit.bench.native import NativeLibrary, NativeBuildError
from bpfjit.bench.suite import CASES

VARIANTS = [(case, cpu) for case in CASES for cpu in case.cpu_variants()]
IDS = [case.name if cpu == "v3" else f"{case.name}-{cpu}" for case, cpu in VARIANTS]
ROUNDS = 7
NATIVE_NS: dict[str, float] = {}
TWINNED = [case for case in CASES if case.native_twin]


@pytest.fixture(scope="session")
def native():
    try:
        library = NativeLibrary(TWINNED)
    except NativeBuildError as exc:
        pytest.skip(str(exc))
    yield library
    library.close()


def record(benchmark, per_run: list[float], case, data: bytes) -> float:
    ns = measure.median(per_run)
    benchmark.extra_info.update(ns_per_run=round(ns, 2), runs_per_round=case.repeat, input_bytes=len(data))
    return ns


def drained(case, obj):
    """pedantic's setup for a case that drains its state before each round (else None)."""
    return None if case.drain is None else lambda: case.drain(obj)


@pytest.mark.parametrize("case", TWINNED, ids=[case.name for case in TWINNED])
def test_native(benchmark, native, case):
    data = case.data()
    run = native.runner(case, data)
    retval, _ = run.run(1)
    measure.check("native", case, retval, run.memory, data)
    per_run: list[float] = []

    def one_round():
        retval, ns = run.run(case.repeat)
        per_run.append(ns)

    benchmark.pedantic(one_round, rounds=ROUNDS, warmup_rounds=1)
    NATIVE_NS[case.name] = record(benchmark, per_run, case, data)


@pytest.mark.parametrize("case, cpu", VARIANTS, ids=IDS)
def test_jit(benchmark, request, case, cpu):
    data = case.data()
    program, obj = measure.checked_object(case, cpu, "jit", data)
    per_run: list[float] = []

    def one_round():
        per_run.append(program.test_run(data, repeat=case.repeat, engine="jit").duration_ns)

    benchmark.pedantic(one_round, setup=drained(case, obj), rounds=ROUNDS, warmup_rounds=case.warmup_rounds)
    jit_ns = record(benchmark, per_run, case, data)
    if not case.native_twin:
        return
    native = request.getfixturevalue("native")
    if case.name not in NATIVE_NS:  # test_native deselected: measure it here
        NATIVE_NS[case.name] = measure.time_native(native, case, data, ROUNDS)
    benchmark.extra_info["native_ns_per_run"] = round(NATIVE_NS[case.name], 2)
    benchmark.extra_info["jit_over_native"] = round(jit_ns / NATIVE_NS[case.name], 3)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_interp(benchmark, case):
    """The native interpreter on the case's full input, its repeat loop in native code."""
    data = case.data()
    program, obj = measure.checked_object(case, "v3", "interp", data)
    per_run: list[float] = []

    def one_round():
        per_run.append(program.test_run(data, repeat=case.repeat, engine="interp").duration_ns)

    benchmark.pedantic(one_round, setup=drained(case, obj), rounds=ROUNDS, warmup_rounds=case.warmup_rounds)
    record(benchmark, per_run, case, data)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_reference(benchmark, case):
    """The reference interpreter on the case's small input, and the JIT on that same input."""
    data = case.interp_data()
    program = measure.checked_program(case, "v3", "reference", data)
    per_run: list[float] = []

    def one_round():
        per_run.append(program.test_run(data, engine="reference").duration_ns)

    benchmark.pedantic(one_round, rounds=3, warmup_rounds=1)
    reference_ns = record(benchmark, per_run, case, data)
    jit_ns = measure.time_jit(case, "v3", data, 3, calibrate=True)
    benchmark.extra_info["jit_ns_per_run_same_input"] = round(jit_ns, 2)
    benchmark.extra_info["reference_over_jit"] = round(reference_ns / jit_ns, 1)


@pytest.mark.parametrize("case, cpu", VARIANTS, ids=IDS)
def test_compile_cold(benchmark, case, cpu, monkeypatch):
    """Load + compile with the object-code cache off; extra_info splits it by phase."""
    split = measure.compile_split(case, cpu, ROUNDS)
    benchmark.extra_info.update({f"{phase}_ms": round(getattr(split, phase), 3)
                                 for phase in ("load", "verify", "lower", "optimise", "codegen", "total")})
    benchmark.extra_info["verifier_rejection"] = measure.rejection(case, cpu)
    monkeypatch.setenv("BPFJIT_CACHE", "off")
    benchmark.pedantic(lambda: measure.load_program(case, cpu, verify=True)[0].compile(), rounds=3, warmup_rounds=0)


@pytest.mark.parametrize("case, cpu", VARIANTS, ids=IDS)
def test_compile_cache_hit(benchmark, case, cpu, monkeypatch, tmp_path):
    """A compile served by the object-code cache (the load is timed apart, in extra_info)."""
    load_ms, compile_ms = measure.cache_hit_ms(case, cpu, ROUNDS)
    benchmark.extra_info.update(load_ms=round(load_ms, 3), compile_ms=round(compile_ms, 3))
    monkeypatch.setenv("BPFJIT_CACHE_DIR", str(tmp_path))
    measure.load_program(case, cpu, verify=True)[0].compile()
    programs = iter([measure.load_program(case, cpu, verify=True)[0] for _ in range(6)])
    benchmark.pedantic(lambda: next(programs).compile(), rounds=5, warmup_rounds=1)

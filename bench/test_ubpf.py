"""uBPF, built from source, computes what every micro case expects (bench/ubpf.py).

Opt-in: without UBPF_DIR (a uBPF build directory, made by bench/build_ubpf.sh) the module skips.
The runs are short (the cases' smaller interpreter inputs, one timed run each): this checks that
the side-by-side figures compare the same computation, not how fast it is.
"""
from __future__ import annotations

import dataclasses

import pytest

from bpfjit.bench import measure, ubpf
from bpfjit.program import Program
from bpfjit.bench.cases import MICRO_CASES

BUILD = ubpf.ubpf_build()
if BUILD is None:
    pytest.skip("UBPF_DIR is not set: build uBPF with bench/build_ubpf.sh UBPF_SOURCE and set UBPF_DIR "
                "to the directory it prints", allow_module_level=True)

ONE_RUN_MS = 1e-6  # a round budget below any run's time: each round is one run


@pytest.fixture(scope="module")
def driver():
    with ubpf.UbpfDriver(BUILD) as built:
        yield built


@pytest.mark.parametrize("case", MICRO_CASES, ids=[case.name for case in MICRO_CASES])
def test_ubpf_computes_the_expected_result(driver, case):
    times = driver.time(case, ubpf.case_bytecode(case), case.interp_data(), rounds=1, budget_ms=ONE_RUN_MS)
    assert times.interp_ns > 0
    assert times.jit_ns is not None and times.jit_ns > 0


def test_a_wrong_result_is_refused(driver):
    case = next(case for case in MICRO_CASES if case.name == "log2_int")
    wrong = dataclasses.replace(case, expected=lambda data: case.expected(data) ^ 1)
    with pytest.raises(measure.WrongResult, match="uBPF interpreter returned"):
        driver.time(wrong, ubpf.case_bytecode(case), case.interp_data(), rounds=1, budget_ms=ONE_RUN_MS)


def test_memory_the_program_leaves_is_checked(driver):
    # memcpy's result without the copy: the right r0 (half the length), the memory untouched.
    case = next(case for case in MICRO_CASES if case.memory is not None)
    no_copy = Program.from_asm("mov %r0, %r2\nrsh %r0, 1\nexit").bytecode
    with pytest.raises(measure.WrongResult, match="left the wrong memory"):
        driver.time(case, no_copy, case.interp_data(), rounds=1, budget_ms=ONE_RUN_MS)

"""bpfjit against the Linux selftests' packet programs and the kernel's BPF_PROG_TEST_RUN results
(issue 15): every case of ../shared/kernel-progs on every engine (see tests/kernel_progs.py).

A case must give the kernel's answer, unless tests/kernel_progs_known.txt lists it with the
reason it differs; a listed case must still differ, so the list cannot go stale. The figures test
keeps the objects that load and the cases that agree from going down: its floors are today's.
"""
from __future__ import annotations

import pathlib

import kernel_progs
import pytest
from conftest import ENGINES

KNOWN_FILE = pathlib.Path(__file__).resolve().parent / "kernel_progs_known.txt"

# Today's figures; later work may only raise them. Before the XDP helpers: 6 objects, 86 cases.
FLOORS = {"objects_loading": 26, "cases_agreeing": 186}


def known_differences() -> dict[str, str]:
    """case key (object:program:type/case) -> why bpfjit's answer differs from the kernel's."""
    entries = [line.split(None, 1) for line in KNOWN_FILE.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    malformed = [" ".join(entry) for entry in entries if len(entry) != 2 or "/" not in entry[0]]
    if malformed:
        raise ValueError(f"{KNOWN_FILE.name}: want 'object:program:type/case  reason', got {malformed[0]!r}")
    return {key: reason.strip() for key, reason in entries}


def _case_params() -> list:
    """One parameter per case of the corpus; one "corpus-absent" parameter without it, which
    turns into the skip (or failure) when the test runs."""
    if not kernel_progs.KERNEL_PROGS.present():
        return [pytest.param(None, None, id="corpus-absent")]
    return [pytest.param(entry.key, entry.case_key(case), id=entry.case_key(case))
            for entry in kernel_progs.load_manifest(kernel_progs.KERNEL_PROGS.path) for case in entry.cases]


def _folder(key: str | None) -> pathlib.Path:
    folder = kernel_progs.KERNEL_PROGS.require()  # skips (or fails) without the corpus
    if key is None:
        pytest.fail("the kernel-progs corpus appeared during the run: run the tests again", pytrace=False)
    return folder


@pytest.mark.parametrize(("entry_key", "case_key"), _case_params())
def test_case_gives_the_kernels_answer(entry_key, case_key, engine):
    results = kernel_progs.corpus_results(_folder(entry_key), engine)[entry_key]
    result = next(c for c in results.cases if c.key == case_key)
    known = known_differences().get(case_key)
    if known is not None:
        assert not result.agrees, f"{case_key} now gives the kernel's answer: remove it from {KNOWN_FILE.name}"
        pytest.xfail(known)
    assert result.agrees, result.difference


def test_known_differences_name_cases_of_the_corpus():
    folder = kernel_progs.KERNEL_PROGS.require()
    keys = {entry.case_key(case) for entry in kernel_progs.load_manifest(folder) for case in entry.cases}
    assert set(known_differences()) <= keys


def test_figures_do_not_go_down():
    folder = kernel_progs.KERNEL_PROGS.require()
    figures = kernel_progs.figures(folder, ENGINES)
    print(figures.summary())
    assert figures.objects_loading >= FLOORS["objects_loading"], figures.summary()
    assert min(figures.cases_agreeing.values()) >= FLOORS["cases_agreeing"], figures.summary()

"""Shared fixtures: the data the repository does not ship, and the bpf_conformance conventions.

Two test corpora live outside the repository (CI puts them beside the checkout, in ../shared):
the bpf_conformance suite and the kernel's verifier selftests. Each is found through an
environment variable. A test that needs an absent corpus skips with a one-line reason naming the
variable, so a fresh clone passes on its own; CI sets BPFJIT_REQUIRE_OUTSIDE_DATA=1, which turns
that absence into a failure, so CI never passes by skipping the suites.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import threading
from typing import Callable

import pytest
from bpfjit import asm
from bpfjit.runtime.helpers import HelperRegistry, unwind_helper

REPO = pathlib.Path(__file__).resolve().parent.parent
ENGINES = ("reference", "jit", "interp")  # every engine (bpfjit.program.ENGINES), the oracle first
REQUIRE_OUTSIDE_DATA = "BPFJIT_REQUIRE_OUTSIDE_DATA"


@dataclasses.dataclass(frozen=True)
class OutsideData:
    """A folder of test data the repository does not ship: where it is, and what to do without it."""

    variable: str  # the environment variable that names the folder
    default: pathlib.Path  # where CI puts it when the variable is unset
    what: str  # what the folder holds, for the skip reason

    @property
    def path(self) -> pathlib.Path:
        return pathlib.Path(os.environ.get(self.variable) or self.default)

    def present(self) -> bool:
        return self.path.is_dir()

    def require(self) -> pathlib.Path:
        """The folder, for a test (or fixture) that needs it. When it is absent the test skips with
        a one-line reason, or fails under BPFJIT_REQUIRE_OUTSIDE_DATA=1."""
        folder = self.path
        if not folder.is_dir():
            reason = f"{self.what} not found at {folder}: set {self.variable} to its folder"
            if os.environ.get(REQUIRE_OUTSIDE_DATA) == "1":
                pytest.fail(f"{reason} ({REQUIRE_OUTSIDE_DATA}=1)", pytrace=False)
            pytest.skip(reason)
        return folder


CONFORMANCE = OutsideData("BPFJIT_CONFORMANCE_DIR", REPO.parent / "shared" / "conformance" / "tests",
                          "the bpf_conformance suite (its tests/ folder)")
KERNEL_VERIFIER = OutsideData("BPFJIT_KERNEL_VERIFIER_DIR", REPO.parent / "shared" / "kernel-verifier",
                              "the kernel verifier selftest corpus")


def conformance_dir() -> pathlib.Path:
    """The bpf_conformance tests/ folder (skips or fails the calling test when it is absent)."""
    return CONFORMANCE.require()


def kernel_verifier_dir() -> pathlib.Path:
    """The kernel verifier corpus folder (skips or fails the calling test when it is absent)."""
    return KERNEL_VERIFIER.require()


def conformance_params() -> list:
    """pytest parameters, one per conformance file, with the file's name as id. Without the suite
    there is a single "suite-absent" parameter (None), which conformance_case turns into the skip
    or failure: the suite's tests then report why they did not run instead of vanishing."""
    if not CONFORMANCE.present():
        return [pytest.param(None, id="suite-absent")]
    return [pytest.param(path, id=path.stem) for path in sorted(CONFORMANCE.path.glob("*.data"))]


def conformance_case(path: pathlib.Path | None) -> asm.TestFile:
    """The parsed conformance file of a conformance_params parameter."""
    if path is None:  # the suite was absent when the tests were collected
        conformance_dir()  # skips, or fails when outside data is required
        pytest.fail("the bpf_conformance suite appeared during the run: run the tests again", pytrace=False)
    return asm.parse_test_file(path.read_text())


def conformance_helpers() -> HelperRegistry:
    """bpf_conformance's helper set: only #5, "unwind"."""
    return HelperRegistry([unwind_helper()])


def traffic_beside_tool(traffic: Callable[[], None], copies: int, tool: Callable[[], None],
                        done: threading.Event) -> list[threading.Thread]:
    """Run `copies` threads of traffic while one thread runs tool (a Python tool changing what the
    programs see), until the traffic ends; then set done, which the tool stops on. Returns every
    thread, for the caller to check none hangs."""
    workers = [threading.Thread(target=traffic) for _ in range(copies)]
    beside = threading.Thread(target=tool)
    beside.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    done.set()
    beside.join(timeout=10)
    return workers + [beside]


@pytest.fixture
def kernel_engine():
    """For tests marked kernel (the hook below runs them only with -m kernel): skip when this
    machine's kernel refuses BPF programs."""
    from bpfjit.kernel import kernel_available
    available, why = kernel_available()
    if not available:
        pytest.skip(f"kernel engine unavailable: {why}")


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


def pytest_configure(config):
    """The object-code cache of this test session starts empty and lives in a temporary folder
    (subprocesses inherit it), never in the user's ~/.cache."""
    folder = tempfile.mkdtemp(prefix="bpfjit-test-cache-")
    os.environ["BPFJIT_CACHE_DIR"] = folder
    os.environ.pop("BPFJIT_CACHE", None)


OPT_IN_MARKERS = {
    "slow": "slow: run with -m slow",
    "kernel": "loads programs into the kernel: run with -m kernel",
}


def pytest_collection_modifyitems(config, items):
    """Tests marked slow or kernel run only when selected with -m; the default run skips them."""
    selected = config.getoption("markexpr") or ""
    for marker, reason in OPT_IN_MARKERS.items():
        if marker in selected:
            continue
        for item in items:
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))

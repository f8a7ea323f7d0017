"""Shared fixtures: where the bpf_conformance suite lives, and its helper convention."""
from __future__ import annotations

import os
import pathlib
import tempfile

import pytest
from bpfjit.runtime.helpers import HelperRegistry, unwind_helper

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFORMANCE_DIR = REPO.parent / "shared" / "conformance" / "tests"
ENGINES = ("interp", "jit")


def conformance_files() -> list[pathlib.Path]:
    return sorted(CONFORMANCE_DIR.glob("*.data"))


def conformance_helpers() -> HelperRegistry:
    """bpf_conformance's helper set: only #5, "unwind"."""
    return HelperRegistry([unwind_helper()])


@pytest.fixture
def kernel_engine():
    """For tests marked kernel (the hook below runs them only with -m kernel): skip when this
    machine's kernel refuses BPF programs."""
    from bpfjit.runtime.kernel import kernel_available
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

"""Shared fixtures: where the bpf_conformance suite lives, and its helper convention."""
from __future__ import annotations

import pathlib

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


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run only when selected (-m slow); the default run skips them, saying why."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

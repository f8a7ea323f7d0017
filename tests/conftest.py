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

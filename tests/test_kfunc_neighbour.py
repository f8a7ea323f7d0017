"""A program that calls a kfunc fails to load alone; the object's other programs load (libbpf's
behaviour: externs are resolved per program at load)."""
from __future__ import annotations

import pathlib

import pytest

import bpfjit
from bpfjit.object import program_names

OBJECT = pathlib.Path(__file__).parent / "progs" / "kfunc_neighbour.o"


def test_the_neighbour_loads_and_runs():
    obj = bpfjit.load(OBJECT, programs=["plain"])
    assert obj.programs["plain"].test_run(bytes(64)).retval == 2  # XDP_PASS


def test_the_kfunc_caller_fails_with_the_loader_message():
    assert program_names(OBJECT) == ["uses_kfunc", "plain"]
    with pytest.raises(bpfjit.ObjectError, match="call to bpf_cast_to_kern_ctx, which is not defined in this "
                                                 r"object \(kfuncs and externs are not supported\)"):
        bpfjit.load(OBJECT)

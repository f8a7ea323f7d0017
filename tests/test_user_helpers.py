"""bpfjit.register_helper: user-provided helpers, by kernel name or by id."""
from __future__ import annotations

import pathlib

import pytest

import bpfjit
from bpfjit.errors import ProgramError
from bpfjit.object import _user_helpers

OBJ = pathlib.Path(__file__).resolve().parent / "progs" / "user_helper.o"


@pytest.fixture(autouse=True)
def clean_registry():
    saved = list(_user_helpers)
    yield
    _user_helpers._by_id = {h.id: h for h in saved}


def test_unregistered_helper_is_a_load_error():
    with pytest.raises(ProgramError, match="invalid func unknown#14"):
        bpfjit.load(OBJ)


def test_registered_by_name(engine):
    calls = []

    def pid_tgid(*args):
        calls.append(args)
        return (1234 << 32) | 99

    bpfjit.register_helper("bpf_get_current_pid_tgid", pid_tgid)
    obj = bpfjit.load(OBJ)
    assert obj.programs["pid"].test_run(bytes(64), engine=engine).retval == 2  # XDP_PASS
    assert obj.globals["seen"] == (1234 << 32) | 99 and len(calls) == 1


def test_registered_by_id_replaces_and_unknown_names_fail(engine):
    bpfjit.register_helper(14, lambda *a: 7 << 32)
    obj = bpfjit.load(OBJ)
    assert obj.programs["pid"].test_run(bytes(64), engine=engine).retval == 1  # XDP_DROP
    with pytest.raises(bpfjit.BPFError, match="unknown helper name"):
        bpfjit.register_helper("no_such_helper", lambda *a: 0)

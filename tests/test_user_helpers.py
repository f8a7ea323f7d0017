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
    """The helper is in the kernel's table: the message names it, says why bpfjit has none and how
    to provide one (the kernel's "invalid func unknown#N" is for ids it does not know either)."""
    with pytest.raises(ProgramError, match=r"program of this type cannot use helper bpf_get_current_pid_tgid#14: "
                       r"bpfjit does not provide it: it works on the kernel task running the program.*"
                       r"register_helper\(\"bpf_get_current_pid_tgid\", function\)"):
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


def test_every_helper_of_the_kernel_table_is_named_when_missing():
    """No call to a helper of the kernel's table is refused as "unknown#N": bpfjit either runs it or
    names it and says why not; only ids the kernel does not know keep the kernel's message."""
    from bpfjit.runtime.kernel_helpers import HELPER_NAMES
    from bpfjit.runtime.stdhelpers import standard_helpers
    provided = {helper.id for helper in standard_helpers(print)}
    missing = [number for number in range(1, len(HELPER_NAMES)) if number not in provided]
    assert len(missing) > 100
    for number in missing:
        with pytest.raises(bpfjit.BPFError) as info:
            bpfjit.Program.from_asm(f"call {number}\nmov %r0, 0\nexit", prog_type="xdp",
                                    helpers=standard_helpers(print))
        name = f"bpf_{HELPER_NAMES[number]}#{number}"
        assert f"program of this type cannot use helper {name}: bpfjit does not provide it: " in str(info.value)
    with pytest.raises(bpfjit.BPFError, match=r"invalid func unknown#1234"):
        bpfjit.Program.from_asm("call 1234\nmov %r0, 0\nexit", prog_type="xdp", helpers=standard_helpers(print))

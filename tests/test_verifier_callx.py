"""callx through function pointers in global data (bpfjit's extension: the kernel has no callx).

Every function whose address the object takes may be the target, and the JIT refuses any other
value at run time, so the verifier checks the call against each of them."""
from __future__ import annotations

import pathlib

import pytest

import bpfjit

PROGS = pathlib.Path(__file__).parent / "progs"


@pytest.mark.parametrize("engine", ["jit", "reference"])
def test_a_table_of_safe_functions_verifies_and_runs(engine):
    obj = bpfjit.load(PROGS / "callx_globals.o")
    program = obj.programs["safe_calls"]
    assert program.verification is not None
    program.test_run(bytes(14), engine=engine)
    assert obj.globals["result"] == 15  # add_one(14): an even length picks safe_ops[0]
    program.test_run(bytes(15), engine=engine)
    assert obj.globals["result"] == 225  # square(15)


def test_a_reachable_function_unsafe_for_the_arguments_rejects_the_program():
    with pytest.raises(bpfjit.VerifierError) as caught:
        bpfjit.load(PROGS / "callx_unsafe.o")
    assert caught.value.message == "R1 invalid mem access 'scalar'"
    assert "callx_unsafe.c:9" in str(caught.value)  # deref's line, where the path fails


@pytest.mark.parametrize("engine", ["jit", "reference"])
def test_the_unsafe_table_runs_only_sandboxed(engine):
    """Unverified, the dereference of a number is a clean run-time error on both engines."""
    obj = bpfjit.load(PROGS / "callx_unsafe.o", verify=False)
    program = obj.programs["unsafe_calls"]
    program.test_run(bytes(14), engine=engine)
    assert obj.globals["result"] == 15
    with pytest.raises(bpfjit.BPFRuntimeError, match="invalid read of 8 bytes at 0xf"):
        program.test_run(bytes(15), engine=engine)

"""Every bpf_conformance test file, on the interpreter and on the JIT.

The suite is outside data: BPFJIT_CONFORMANCE_DIR names its tests/ folder (see conftest.py).
Every program runs verified, except the few the kernel verifier rejects too (listed below): those
test the engines' semantics of what the verifier forbids, so they run unverified (sandboxed).
"""
from __future__ import annotations

import pytest

from bpfjit import asm
from bpfjit.errors import VerifierError
from bpfjit.program import Program

from conftest import ENGINES, conformance_case, conformance_dir, conformance_helpers, conformance_params


def test_suite_is_present():
    # The suite has 313 files; a wrong folder must fail loudly, not pass with a handful of cases.
    assert len(list(conformance_dir().glob("*.data"))) == 313

# The files the verifier rejects, with its message (the kernel's: an immediate shift out of
# [0, width) in check_alu_op, a callx through a scalar in check_func_call's callx check). Any other
# rejection fails its test, and so does an acceptance of one of these.
REJECTED_BY_THE_VERIFIER = {
    **{f"{op}{width}-imm-{kind}": "invalid shift"
       for op in ("arsh", "lsh", "rsh") for width in (32, 64) for kind in ("high", "neg")},
    "callx": "callx R2 type=scalar expected=func",
}


def test_suite_rejections_are_the_kernels():
    # The list above is exactly the suite's rejections (a stale entry would hide nothing but mislead).
    rejected = {}
    for path in sorted(conformance_dir().glob("*.data")):
        try:
            Program.from_bytes(asm.assemble(conformance_case(path).asm), helpers=conformance_helpers())
        except VerifierError as error:
            rejected[path.stem] = error.message
    assert sorted(rejected) == sorted(REJECTED_BY_THE_VERIFIER)
    for name, message in rejected.items():
        assert message.startswith(REJECTED_BY_THE_VERIFIER[name]), (name, message)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", conformance_params())
def test_conformance(path, engine):
    case = conformance_case(path)
    code = asm.assemble(case.asm)
    if case.raw is not None:
        assert code == case.raw, "assembler output differs from the file's raw bytes"
    assert case.result is not None
    prog = Program.from_bytes(code, helpers=conformance_helpers(), verify=path.stem not in REJECTED_BY_THE_VERIFIER)
    assert prog.run(case.mem, engine=engine) == case.result

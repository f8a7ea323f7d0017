"""Every bpf_conformance test file, on the interpreter and on the JIT.

The suite is outside data: BPFJIT_CONFORMANCE_DIR names its tests/ folder (see conftest.py).
"""
from __future__ import annotations

import pytest

from bpfjit import asm
from bpfjit.program import Program

from conftest import ENGINES, conformance_case, conformance_dir, conformance_helpers, conformance_params


def test_suite_is_present():
    # The suite has 313 files; a wrong folder must fail loudly, not pass with a handful of cases.
    assert len(list(conformance_dir().glob("*.data"))) == 313


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", conformance_params())
def test_conformance(path, engine):
    case = conformance_case(path)
    code = asm.assemble(case.asm)
    if case.raw is not None:
        assert code == case.raw, "assembler output differs from the file's raw bytes"
    assert case.result is not None
    prog = Program.from_bytes(code, helpers=conformance_helpers())
    assert prog.run(case.mem, engine=engine) == case.result

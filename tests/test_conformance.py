"""Every bpf_conformance test file, on the interpreter and on the JIT."""
from __future__ import annotations

import pytest

from bpfjit import asm
from bpfjit.program import Program

from conftest import CONFORMANCE_DIR, ENGINES, conformance_files, conformance_helpers

FILES = conformance_files()


def test_suite_is_present():
    # The suite has 313 files; a missing checkout must fail loudly, not pass with zero cases.
    assert CONFORMANCE_DIR.is_dir(), f"conformance suite not found at {CONFORMANCE_DIR}"
    assert len(FILES) == 313


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_conformance(path, engine):
    case = asm.parse_test_file(path.read_text())
    code = asm.assemble(case.asm)
    if case.raw is not None:
        assert code == case.raw, "assembler output differs from the file's raw bytes"
    assert case.result is not None
    prog = Program.from_bytes(code, helpers=conformance_helpers())
    assert prog.run(case.mem, engine=engine) == case.result

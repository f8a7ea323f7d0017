"""A raw program's own length test proves bytes of its memory (verifier/jumps.py): r1 is memory
whose size only the run knows, r2 its length; on the edge where r2 (or a copy of it) is at least
N, the first N bytes exist, and accesses inside them need no run-time check (Facts.
checked_accesses), which lets LLVM see a plain loop (bench memcpy_regions). Anything not proven
keeps its check, on every path."""
from __future__ import annotations

import pytest

from bpfjit.errors import BPFRuntimeError
from bpfjit.program import Program

PROVEN = """
    jlt %r2, 16, out
    ldxdw %r0, [%r1+8]
    exit
out:
    mov %r0, 0
    exit
"""


def checked(text: str) -> list[int]:
    return sorted(Program.from_asm(text).facts.checked_accesses)


def test_a_length_test_proves_the_bytes_below_it(engine):
    assert checked(PROVEN) == []
    program = Program.from_asm(PROVEN)
    memory = bytes(range(16))
    assert program.run(memory, engine=engine) == int.from_bytes(memory[8:], "little")
    assert program.run(bytes(15), engine=engine) == 0  # too short: the test says so, not a fault


def test_a_copy_of_the_length_proves_as_much():
    assert checked(PROVEN.replace("jlt %r2, 16, out", "mov %r3, %r2\n    jlt %r3, 16, out")) == []


def test_a_value_computed_from_the_length_proves_what_it_implies(engine):
    """Half the length at least 16: the length is at least 32 (verifier/length.py)."""
    text = PROVEN.replace("jlt %r2, 16, out", "rsh %r2, 1\n    jlt %r2, 16, out").replace("[%r1+8]", "[%r1+24]")
    assert checked(text) == []
    program = Program.from_asm(text)
    assert program.run(bytes(range(32)), engine=engine) == int.from_bytes(bytes(range(24, 32)), "little")
    assert program.run(bytes(31), engine=engine) == 0  # half of 31 is 15: the test says so


@pytest.mark.parametrize("text, load, memory, fails", [
    (PROVEN.replace("[%r1+8]", "[%r1+9]"), 1, bytes(16), True),  # one byte past the proof
    (PROVEN.replace("jlt %r2, 16, out", "jgt %r2, 16, out"), 1, bytes(12), True),  # bounded from above
    # Twice the length at least 16 proves 8 bytes, not the 16 the load needs (it has 32: it runs).
    (PROVEN.replace("jlt %r2, 16, out", "lsh %r2, 1\n    jlt %r2, 16, out"), 2, bytes(range(32)), False),
])
def test_what_is_not_proven_stays_checked(text, load, memory, fails, engine):
    program = Program.from_asm(text)
    assert sorted(program.facts.checked_accesses) == [load]
    if fails:
        with pytest.raises(BPFRuntimeError, match="invalid read of 8 bytes"):
            program.run(memory, engine=engine)
    else:
        assert program.run(memory, engine=engine) == int.from_bytes(memory[8:16], "little")


def test_a_path_that_proved_less_keeps_the_check(engine):
    """Both paths meet before the access; one proved 16 bytes, the other 8: the access needs 16
    and stays checked (a state with fewer proven bytes is not pruned by one with more)."""
    text = """
        ldxb %r3, [%r1+0]
        jeq %r3, 0, short
        jlt %r2, 16, out
        ja load
    short:
        jlt %r2, 8, out
    load:
        ldxdw %r0, [%r1+8]
        exit
    out:
        mov %r0, 0
        exit
    """
    assert checked(text) == [0, 5]
    program = Program.from_asm(text)
    with pytest.raises(BPFRuntimeError, match="invalid read of 8 bytes"):
        program.run(bytes(12), engine=engine)  # byte 0 is 0: the short path, 12 bytes pass its test
    assert program.run(bytes([1]) + bytes(15), engine=engine) == 0

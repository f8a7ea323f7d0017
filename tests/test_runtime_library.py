"""Calls that LLVM's code generator adds on its own (jit/engine.py RUNTIME_LIBRARY).

A loop whose step is not a power of two gets its trip count from a 128-bit division, which
x86-64 code calls __udivti3 for. The routine is libgcc's, and the Python process need not have
loaded it: unbound, the call went to address 0 and the first run crashed the host. Each such
program now runs, on every engine, with the reference's results; and code calling a routine the
process cannot provide is refused when it is emitted, never linked to nothing.
"""
from __future__ import annotations

import random

import pytest
from loop_campaign import outcome

from bpfjit.errors import JITError
from bpfjit.jit import engine
from bpfjit.program import Program

# for (p = mem + 2, i = 0; i < len / 4; i += 2, p += STEP) sum += *(u16 *)p
STRIDED = """
    mov %r0, 0
    jlt %r2, 2, out
    mov %r3, %r2
    rsh %r3, 2
    mov %r4, 0
    mov %r6, %r1
    add %r6, 2
    jge %r4, %r3, out
loop:
    ldxh %r5, [%r6+0]
    add %r0, %r5
    add %r6, STEP
    add %r4, 2
    jlt %r4, %r3, loop
out:
    exit
"""


@pytest.mark.parametrize("step", [3, 5, 7, 9, 11, 13])
def test_loops_stepping_by_odd_strides_run_like_the_reference(step, engine):
    program = Program.from_asm(STRIDED.replace("STEP", str(step)))
    rng = random.Random(step)
    for size in [*range(0, 40), 100, 257]:
        data = bytes(rng.randrange(256) for _ in range(size))
        assert outcome(program, data, engine) == outcome(program, data, "reference"), size


def test_code_calling_a_routine_the_process_lacks_is_refused_when_emitted(monkeypatch):
    bound = engine.llvm.address_of_symbol
    monkeypatch.setattr(engine.llvm, "address_of_symbol", lambda name: None if name == "__udivti3" else bound(name))
    monkeypatch.setenv("BPFJIT_CACHE", "0")
    program = Program.from_asm(STRIDED.replace("STEP", "9"))
    with pytest.raises(JITError, match="calls __udivti3"):
        program.run(bytes(16), engine="jit")

"""Compiled code and its LLVM objects are released explicitly and never crash the process."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bpfjit.program import Program
from bpfjit.runtime.helpers import HelperRegistry


def test_many_programs_then_exit_cleanly():
    # Compile many programs (with helper callbacks), drop some, close some, keep some alive
    # until interpreter shutdown: the process must exit with status 0, not abort or segfault.
    script = textwrap.dedent("""
        import gc
        from bpfjit.program import Program
        from bpfjit.runtime.helpers import HelperRegistry
        kept = []
        for i in range(40):
            helpers = HelperRegistry()
            helpers.register(1, lambda a, b, c, d, e, i=i: a + i, name="plus")
            prog = Program.from_asm(f"mov %r1, {i}\\ncall 1\\nexit", helpers=helpers)
            assert prog.run() == 2 * i
            if i % 3 == 0:
                prog.compile().close()
            elif i % 3 == 1:
                kept.append(prog)
        gc.collect()
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_helper_exception_becomes_bpf_error_on_both_engines():
    from bpfjit.errors import BPFRuntimeError

    def broken(a, b, c, d, e):
        raise ValueError("boom")

    helpers = HelperRegistry()
    helpers.register(7, broken, name="broken")
    prog = Program.from_asm("mov %r0, 1\ncall 7\nmov %r0, 5\nexit", helpers=helpers)
    for engine in ("reference", "jit"):
        with pytest.raises(BPFRuntimeError, match="insn 1.*boom"):
            prog.run(engine=engine)

"""Run-time limits on both engines: max_steps (instructions executed) and timeout (seconds).

A runaway program must end promptly with a clean BPFRuntimeError on the interpreter and on the
JIT alike, whether it loops in its main function, across a bpf-to-bpf call or inside a bpf_loop
callback; a run within its budget must give what the unlimited run gives; and the JIT's normal
code must not pay for any of it. Instruction counts below are worked out by hand. The runaways
never end, so the verifier refuses them ("infinite loop detected", "unreachable insn"): they run
unverified, which is what the budgets are for.
"""
from __future__ import annotations

import time

import pytest

from bpfjit import isa
from bpfjit.asm import assemble_insns
from bpfjit.errors import BPFError, BPFRuntimeError
from bpfjit.isa import Insn
from bpfjit.program import Program
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.stdhelpers import standard_helpers

PROMPT = 5.0  # seconds: far more than any budget below needs, far less than "hangs"


def with_helpers(insns: list[Insn], verify: bool = True, prog_type: str = "raw") -> Program:
    return Program(insns, Environment(standard_helpers(lambda line: None)), verify=verify, prog_type=prog_type)


def runaway_callback() -> Program:
    """main: bpf_loop(1, f, 0, 0); f (slot 7): l: ja l (slot 8)."""
    insns = (assemble_insns("mov %r1, 1\nlddw %r2, 0\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit")
             + assemble_insns("mov %r0, 0\nl: ja l\nexit"))
    insns[1] = Insn(isa.LDDW, 2, isa.PSEUDO_FUNC, 0, 7 - 2)  # ld_imm64 r2 = the function at slot 7
    return with_helpers(insns, verify=False, prog_type=RUNAWAY_TYPE)


# The runaways are typed programs, run unverified: a raw program's loop budget
# (tests/test_loop_budget.py) would end them before the budgets tested here.
RUNAWAY_TYPE = "syscall"
RUNAWAYS = {
    "loop": (lambda: Program.from_asm("l: ja l\nexit", verify=False, prog_type=RUNAWAY_TYPE), 0),
    # main calls f over and over; f returns at once: the loop spans a bpf-to-bpf call
    "call": (lambda: Program.from_asm("l: call local f\nja l\nf: mov %r0, 1\nexit", verify=False,
                                      prog_type=RUNAWAY_TYPE), None),
    "callback": (runaway_callback, 8),
}


@pytest.mark.parametrize("kind", RUNAWAYS)
def test_step_budget_stops_a_runaway(engine, kind):
    make, insn = RUNAWAYS[kind]
    started = time.monotonic()
    with pytest.raises(BPFRuntimeError, match=r"^insn \d+: instruction budget of 1000 exhausted$") as info:
        make().run(b"", engine=engine, max_steps=1000)
    assert time.monotonic() - started < PROMPT
    if insn is not None:
        assert info.value.index == insn


@pytest.mark.parametrize("kind", RUNAWAYS)
def test_time_budget_stops_a_runaway(engine, kind):
    make, _ = RUNAWAYS[kind]
    prog = make()
    if engine == "jit":
        prog.compile(sandboxed=True)  # the clock starts after compiling
    started = time.monotonic()
    with pytest.raises(BPFRuntimeError, match=r"^insn \d+: time budget of 0.2 s exhausted$"):
        prog.run(b"", engine=engine, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < PROMPT


@pytest.mark.parametrize("kind", RUNAWAYS)
def test_both_engines_stop_at_the_same_instruction(kind):
    make, _ = RUNAWAYS[kind]
    messages = set()
    for engine in ("reference", "jit"):
        with pytest.raises(BPFRuntimeError) as info:
            make().run(b"", engine=engine, max_steps=777)
        messages.add(str(info.value))
    assert len(messages) == 1


# A counted loop with an ld_imm64 first (two slots, one instruction):
#   0-1: lddw r2, 5    2: mov r0, 0    3: mov r1, 3    4: add r0, r2    5: sub r1, 1
#   6: jne r1, 0, -3   7: exit
COUNTED = "lddw %r2, 5\nmov %r0, 0\nmov %r1, 3\nl: add %r0, %r2\nsub %r1, 1\njne %r1, 0, l\nexit"
# The slot of each instruction in the order the run executes them: 13 in all.
EXECUTED = [0, 2, 3, 4, 5, 6, 4, 5, 6, 4, 5, 6, 7]


@pytest.mark.parametrize("budget", range(1, len(EXECUTED)))
def test_budget_stops_at_the_instruction_that_exceeds_it(engine, budget):
    with pytest.raises(BPFRuntimeError) as info:
        Program.from_asm(COUNTED).run(b"", engine=engine, max_steps=budget)
    assert str(info.value) == f"insn {EXECUTED[budget]}: instruction budget of {budget} exhausted"


@pytest.mark.parametrize("budget", [len(EXECUTED), len(EXECUTED) + 1, 10 ** 9])
def test_results_within_the_budget_equal_the_unlimited_run(engine, budget):
    prog = Program.from_asm(COUNTED)
    assert prog.run(b"", engine=engine) == 15
    assert prog.run(b"", engine=engine, max_steps=budget) == 15
    assert prog.run(b"", engine=engine, max_steps=budget, timeout=60) == 15
    assert prog.test_run(b"", engine=engine, repeat=3, max_steps=budget).retval == 15  # per run


def test_calls_count_their_instructions(engine):
    # main: 0 mov r1, 2; 1 call f; 2 add r0, 1; 3 exit.  f: 4 mov r0, r1; 5 exit.  6 instructions.
    prog = Program.from_asm("mov %r1, 2\ncall local f\nadd %r0, 1\nexit\nf: mov %r0, %r1\nexit")
    assert prog.run(b"", engine=engine, max_steps=6) == 3
    with pytest.raises(BPFRuntimeError, match=r"^insn 3: instruction budget of 5 exhausted$"):
        prog.run(b"", engine=engine, max_steps=5)
    with pytest.raises(BPFRuntimeError, match=r"^insn 5: instruction budget of 3 exhausted$"):
        prog.run(b"", engine=engine, max_steps=3)


def test_callbacks_count_their_instructions(engine):
    # main (slots 0-6): bpf_loop(3, f, 0, 0) then exit, 6 instructions (lddw is one); f (slots
    # 7-8): mov r0, 0; exit, 2 instructions per call: 12 in all.
    insns = (assemble_insns("mov %r1, 3\nlddw %r2, 0\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit")
             + assemble_insns("mov %r0, 0\nexit"))
    insns[1] = Insn(isa.LDDW, 2, isa.PSEUDO_FUNC, 0, 7 - 2)
    prog = with_helpers(insns)
    assert prog.run(b"", engine=engine, max_steps=12) == 3
    with pytest.raises(BPFRuntimeError, match=r"^insn 6: instruction budget of 11 exhausted$"):
        prog.run(b"", engine=engine, max_steps=11)  # the exit after the last callback
    with pytest.raises(BPFRuntimeError, match=r"^insn 8: instruction budget of 10 exhausted$"):
        prog.run(b"", engine=engine, max_steps=10)  # the third callback's exit


def test_normal_code_has_no_counter():
    prog = Program.from_asm(COUNTED)
    normal, sandboxed = prog.compile(), prog.compile(sandboxed=True)
    assert normal is prog.compile() and sandboxed is prog.compile(sandboxed=True) and normal is not sandboxed
    for field in (5, 6, 7):  # RunEnv.steps, max_steps, stop
        assert f"ptr %env, i64 {field}" not in normal.ir
        assert f"ptr %env, i64 {field}" in sandboxed.ir
    assert prog.run(b"") == 15  # unbudgeted runs take the normal code


@pytest.mark.parametrize("limits", [{"max_steps": 0}, {"max_steps": -5}, {"max_steps": 2.5},
                                    {"max_steps": True}, {"timeout": 0}, {"timeout": -1.0},
                                    {"timeout": "1"}, {"timeout": float("nan")}])
def test_bad_budgets_are_rejected(engine, limits):
    with pytest.raises(BPFError, match="must be a positive"):
        Program.from_asm("mov %r0, 0\nexit").run(b"", engine=engine, **limits)

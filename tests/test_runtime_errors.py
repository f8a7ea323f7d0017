"""Programs that fail while running end in the same BPFRuntimeError on both engines."""
from __future__ import annotations

import pytest

from bpfjit import isa
from bpfjit.errors import BPFRuntimeError, ProgramError
from bpfjit.isa import Insn
from bpfjit.program import Program


def pseudo_func(dst: int, at: int, target: int) -> list[Insn]:
    """ld_imm64 src=4 at slot `at` loading the function that starts at slot `target`."""
    return [Insn(isa.LDDW, dst, isa.PSEUDO_FUNC, 0, target - (at + 1)), Insn(0)]


def test_callx_recursion_is_stopped_at_eight_frames(engine):
    # main calls f through a pointer; f calls itself through a pointer, forever. The verifier
    # refuses it ("the call stack of 9 frames is too deep"); unverified, the run stops it.
    insns = (pseudo_func(1, 0, 4) + [Insn(isa.CALLX_OP, 1), Insn(isa.EXIT_OP)]
             + pseudo_func(6, 4, 4) + [Insn(isa.CALLX_OP, 6), Insn(isa.EXIT_OP)])
    with pytest.raises(BPFRuntimeError, match=r"insn 6: more than 8 nested calls"):
        Program(insns, verify=False).run(engine=engine)


def test_callx_chain_within_the_limit_runs(engine):
    # f(n): if n == 0 return 100; return f(n - 1) + 1, called indirectly: depth 1 + 7 frames is fine.
    insns = (pseudo_func(9, 0, 5) + [Insn(isa.ALU64 | isa.MOV | isa.K, 1, imm=6), Insn(isa.CALLX_OP, 9),
                                      Insn(isa.EXIT_OP)]
             + [Insn(isa.JMP | isa.JNE | isa.K, 1, off=2, imm=0),      # 5
                Insn(isa.ALU64 | isa.MOV | isa.K, 0, imm=100),          # 6
                Insn(isa.EXIT_OP),                                      # 7
                Insn(isa.ALU64 | isa.SUB | isa.K, 1, imm=1)]            # 8
             + pseudo_func(9, 9, 5)                                     # 9-10
             + [Insn(isa.CALLX_OP, 9),                                  # 11
                Insn(isa.ALU64 | isa.ADD | isa.K, 0, imm=1),            # 12
                Insn(isa.EXIT_OP)])                                     # 13
    assert Program(insns).run(engine=engine) == 106


def test_callx_to_the_middle_of_a_function_fails(engine):
    insns = [Insn(isa.ALU64 | isa.MOV | isa.K, 0, imm=0)] + isa.lddw(2, 0xBFF0_0000_0000_0002) + [
        Insn(isa.CALLX_OP, 2), Insn(isa.EXIT_OP)]  # the verifier: callx R2 type=scalar expected=func
    with pytest.raises(BPFRuntimeError, match=r"insn 3: callx to 0xbff0000000000002"):
        Program(insns, verify=False).run(engine=engine)


def test_interpreter_rejects_out_of_bounds_access():
    prog = Program.from_asm("ldxdw %r0, [%r1+8]\nexit")
    with pytest.raises(BPFRuntimeError, match=r"insn 0: invalid read of 8 bytes"):
        prog.run(b"\0" * 12, engine="reference")
    assert prog.run(b"\1" + b"\0" * 15, engine="reference") == 0


def test_step_budget(engine):
    prog = Program.from_asm("loop:\nja loop", verify=False)  # the verifier: infinite loop detected
    with pytest.raises(BPFRuntimeError, match="^insn 0: instruction budget of 1000 exhausted$"):
        prog.run(engine=engine, max_steps=1000)


@pytest.mark.parametrize("text, message", [
    ("mov %r10, 1\nexit", "insn 0: frame pointer is read only"),
    ("call 1234\nexit", "insn 0: invalid func unknown#1234"),
    ("mov %r0, 0", "insn 0: last insn is not an exit or jmp"),
    ("ja +5\nexit", "insn 0: jump out of range from insn 0 to 6"),
    ("call local f\nexit\nf:\ncall local f\nexit", "recursive call"),
])
def test_structural_errors(text, message):
    with pytest.raises(ProgramError, match=message):
        Program.from_asm(text)

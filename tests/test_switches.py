"""Compare trees recovered as switches (jit/switches.py): same results as the interpreter, which
runs the tree compare by compare, on random trees and on the values at and around every bound.

Each random program loads a u32 or u64 from the input into r2 (sometimes masking it first, as
``switch (x & 63)`` compiles), walks a random binary tree of compares against constants (signed
or unsigned, 32- or 64-bit, with equality tests mixed in) and returns a constant per leaf; some
leaves share one exit block, as a switch's ``break`` does.
"""
from __future__ import annotations

import random
import struct

import pytest

from bpfjit import isa
from bpfjit.bench.cases import MICRO_CASES
from bpfjit.bench.measure import load_program
from bpfjit.isa import Insn
from bpfjit.jit.switches import find_switches
from bpfjit.program import Program

SIGNED_OPS = (isa.JSGT, isa.JSGE, isa.JSLT, isa.JSLE, isa.JEQ, isa.JNE)
UNSIGNED_OPS = (isa.JGT, isa.JGE, isa.JLT, isa.JLE, isa.JEQ, isa.JNE)


def random_tree_program(rng: random.Random) -> tuple[list[Insn], list[int]]:
    """A program and the compare constants it uses (for boundary inputs)."""
    jmp = rng.choice((isa.JMP, isa.JMP32))
    ops = SIGNED_OPS if rng.random() < 0.5 else UNSIGNED_OPS
    wide = jmp == isa.JMP
    small = rng.random() < 0.7  # constants near zero, as switch cases are
    constants: list[int] = []
    insns = [Insn(isa.LDX | isa.MEM | (isa.DW if wide else isa.W), 2, 1, 0, 0)]
    mask = None
    if rng.random() < 0.4:
        mask = rng.choice((7, 63, 255))
        insns.append(Insn(rng.choice((isa.ALU, isa.ALU64)) | isa.AND | isa.K, 2, 0, 0, mask))
    leaves: list[int] = []  # slots of "goto shared exit" placeholders
    shared_exit: list[int] = []

    def constant() -> int:
        if mask is not None and rng.random() < 0.8:
            return rng.randrange(mask + 1)
        if small:
            return rng.randrange(-70, 70)
        return rng.randrange(-2 ** 31, 2 ** 31)

    def emit(depth: int) -> None:
        if depth == 0 or rng.random() < 0.15:
            insns.append(Insn(isa.ALU64 | isa.MOV | isa.K, 0, 0, 0, rng.randrange(1000)))
            if rng.random() < 0.3:
                shared_exit.append(len(insns))
                insns.append(Insn(isa.JMP | isa.JA, 0, 0, 0, 0))  # patched below
            else:
                insns.append(Insn(isa.JMP | isa.EXIT))
            leaves.append(len(insns))
            return
        k = constant()
        constants.append(k)
        at = len(insns)
        insns.append(None)  # type: ignore[arg-type]
        emit(depth - 1)  # fall-through subtree
        target = len(insns)
        emit(depth - 1)  # taken subtree
        insns[at] = Insn(jmp | rng.choice(ops) | isa.K, 2, 0, target - at - 1, k)

    emit(rng.randrange(2, 7))
    exit_slot = len(insns)
    insns.append(Insn(isa.ALU64 | isa.ADD | isa.K, 0, 0, 0, 5000))
    insns.append(Insn(isa.JMP | isa.EXIT))
    for slot in shared_exit:
        insns[slot] = Insn(isa.JMP | isa.JA, 0, 0, exit_slot - slot - 1, 0)
    return insns, constants


def inputs(constants: list[int], rng: random.Random) -> list[int]:
    values = {0, 1, 63, 64, 255, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 63, 2 ** 64 - 1}
    for k in constants:
        for delta in (-1, 0, 1):
            values.add((k + delta) % 2 ** 64)
            values.add((k + delta) % 2 ** 32)
    values |= {rng.getrandbits(64) for _ in range(20)}
    return sorted(values)


@pytest.mark.parametrize("seed", range(60))
def test_random_trees_agree_with_the_interpreter(seed):
    rng = random.Random(seed)
    insns, constants = random_tree_program(rng)
    program = Program(insns)
    for value in inputs(constants, rng):
        data = struct.pack("<Q", value)
        jit, interp = (program.test_run(data, engine=e).retval for e in ("jit", "interp"))
        assert jit == interp, (seed, hex(value), program.disassemble())


def test_random_trees_are_recovered():
    # The generator's trees are what the recovery looks for: most of them must become switches,
    # or the agreement test above would not be testing it.
    recovered = 0
    for seed in range(60):
        insns, _ = random_tree_program(random.Random(seed))
        program = Program(insns)
        f = program.facts.functions[0]
        if find_switches(program.insns, f.start, f.end, program.facts.block_starts):
            recovered += 1
            assert "switch i" in program.compile().ir
    assert recovered >= 20


def test_the_bench_switch_becomes_one_switch_of_64_values():
    case = next(c for c in MICRO_CASES if c.name == "switch")
    program, _ = load_program(case)
    f = program.facts.functions[0]
    (switch,) = find_switches(program.insns, f.start, f.end, program.facts.block_starts).values()
    assert switch.bits == 32 and switch.reg == 4
    assert len(switch.cases) == 63  # the 64th value goes to the default
    assert sorted({v for v, _ in switch.cases} | {next(iter(set(range(64)) - {v for v, _ in switch.cases}))}) \
        == list(range(64))
    assert program.compile().ir.count("switch i32") == 1
    data = case.interp_data()
    assert program.test_run(data, engine="jit").retval == case.expected(data)


def test_a_compare_reached_from_elsewhere_is_not_absorbed():
    # Five compares in a row, but the third is also the target of the jump at slot 1: it cannot
    # be absorbed into a tree rooted above it, so the tree starts there (slots 5, 6, 7).
    text = """
    ldxw %r2, [%r1]
    jeq32 %r2, 100, +3
    ja +0
    jgt32 %r2, 50, +14
    jgt32 %r2, 20, +11
    jgt32 %r2, 10, +8
    jgt32 %r2, 5, +5
    jeq32 %r2, 3, +2
    mov %r0, 1
    exit
    mov %r0, 2
    exit
    mov %r0, 3
    exit
    mov %r0, 4
    exit
    mov %r0, 5
    exit
    mov %r0, 6
    exit
    """
    program = Program.from_asm(text)
    f = program.facts.functions[0]
    (root, switch), = find_switches(program.insns, f.start, f.end, program.facts.block_starts).items()
    assert (root, switch.absorbed) == (5, frozenset({6, 7}))
    expected = {0: 1, 3: 2, 5: 1, 6: 3, 10: 3, 11: 4, 20: 4, 21: 5, 50: 5, 51: 6, 100: 4}
    for value, result in expected.items():
        data = struct.pack("<Q", value)
        assert [program.test_run(data, engine=e).retval for e in ("jit", "interp")] == [result] * 2, value

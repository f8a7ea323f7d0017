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


FOLD_OPS = (isa.ADD, isa.SUB, isa.OR, isa.XOR, isa.AND, isa.MOV)


def random_tree_program(rng: random.Random) -> tuple[list[Insn], list[int]]:
    """A program and the compare constants it uses (for boundary inputs).

    Half the programs are switch-shaped (every leaf ``r0 op= K; goto join``, or a compare that
    jumps straight to the join), which the recovery folds into a choice of immediate; the others
    mix leaves that exit, that go to a shared exit, and that do different operations.
    """
    jmp = rng.choice((isa.JMP, isa.JMP32))
    ops = SIGNED_OPS if rng.random() < 0.5 else UNSIGNED_OPS
    wide = jmp == isa.JMP
    small = rng.random() < 0.7  # constants near zero, as switch cases are
    foldable = rng.random() < 0.5
    fold_op = (rng.choice((isa.ALU, isa.ALU64)), rng.choice(FOLD_OPS))
    constants: list[int] = []
    insns = [Insn(isa.LDX | isa.MEM | (isa.DW if wide else isa.W), 2, 1, 0, 0),
             Insn(isa.LDX | isa.MEM | isa.DW, 0, 1, 8, 0)]  # r0 starts as the input's second word
    mask = None
    if rng.random() < 0.4:
        mask = rng.choice((7, 63, 255))
        insns.append(Insn(rng.choice((isa.ALU, isa.ALU64)) | isa.AND | isa.K, 2, 0, 0, mask))
    to_join: list[int] = []  # slots whose jump is patched to the join below

    def constant() -> int:
        if mask is not None and rng.random() < 0.8:
            return rng.randrange(mask + 1)
        if small:
            return rng.randrange(-70, 70)
        return rng.randrange(-2 ** 31, 2 ** 31)

    def leaf() -> None:
        alu, op = fold_op if foldable else (rng.choice((isa.ALU, isa.ALU64)), rng.choice(FOLD_OPS))
        insns.append(Insn(alu | op | isa.K, 0, 0, 0, rng.randrange(-2 ** 31, 2 ** 31)))
        if foldable or rng.random() < 0.3:
            to_join.append(len(insns))
            insns.append(Insn(isa.JMP | isa.JA, 0, 0, 0, 0))
        else:
            insns.append(Insn(isa.JMP | isa.EXIT))

    def emit(depth: int) -> None:
        if depth == 0 or rng.random() < 0.15:
            leaf()
            return
        constants.append(constant())
        at = len(insns)
        insns.append(None)  # type: ignore[arg-type]
        emit(depth - 1)  # fall-through subtree
        op = rng.choice(ops)
        if rng.random() < 0.25:  # taken side: straight to the join (an identity leaf)
            insns[at] = Insn(jmp | op | isa.K, 2, 0, 0, constants[-1])
            to_join.append(at)
            return
        target = len(insns)
        emit(depth - 1)  # taken subtree
        insns[at] = Insn(jmp | op | isa.K, 2, 0, target - at - 1, constants[-1])

    emit(rng.randrange(2, 7))
    join = len(insns)
    if to_join:  # else every leaf exits, and a join would be unreachable (which the verifier refuses)
        insns.append(Insn(isa.ALU64 | isa.ADD | isa.K, 0, 0, 0, 5000))
        insns.append(Insn(isa.JMP | isa.EXIT))
    for slot in to_join:
        insns[slot] = Insn(insns[slot].opcode, insns[slot].dst, 0, join - slot - 1, insns[slot].imm)
    return insns, constants


def inputs(constants: list[int], rng: random.Random) -> list[int]:
    values = {0, 1, 63, 64, 255, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 63, 2 ** 64 - 1}
    for k in constants:
        for delta in (-1, 0, 1):
            values.add((k + delta) % 2 ** 64)
            values.add((k + delta) % 2 ** 32)
    values |= {rng.getrandbits(64) for _ in range(20)}
    return sorted(values)


@pytest.mark.parametrize("seed", range(120))
def test_random_trees_agree_with_the_interpreter(seed):
    rng = random.Random(seed)
    insns, constants = random_tree_program(rng)
    program = Program(insns)
    for value in inputs(constants, rng):
        data = struct.pack("<QQ", value, rng.getrandbits(64))
        jit, interp = (program.test_run(data, engine=e).retval for e in ("jit", "reference"))
        assert jit == interp, (seed, hex(value), program.disassemble())


def test_random_trees_are_recovered():
    # The generator's trees are what the recovery looks for: most of them must become switches,
    # or the agreement test above would not be testing it.
    recovered = folded = 0
    for seed in range(120):
        insns, _ = random_tree_program(random.Random(seed))
        program = Program(insns)
        f = program.facts.functions[0]
        # A tree may compare the same value twice, so that the verifier proves a subtree dead: the
        # JIT lowers dead code as a trap, so a switch found there is not in the IR.
        switches = {root: switch for root, switch in find_switches(program.insns, f.start, f.end, program.facts).items()
                    if root not in program.facts.dead}
        if switches:
            recovered += 1
            ir = program.compile().ir
            assert "switch i" in ir or "@bpfjit_switch" in ir  # a switch, or a folded one's table
            folded += any(s.fold is not None for s in switches.values())
    assert recovered >= 40 and folded >= 15


def test_the_bench_switch_becomes_one_switch_of_64_values():
    case = next(c for c in MICRO_CASES if c.name == "switch")
    program, _ = load_program(case)
    f = program.facts.functions[0]
    (switch,) = find_switches(program.insns, f.start, f.end, program.facts).values()
    assert switch.bits == 32 and switch.reg == 4
    assert len(switch.cases) == 63  # the 64th value goes to the default
    assert sorted({v for v, _ in switch.cases} | {next(iter(set(range(64)) - {v for v, _ in switch.cases}))}) \
        == list(range(64))
    # Every case adds an immediate to r0: the switch becomes one load from a table of 64 of them.
    assert switch.fold is not None and len(switch.fold.imms) == 64
    ir = program.compile().ir
    assert "switch i32" not in ir and ir.count("constant [64 x i64]") == 1
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
    (root, switch), = find_switches(program.insns, f.start, f.end, program.facts).items()
    assert (root, switch.absorbed) == (5, frozenset({6, 7}))
    expected = {0: 1, 3: 2, 5: 1, 6: 3, 10: 3, 11: 4, 20: 4, 21: 5, 50: 5, 51: 6, 100: 4}
    for value, result in expected.items():
        data = struct.pack("<Q", value)
        assert [program.test_run(data, engine=e).retval for e in ("jit", "reference")] == [result] * 2, value


MASK64 = (1 << 64) - 1
PY_OPS = {isa.ADD: lambda a, k: a + k, isa.SUB: lambda a, k: a - k, isa.OR: lambda a, k: a | k,
          isa.XOR: lambda a, k: a ^ k, isa.AND: lambda a, k: a & k, isa.MOV: lambda a, k: k}


@pytest.mark.parametrize("op", sorted(PY_OPS), ids=lambda op: f"op{op:#x}")
def test_a_folded_switch_with_an_identity_leaf(op):
    # r0 = second input word; r2 = first. Values above 20 go straight to the join (no operation:
    # the identity of op, for every op but MOV, which has none and so is not folded); 11..20,
    # 5, and the rest of 0..10 each apply op with their own immediate. Then r0 += 5000.
    k1, k2, k3 = 0x1234_5678, -0x70, 0x0F0F_0F0F
    alu = isa.ALU64 | op | isa.K
    insns = [
        Insn(isa.LDX | isa.MEM | isa.DW, 2, 1, 0, 0),
        Insn(isa.LDX | isa.MEM | isa.DW, 0, 1, 8, 0),
        Insn(isa.JMP | isa.JGT | isa.K, 2, 0, 8, 20),   # -> 11, the join
        Insn(isa.JMP | isa.JGT | isa.K, 2, 0, 5, 10),   # -> 9
        Insn(isa.JMP | isa.JEQ | isa.K, 2, 0, 2, 5),    # -> 7
        Insn(alu, 0, 0, 0, k1), Insn(isa.JMP | isa.JA, 0, 0, 4, 0),
        Insn(alu, 0, 0, 0, k2), Insn(isa.JMP | isa.JA, 0, 0, 2, 0),
        Insn(alu, 0, 0, 0, k3), Insn(isa.JMP | isa.JA, 0, 0, 0, 0),
        Insn(isa.ALU64 | isa.ADD | isa.K, 0, 0, 0, 5000),
        Insn(isa.JMP | isa.EXIT),
    ]
    program = Program(insns)
    f = program.facts.functions[0]
    (switch,) = find_switches(program.insns, f.start, f.end, program.facts).values()
    assert (switch.fold is None) == (op == isa.MOV)
    r0 = 0xDEAD_BEEF_F00D_CAFE
    for value in range(0, 26):
        k = k3 if value > 10 else k2 if value == 5 else k1
        after = r0 if value > 20 else PY_OPS[op](r0, k & MASK64 if k >= 0 else k + (1 << 64))
        expected = (after + 5000) & MASK64
        data = struct.pack("<QQ", value, r0)
        assert [program.test_run(data, engine=e).retval for e in ("jit", "reference")] == [expected] * 2, value

"""Byte-pair copies done as one memcpy when their ranges are apart (jit/copies.py): found where
clang puts them, and on random copies (apart, overlapping either way, in any order, with any
scratch registers) the same memory and registers as the interpreter, which runs every pair.
"""
from __future__ import annotations

import pathlib
import random

import pytest

import bpfjit

from bpfjit import isa
from bpfjit.bench.packets import PACKET_CASES
from bpfjit.bench.measure import load_program
from bpfjit.isa import Insn
from bpfjit.jit.copies import MIN_BYTES, find_copies
from bpfjit.program import Program

LOAD_B, STORE_B = isa.LDX | isa.MEM | isa.B, isa.STX | isa.MEM | isa.B
COPIES = pathlib.Path(__file__).resolve().parent / "progs" / "copies.o"


def pair(src: int, dst: int, scratch: int, offset: int, delta: int) -> list[Insn]:
    return [Insn(LOAD_B, scratch, src, offset, 0), Insn(STORE_B, dst, scratch, offset + delta, 0)]


def copies_of(insns: list[Insn]):
    """The copies find_copies sees in insns (never run: their registers are not even set, so they
    load unverified)."""
    program = Program(insns + [Insn(isa.ALU64 | isa.MOV | isa.K, 0, 0, 0, 0), Insn(isa.JMP | isa.EXIT)],
                      verify=False)
    f = program.facts.functions[0]
    return list(find_copies(program.insns, f.start, f.end, program.facts.block_starts).values())


def test_a_run_of_pairs_in_any_order_is_one_copy():
    order = [2, 3, 0, 1, 4, 5]
    (copy,) = copies_of([p for o in order for p in pair(2, 1, 3, o, 6)])
    assert (copy.start, copy.end, copy.src, copy.dst, copy.low, copy.size, copy.delta) == (0, 12, 2, 1, 0, 6, 6)
    assert copy.scratch == ((3, 5),)


def test_the_last_pair_may_load_into_the_source_register():
    insns = [p for o in range(5) for p in pair(2, 1, 3, o, 0)] + pair(2, 1, 2, 5, 0) + pair(2, 1, 3, 6, 0)
    (copy,) = copies_of(insns)
    assert (copy.end, copy.size, copy.scratch) == (12, 6, ((2, 5), (3, 4)))  # the pair after it is not in


@pytest.mark.parametrize("insns", [
    [p for o in range(MIN_BYTES - 1) for p in pair(2, 1, 3, o, 0)],             # too short
    [p for o in (0, 1, 2, 4) for p in pair(2, 1, 3, o, 0)],                       # a gap
    [p for o in (0, 1, 2, 2, 3) for p in pair(2, 1, 3, o, 0)],                    # a byte twice
    [p for o in range(6) for p in pair(2, 1, 3, o, o % 2)],                       # distances differ
    [p for o in range(6) for p in pair(10, 1, 3, o - 8, 0)],                      # from the stack
    [p for o in range(6) for p in pair(2, 1, 1, o, 0)],                           # scratch is the destination
], ids=["short", "gap", "twice", "distance", "stack", "scratch-dst"])
def test_not_a_copy(insns):
    assert copies_of(insns) == []


def test_the_load_balancer_copies_are_found():
    case = next(c for c in PACKET_CASES if c.name == "xdp_static_branch")
    program, _ = load_program(case)
    f = program.facts.functions[0]
    found = find_copies(program.insns, f.start, f.end, program.facts.block_starts).values()
    # h_source <- h_dest (same base, 6 bytes on), then h_dest <- backend_macs[backend]
    assert sorted((c.size, c.delta, c.src == c.dst) for c in found) == [(6, 0, False), (6, 6, True)]


def random_copy_program(rng: random.Random) -> list[Insn]:
    """r6 = mem + a, r7 = mem + b; byte pairs copying size bytes in a random order through random
    scratch registers (the last one possibly r6); then r0 = the scratch registers' bytes."""
    size = rng.randrange(MIN_BYTES, 13)
    a, b = rng.randrange(0, 40), rng.randrange(0, 40)
    low, delta = rng.randrange(0, 8), rng.randrange(-4, 5)
    if rng.random() < 0.3:
        b = a  # one base register for both sides, as a header's field-to-field copy
    src, dst = (6, 6) if b == a and rng.random() < 0.5 else (6, 7)
    delta = delta if src != dst else rng.choice((-size, size, 1, -1, 3))
    insns = [Insn(isa.ALU64 | isa.MOV | isa.X, 6, 1, 0, 0), Insn(isa.ALU64 | isa.ADD | isa.K, 6, 0, 0, a),
             Insn(isa.ALU64 | isa.MOV | isa.X, 7, 1, 0, 0), Insn(isa.ALU64 | isa.ADD | isa.K, 7, 0, 0, b)]
    low = max(low, -delta)  # no byte before the buffer: b + low + delta >= 0
    offsets = rng.sample(range(low, low + size), size)
    scratch_regs = [3, 4, 5, 8]
    used = set()
    for i, offset in enumerate(offsets):
        scratch = src if i == size - 1 and src != dst and rng.random() < 0.3 else rng.choice(scratch_regs)
        used.add(scratch)
        insns += pair(src, dst, scratch, offset, delta)
    insns.append(Insn(isa.ALU64 | isa.MOV | isa.K, 0, 0, 0, 0))
    for reg in sorted(used - {6, 7}) + ([6] if 6 in used else []):
        insns += [Insn(isa.ALU64 | isa.LSH | isa.K, 0, 0, 0, 8), Insn(isa.ALU64 | isa.OR | isa.X, 0, reg, 0, 0)]
    insns.append(Insn(isa.JMP | isa.EXIT))
    return insns


@pytest.mark.parametrize("seed", range(150))
def test_random_copies_agree_with_the_interpreter(seed):
    rng = random.Random(seed)
    insns = random_copy_program(rng)
    program = Program(insns)
    data = rng.randbytes(80)  # the farthest byte a copy touches: 39 + 12 + 12 + 12
    jit, interp = (program.test_run(data, engine=e) for e in ("jit", "reference"))
    assert (jit.retval, jit.data_out) == (interp.retval, interp.data_out), program.disassemble()


def test_random_copies_are_found_and_take_both_paths():
    found = apart = overlapping = 0
    for seed in range(150):
        rng = random.Random(seed)
        program = Program(random_copy_program(rng))
        f = program.facts.functions[0]
        for copy in find_copies(program.insns, f.start, f.end, program.facts.block_starts).values():
            found += 1
            base = {6: program.insns[1].imm, 7: program.insns[3].imm}
            s, d = base[copy.src] + copy.low, base[copy.dst] + copy.low + copy.delta
            if d + copy.size <= s or s + copy.size <= d:
                apart += 1
            else:
                overlapping += 1
    assert found >= 140 and apart >= 40 and overlapping >= 20


def test_copies_in_a_clang_object():
    obj = bpfjit.load(COPIES)
    program = obj.programs["rewrite"]
    f = program.facts.functions[0]
    (copy,) = find_copies(program.insns, f.start, f.end, program.facts.block_starts).values()
    assert (copy.size, copy.low, copy.delta) == (5, 6, -6)  # packet bytes 6..10 -> last_source[0..4]
    frame = bytes(range(0x40, 0x40 + 60))
    for engine in ("jit", "reference"):
        obj = bpfjit.load(COPIES)
        result = obj.programs["rewrite"].test_run(frame, engine=engine)
        assert result.retval == 3  # XDP_TX
        assert result.data_out == bytes([2, 0, 0, 0, 0, 0xFE, 2, 0x11, 0x22, 0x33, 0x44, 0x55]) + frame[12:]
        assert obj.bss.last_source == list(frame[6:12])

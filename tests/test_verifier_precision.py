"""Precision and widening: pruning may ignore a scalar only if nothing depended on its bounds.

Each unsafe program here is safe on the path the verifier explores first and unsafe on a later
one that reaches the same instruction with another value; a verifier that pruned the later path
against the first would accept it. The safe ones show what precision and raw-program widening buy.
"""
from __future__ import annotations

import pathlib

import pytest

from bpfjit import VerifierError, isa
from bpfjit.isa import Insn
from bpfjit.program import Program
from bpfjit.runtime.stdhelpers import standard_helpers

# r3 is 8 on the first path and 16 on the second; only the pointer arithmetic after the merge
# makes it matter, so its precision must travel back to the state kept at the merge.
MERGE_THEN_POINTER = """
    ldxb %r2, [%r1+0]
    jgt %r2, 7, +2
    mov %r3, 8
    ja +1
    mov %r3, 16
    mov %r4, %r10
    add %r4, -16
    add %r4, %r3
    stdw [%r4+0], 0
    mov %r0, 0
    exit
"""

# The same through a spill: the stack slot carries the precision back.
MERGE_THROUGH_SPILL = """
    ldxb %r2, [%r1+0]
    jgt %r2, 7, +2
    mov %r3, 8
    ja +1
    mov %r3, 16
    stxdw [%r10-24], %r3
    ldxdw %r5, [%r10-24]
    mov %r4, %r10
    add %r4, -16
    add %r4, %r5
    stdw [%r4+0], 0
    mov %r0, 0
    exit
"""

# A helper's size argument: 8 fits the 8-byte buffer, 16 does not.
MERGE_THEN_SIZE = """
    ldxb %r6, [%r1+0]
    mov %r2, 8
    jgt %r6, 7, +1
    mov %r2, 16
    mov %r1, %r10
    add %r1, -8
    mov %r3, 0
    call 113
    mov %r0, 0
    exit
"""

# A sum the verifier never needs exactly: both paths meet and the second is pruned.
IMPRECISE_SUM = """
    ldxb %r2, [%r1+0]
    mov %r0, 0
    jgt %r2, 7, +2
    add %r0, 8
    ja +1
    add %r0, 16
    add %r0, %r2
    exit
"""


@pytest.mark.parametrize("text", [MERGE_THEN_POINTER, MERGE_THROUGH_SPILL])
def test_a_value_used_for_an_address_after_a_merge_is_compared_exactly(text):
    with pytest.raises(VerifierError) as caught:
        Program.from_asm(text, verify=True)
    assert "invalid write to stack" in caught.value.message


def test_a_helper_size_after_a_merge_is_compared_exactly():
    with pytest.raises(VerifierError) as caught:
        Program.from_asm(MERGE_THEN_SIZE, helpers=standard_helpers(print), verify=True)
    assert "invalid indirect access to stack" in caught.value.message


def test_a_value_nothing_depends_on_is_not_compared():
    program = Program.from_asm(IMPRECISE_SUM, verify=True)
    stats = program.verification.stats
    # The second path stops at the merge: fewer instructions than walking both to the exit.
    assert stats.insns_processed < 2 * 9
    assert program.run(bytes([3])) == 11
    assert program.run(bytes([9])) == 25
    assert program.run(bytes([9]), engine="reference") == 25


# A raw program's loop bounded by its memory (the micro-benchmarks' shape): the kernel would walk
# it until its limits; bpfjit widens the loop head once the walk repeats.
SUM_OF_BYTES = """
    mov %r0, 0
    jeq %r2, 0, +6
    mov %r3, %r1
    add %r3, %r2
    ldxb %r4, [%r1+0]
    add %r0, %r4
    add %r1, 1
    jlt %r1, %r3, -4
    exit
"""

# A loop with a constant bound over a stack buffer: its index keeps the bound through widening.
CLEAR_STACK_BUFFER = """
    mov %r1, 0
    mov %r2, %r10
    add %r2, -64
    mov %r3, %r2
    add %r3, %r1
    stb [%r3+0], 7
    add %r1, 1
    jlt %r1, 64, -5
    ldxb %r0, [%r10-1]
    exit
"""

# The same loop one byte too far: the widened state must still catch it.
CLEAR_STACK_BUFFER_OVERRUN = CLEAR_STACK_BUFFER.replace("jlt %r1, 64, -5", "jlt %r1, 65, -5")


def test_a_raw_loop_bounded_by_memory_verifies_and_runs():
    """The end pointer r1 + r2 (the length is unbounded): raw memory may move by anything, since
    every access through it is checked at run time."""
    program = Program.from_asm(SUM_OF_BYTES, verify=True)
    data = bytes(range(1, 201))
    for engine in ("jit", "reference"):
        assert program.run(data, engine=engine) == sum(data)


def test_a_raw_loop_over_a_stack_buffer_keeps_its_bound():
    program = Program.from_asm(CLEAR_STACK_BUFFER, verify=True)
    assert program.run(b"", engine="jit") == 7
    assert program.run(b"", engine="reference") == 7


def test_a_raw_loop_one_past_its_buffer_is_rejected():
    with pytest.raises(VerifierError) as caught:
        Program.from_asm(CLEAR_STACK_BUFFER_OVERRUN, verify=True)
    assert "stack" in caught.value.message


def test_kernel_program_types_are_not_widened():
    """An XDP program's loop bounded only by its packet length is walked, as the kernel does,
    and the kernel's limits reject it."""
    text = """
        ldxw %r2, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r0, 0
        mov %r4, %r2
        add %r4, 1
        jgt %r4, %r3, +3
        add %r0, 1
        add %r2, 1
        ja -6
        exit
    """
    with pytest.raises(VerifierError):
        Program.from_asm(text, prog_type="xdp", verify=True)


def _fuzz_program(name: str) -> tuple[bytes, bytes]:
    """A program and its input memory kept in tests/data as hex ("mem ..." and "code ..." lines)."""
    mem, code = b"", b""
    for line in (pathlib.Path(__file__).parent / "data" / name).read_text().splitlines():
        kind, _, text = line.partition(" ")
        if kind == "mem":
            mem = bytes.fromhex(text)
        elif kind == "code":
            code += bytes.fromhex(text)
    return code, mem


def test_marks_added_after_a_path_was_pruned_in_a_loop_reach_that_path():
    """Found by the differential fuzz campaign. A path was pruned against a widened loop head
    still being explored, inheriting the head's precision marks as they were then; the loop's
    later paths marked r4, but the pruned path's checkpoints never learnt it, and one of them
    then covered a state with another r4 that a later branch depended on. The verifier called
    the instruction that branch reaches dead, and the JIT stopped there (a bpfjit bug). Pruned
    paths are now marked again once their loop is done (precision.Backedges)."""
    code, mem = _fuzz_program("fuzz_backedge_precision.hex")
    program = Program.from_bytes(code)
    expected = program.test_run(mem, engine="reference")
    for engine in ("jit", "interp"):
        result = program.test_run(mem, engine=engine)
        assert (result.retval, result.data_out) == (expected.retval, expected.data_out), engine


def test_a_backwards_walk_stops_at_a_legacy_packet_load_only_for_its_r0():
    """As the kernel's backtrack_insn for BPF_LD: a walk that wants r0 where LD_ABS/LD_IND wrote it
    gives up (every scalar of the path becomes precise); one that wants other places walks on."""
    from bpfjit.verifier import precision
    ld_abs = Insn(isa.LD | isa.ABS | isa.W, 0, 0, 0, 14)
    wanted = {(0, "r", 6)}
    assert precision._backtrack_other(ld_abs, precision.Step(3, 0), wanted) is False and wanted == {(0, "r", 6)}
    with pytest.raises(precision._GiveUp):
        precision._backtrack_other(ld_abs, precision.Step(3, 0), {(0, "r", 0)})

"""Widened loops for every program type, and the counters that show they end.

The kernel walks a loop trip by trip; bpfjit first checks each loop once for all its trips
(verifier/widen.py) and accepts only if every widened loop has a counter that moves one way on
every trip and stays bounded (verifier/termination.py). Whatever that cannot show is walked as
the kernel walks it, so verdicts and messages stay the kernel's. tests/progs/loops.c holds the
C loops; the kernel's own verdicts on them are in the comments.
"""
from __future__ import annotations

import json
import pathlib

import pytest

import bpfjit
from bpfjit import BPFError, VerifierError
from bpfjit.asm import assemble_insns
from bpfjit.program import Program
from bpfjit.verifier import cfg, check, termination
from bpfjit.verifier.termination import Delta

PROGS = pathlib.Path(__file__).parent / "progs"
BENCH = pathlib.Path(__file__).parent.parent / "bench" / "progs"


def loops_of(text: str) -> dict[int, termination.Loop]:
    insns = assemble_insns(text)
    facts = cfg.analyse(insns, helper_ids=range(256))
    heads = frozenset(t for s, targets in facts.successors.items() for t in targets if t <= s)
    return termination.loops(insns, facts.successors, heads)


def counters_of(text: str) -> set[Delta]:
    (loop,) = loops_of(text).values()
    return set(loop.counters)


# --- the counters a loop body shows ----------------------------------------------------------

@pytest.mark.parametrize("step,counter", [
    ("add %r1, 1", Delta(("r", 1), 1, 1, 64)),     # i++
    ("add32 %r1, 3", Delta(("r", 1), 3, 3, 32)),   # 32-bit arithmetic: a 32-bit counter
    ("sub %r1, 1", Delta(("r", 1), -1, -1, 64)),   # counting down
])
def test_a_register_moved_by_a_constant_is_a_counter(step, counter):
    assert counters_of(f"""
        mov %r1, 0
        {step}
        jlt %r1, 10, -2
        exit
    """) == {counter}


def test_a_counter_spilled_to_the_stack_is_followed_through_the_slot():
    found = counters_of("""
        stdw [%r10-8], 0
        ldxdw %r1, [%r10-8]
        add %r1, 1
        stxdw [%r10-8], %r1
        jlt %r1, 10, -4
        exit
    """)
    assert found == {Delta(("s", -8, 8), 1, 1, 64)}


def test_paths_with_different_steps_give_a_range_of_steps():
    assert counters_of("""
        mov %r1, 0
        ldxb %r2, [%r10-1]
        jeq %r2, 0, +2
        add %r1, 2
        ja +1
        add %r1, 1
        jlt %r1, 10, -6
        exit
    """) == {Delta(("r", 1), 1, 2, 64)}


@pytest.mark.parametrize("body", [
    "mov %r1, 0",                     # reset on every trip
    "add %r1, 0",                     # never moves
    "mul %r1, 2",                     # not a constant step
    "call 1",                         # a helper clobbers r1
])
def test_no_counter_where_the_register_does_not_move_by_a_constant(body):
    assert counters_of(f"""
        mov %r1, 0
        {body}
        jlt %r1, 10, -2
        exit
    """) == set()


def test_a_path_that_does_not_move_the_counter_spoils_it():
    assert counters_of("""
        mov %r1, 0
        ldxb %r2, [%r10-1]
        jeq %r2, 0, +1
        add %r1, 1
        jlt %r1, 10, -4
        exit
    """) == set()


def test_a_callee_saved_register_survives_a_helper_call():
    assert counters_of("""
        mov %r6, 0
        call 7
        add %r6, 1
        jlt %r6, 10, -3
        exit
    """) == {Delta(("r", 6), 1, 1, 64)}


def test_a_store_through_another_pointer_may_overwrite_a_stack_counter():
    assert counters_of("""
        stdw [%r10-8], 0
        ldxdw %r1, [%r10-8]
        add %r1, 1
        stxdw [%r10-8], %r1
        stdw [%r2+0], 0
        jlt %r1, 10, -5
        exit
    """) == set()


def test_the_shortest_trip_counts_the_instructions_around_the_loop():
    (loop,) = loops_of("""
        mov %r1, 0
        add %r1, 1
        jeq %r1, 5, +1
        add %r1, 1
        jlt %r1, 10, -4
        exit
    """).values()
    assert loop.shortest_trip == 3


def test_most_trips_from_the_counter_bounds():
    assert termination.most_trips(Delta(("r", 1), 1, 1, 64), 0, 9) == 10
    assert termination.most_trips(Delta(("r", 1), 8, 8, 64), 8, 248) == 31
    assert termination.most_trips(Delta(("r", 1), -2, -1, 64), 0, 9) == 10


# --- verdicts --------------------------------------------------------------------------------

def load(name: str, path: pathlib.Path = PROGS / "loops.o") -> bpfjit.Program:
    return bpfjit.load(str(path), programs=[name]).programs[name]


@pytest.mark.parametrize("name", ["prefix_sums", "copy_counted"])
def test_user_loops_are_checked_once_for_all_trips(name):
    stats = load(name).verification.stats
    assert stats.loops_widened >= 1
    # The kernel walks prefix_sums in 1,016 instructions and copy_counted in 5,607.
    assert stats.insns_processed < 800


def test_a_checksum_loop_over_a_whole_datagram_is_not_walked_trip_by_trip():
    """The kernel processes 326,575 instructions for the bench's checksum (740 trips, each
    splitting on data_end); widened, its two loops take a few hundred."""
    stats = load("checksum", BENCH / "checksum.bpf.o").verification.stats
    assert stats.loops_widened == 2
    assert stats.insns_processed < 2000


def test_a_loop_testing_a_zero_extended_copy_of_its_counter_is_widened():
    """sum_words counts down a 64-bit register and tests a zero-extended copy of it (clang's
    `<<= 32; >>= 32` without ALU32): checked as one 32-bit move, the copy stays linked to the
    counter, whose bounds then show the loop ends (the kernel walks it: 8,886 instructions)."""
    stats = load("sum_words").verification.stats
    assert stats.loops_widened == 1
    assert stats.insns_processed < 200


# The exit test reads a masked copy of the counter, which says nothing of the counter itself.
MASKED_COPY_EXIT = """
    mov %r0, 0
    mov %r2, 100
    add %r2, -1
    mov %r5, %r2
    and %r5, 255
    jne %r5, 0, -4
    exit
"""


def test_a_loop_whose_counter_bounds_are_lost_is_walked_as_the_kernel_walks_it():
    program = Program.from_asm(MASKED_COPY_EXIT, prog_type="xdp")
    assert program.verification.stats.loops_widened == 0
    assert program.verification.stats.insns_processed > 100 * 4


@pytest.mark.parametrize("name,data", [
    ("sum_words", bytes(range(200))),
    ("sum_words", b"\xff" * 1500),
    ("prefix_sums", b"\x00" * 14),
    ("copy_counted", bytes([40]) + bytes(range(1, 100))),
    ("copy_counted", bytes([63]) + bytes(range(1, 30))),
])
def test_widened_programs_run_to_the_interpreters_result(name, data):
    results = {engine: load(name).test_run(data, engine=engine).retval for engine in ("jit", "reference")}
    assert results["jit"] == results["reference"]


def test_a_loop_writing_one_past_its_buffer_is_rejected_with_the_kernels_message():
    with pytest.raises(VerifierError) as caught:
        load("copy_overrun")
    assert caught.value.message == "invalid write to stack R7 off=0 size=1"


COUNTED_LOOP = """
    mov %r0, 0
    mov %r1, 0
    add %r0, %r1
    add %r1, 1
    jlt %r1, {trips}, -3
    exit
"""


def test_a_counted_loop_is_accepted_without_walking_it():
    program = Program.from_asm(COUNTED_LOOP.format(trips=100000), prog_type="xdp")
    assert program.verification.stats.loops_widened == 1
    assert program.verification.stats.insns_processed < 100


def test_a_loop_too_long_for_the_kernels_walk_is_walked_and_rejected_as_the_kernel_does(monkeypatch):
    """The counter proves 1,000 trips of 3 instructions: more than the (lowered) limit, so the
    kernel's walk would stop at it, and bpfjit walks it too rather than accept."""
    monkeypatch.setattr(check, "INSN_LIMIT", 2000)
    with pytest.raises(VerifierError) as caught:
        Program.from_asm(COUNTED_LOOP.format(trips=1000), prog_type="xdp")
    assert caught.value.message == "BPF program is too large. Processed 2001 insn"


def test_a_rejection_at_the_instruction_limit_is_walked_once(monkeypatch):
    """Another rejection is verified again with a log, to write the path to it; one at the limit
    is not (that path is the whole limit long): the widened attempt, then one walk."""
    monkeypatch.setattr(check, "INSN_LIMIT", 2000)
    walks = []
    run = check.Verifier.run
    monkeypatch.setattr(check.Verifier, "run", lambda self: walks.append(self.log.level) or run(self))
    with pytest.raises(VerifierError) as caught:
        Program.from_asm(COUNTED_LOOP.format(trips=1000), prog_type="xdp")
    assert caught.value.message.startswith("BPF program is too large.") and walks == [0, 0]
    assert caught.value.log == caught.value.message
    walks.clear()
    with pytest.raises(VerifierError):
        Program.from_asm("mov %r0, 0\nldxdw %r0, [%r0+0]\nexit", prog_type="xdp")
    assert walks == [0, 0, 1]  # widened, plain, and again for the log


def test_an_endless_loop_gets_the_kernels_message():
    with pytest.raises(VerifierError) as caught:
        Program.from_asm("""
            mov %r0, 1
            mov %r1, 0
            add %r1, 0
            jeq %r0, 1, -2
            exit
        """, prog_type="xdp")
    assert caught.value.message == "infinite loop detected at insn 2"


# A pointer walking the packet, checked for 2 bytes and read for 4: wrong on every trip.
PACKET_WALK_READS_TOO_MUCH = """
    ldxw %r2, [%r1+0]
    ldxw %r3, [%r1+4]
    mov %r0, 0
    mov %r4, 0
    mov %r5, %r2
    add %r5, 2
    jgt %r5, %r3, +5
    ldxw %r6, [%r2+0]
    add %r0, %r6
    add %r2, 2
    add %r4, 1
    jlt %r4, 100, -8
    exit
"""


def test_a_widened_packet_pointer_keeps_only_the_range_each_trip_proved():
    with pytest.raises(VerifierError) as caught:
        Program.from_asm(PACKET_WALK_READS_TOO_MUCH, prog_type="xdp")
    assert caught.value.message.startswith("invalid access to packet, off=0 size=4")
    fixed = Program.from_asm(PACKET_WALK_READS_TOO_MUCH.replace("add %r5, 2", "add %r5, 4"), prog_type="xdp")
    assert fixed.verification.stats.loops_widened == 1
    data = bytes(range(64))
    assert fixed.test_run(data).retval == fixed.test_run(data, engine="reference").retval


def test_a_packet_longer_than_the_verifier_assumes_is_refused():
    """Widened loops bound a checked packet pointer by the longest packet (65,535 bytes, the
    kernel's MAX_PACKET_OFF): test runs never give a longer one. An skb run takes one page's
    3,712 bytes, as the kernel's does; XDP puts what does not fit its linear page into frags."""
    program = Program.from_asm("mov %r0, 2\nexit", prog_type="tc")
    assert program.test_run(bytes(3712)).retval == 2
    with pytest.raises(BPFError, match="3713 bytes is longer than the 3712"):
        program.test_run(bytes(3713))


def test_verify_reports_widened_loops(capsys):
    from bpfjit.cli import main
    main(["verify", "--json", str(PROGS / "loops.o")])
    records = {r["program"]: r for r in json.loads(capsys.readouterr().out)}
    assert records["prefix_sums"]["loops_widened"] == 4
    assert records["sum_words"]["loops_widened"] == 1
    assert records["copy_overrun"]["verdict"] == "failure"


# --- loops left on equality --------------------------------------------------------------------

# clang's form of `for (i = 0; i < N; i++)` when a strength-reduced induction variable replaces
# i: a counter moved by one exact step, left when it equals the constant N steps away.
EQUALITY_LOOP = """
    mov %r0, 0
    mov {r1}, {start}
    add %r0, 1
    add {r1}, {step}
    lddw %r2, {exit_value}
    jne {r1}, %r2, -5
    exit
"""


def equality_loop(start: int = 0, step: int = 7, exit_value: int = 700, width: int = 64) -> str:
    text = EQUALITY_LOOP.format(r1="%r1", start=start, step=step, exit_value=exit_value)
    if width == 32:
        text = text.replace("mov %r1", "mov32 %r1").replace("add %r1", "add32 %r1") \
            .replace("jne %r1", "jne32 %r1")
    return text


def test_an_exact_step_counter_tested_against_a_constant_is_an_equality_exit():
    (loop,) = loops_of(equality_loop(step=-0x61c88647, exit_value=64 * -0x61c88647 & (2**64 - 1))).values()
    assert loop.exits == (termination.EqualityExit(("r", 1), -0x61c88647, -0x61c88647,
                                                   64 * -0x61c88647 & (2**64 - 1), 64),)


@pytest.mark.parametrize("start,step,exit_value,width,trips", [
    (0, 7, 700, 64, 100),
    (0, -0x61c88647, 64 * -0x61c88647 & (2**64 - 1), 64, 64),  # hash_churn's i * 0x9e3779b9
    (0, 4, 400, 64, 100),             # an even step: solvable when the distance is a multiple
    (0, 0x9e3779b9, 0x9e3779b9 * 10 & 0xFFFFFFFF, 32, 10),  # wraps at 32 bits on the way
])
def test_a_loop_left_on_equality_is_accepted_without_walking_it(start, step, exit_value, width, trips):
    program = Program.from_asm(equality_loop(start, step, exit_value, width), prog_type="xdp")
    assert program.verification.stats.loops_widened == 1
    assert program.verification.stats.insns_processed < 100
    for engine in ("jit", "interp", "reference"):
        assert program.test_run(bytes(64), engine=engine).retval == trips


@pytest.mark.parametrize("text", [
    equality_loop(start=2, step=4, exit_value=400),  # never equal: 2 + 4n is never 400 - 4
    equality_loop(start=0, step=1, exit_value=0),     # equal only after 2**64 trips
    # the counter's start is unknown (the packet's first word)
    equality_loop().replace("mov %r1, 0", "ldxw %r1, [%r1+0]"),
])
def test_a_loop_whose_exit_value_is_not_shown_reachable_is_walked(text, monkeypatch):
    """Each would make (nearly) endless trips: the walk meets the (lowered) limit, as the
    kernel's walk meets its own."""
    monkeypatch.setattr(check, "INSN_LIMIT", 3000)
    with pytest.raises(VerifierError) as caught:
        Program.from_asm(text, prog_type="xdp")
    assert caught.value.message == "BPF program is too large. Processed 3001 insn"


@pytest.mark.parametrize("text", [
    # the test is skipped on some trips (r3 comes from the packet: either way on any trip)
    """
    ldxb %r3, [%r1+0]
    mov %r1, 0
    add %r1, 1
    jeq %r3, 0, +1
    jeq %r1, 50, +1
    ja -4
    exit
    """,
    # the "equal" side stays in the loop
    """
    mov %r1, 0
    add %r1, 1
    jeq %r1, 50, +0
    jlt %r1, 100, -3
    exit
    """,
])
def test_no_equality_exit_where_a_trip_may_go_around_it(text):
    (loop,) = loops_of(text).values()
    assert loop.exits == ()


def test_the_bench_hash_churn_loop_is_not_walked_trip_by_trip():
    """hash_churn's 64 trips are left on equality of a counter stepping by -0x61c88647: the
    kernel walks them in 2,141 instructions; proven by its equality exit, a few hundred."""
    stats = load("hash_churn", BENCH / "hash_churn.bpf.o").verification.stats
    assert stats.loops_widened == 1
    assert stats.insns_processed < 500


# --- widening against a scalar whose ranges an impossible edge reset ----------------------------

def test_a_widened_state_covers_a_scalar_whose_tnum_knows_more_than_its_ranges():
    """On an edge that cannot be taken, the kernel's invariant check resets a scalar's ranges and
    keeps its tnum (scalar._finish): var_off (0x2; 0x1) with no bounds is the set {2, 3}. Kernel
    pruning compares ranges as they are; a widened state compares the values held."""
    from bpfjit.verifier.prune import _Ids, _reg_covers
    from bpfjit.verifier.scalar import Scalar, synced
    from bpfjit.verifier.state import scalar
    from bpfjit.verifier.tnum import Tnum
    reset = Scalar(Tnum(2, 1), -(1 << 63), (1 << 63) - 1, 0, (1 << 64) - 1, -(1 << 31), (1 << 31) - 1, 0, (1 << 32) - 1)
    two_or_three = Scalar.from_range(2, 3, 2, 3, 2, 3, 2, 3)
    assert synced(reset) == two_or_three
    assert _reg_covers(scalar(two_or_three), scalar(reset), _Ids(one_to_one=False), exact=False)
    assert not _reg_covers(scalar(two_or_three), scalar(reset), _Ids(one_to_one=True), exact=False)


def test_nested_loops_with_an_impossible_edge_verify_in_few_steps():
    """Found by the differential fuzz campaign (program 7,925 of seed 0xC0FFEE): the inner loop's
    head was widened to the same state over and over (r7 as above, never covered), about 50
    widenings a second, towards the 1M-instruction limit: minutes for one program. It now
    verifies in about 2,700 instructions, and every engine gives the reference's result."""
    from test_verifier_precision import _fuzz_program
    code, mem = _fuzz_program("fuzz_widen_unsynced.hex")
    program = Program.from_bytes(code)
    assert program.verification.stats.insns_processed < 10_000
    expected = program.test_run(mem, engine="reference")
    for engine in ("jit", "interp"):
        result = program.test_run(mem, engine=engine)
        assert (result.retval, result.data_out) == (expected.retval, expected.data_out), engine


def test_a_widened_loops_fixpoint_is_not_an_endless_loop():
    """Found by the differential fuzz campaign (program 9,392 of seed 0xC0FFEE): `r7 = 2; loop:
    call; r7 -= 1; if r7 > 0 goto loop`. Once widened, the head holds r7 in [1, max], and a trip
    brings back exactly that state: the widening's fixpoint, which the exact-repeat check took
    for an endless loop ("infinite loop detected at insn 131"). States that come from a widened
    one are no longer compared for exact repeats."""
    from test_verifier_precision import _fuzz_program
    code, mem = _fuzz_program("fuzz_widened_fixpoint.hex")
    program = Program.from_bytes(code)
    expected = program.test_run(mem, engine="reference")
    for engine in ("jit", "interp"):
        result = program.test_run(mem, engine=engine)
        assert (result.retval, result.data_out) == (expected.retval, expected.data_out), engine


# --- raw programs: a widened loop that no path leaves ---------------------------------------------
# Two shapes the hostile-program fuzzer found hanging the JIT: the exit compares a register the
# loop resets every trip, while a pointer (live, as it feeds itself) moves on, so no two visits
# of the head are equal and the kernel's exact-repeat check alone never fires.
ENDLESS_RAW = {
    "constant_exit": """
        mov %r3, 0
        mov %r6, %r1
    loop:
        add %r6, 1
        jle %r3, 8, loop
        mov %r0, 0
        exit""",
    "reset_every_trip": """
        mov %r6, 48
        mov %r8, %r1
    loop:
        mov32 %r6, 1
        lddw %r7, 0xfffffffe
        add %r6, -1
        add %r8, 2
        jgt %r7, 0, loop
        mov %r0, %r6
        exit""",
}


@pytest.mark.parametrize("name", sorted(ENDLESS_RAW))
def test_a_raw_loop_no_path_leaves_is_an_infinite_loop(name):
    with pytest.raises(VerifierError) as raised:
        Program.from_asm(ENDLESS_RAW[name])
    assert raised.value.message.startswith("infinite loop detected at insn ")


def test_a_raw_loop_left_by_what_it_reads_is_accepted():
    # strlen over the run's memory: the way out depends on the bytes, so some path takes it.
    program = Program.from_asm("""
        mov %r0, 0
    loop:
        mov %r3, %r1
        add %r3, %r0
        ldxb %r4, [%r3]
        jeq %r4, 0, out
        add %r0, 1
        ja loop
    out:
        exit""")
    assert program.run(b"hello\0world", engine="jit") == 5

"""Native tail calls (issue 12): jitted code calls the target of bpf_tail_call through the prog
array's table of native entry points (runtime/maps/fd_array.py ProgArray), checking the index
and the run's count of 33 itself, without the Python helper; an empty slot, an index out of
range or the limit fall through with r0 = -ENOENT, as the helper gives. Results must be the
reference interpreter's on every engine, and a slot changed while loaded must take effect.
"""
from __future__ import annotations

import dataclasses
import pathlib

import pytest

import bpfjit
from bpfjit import isa
from bpfjit.asm import assemble_insns
from bpfjit.bench import measure
from bpfjit.bench.cases import HELPER_CASES
from bpfjit.program import ENGINES, Program
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import MapSpec, create_map
from bpfjit.runtime.stdhelpers import standard_helpers
from test_helper_bench_progs import python_helper_calls, sample_frames

PROGS = pathlib.Path(__file__).parent / "progs"
ENOENT = (1 << 64) - 2  # r0 after a tail call that failed
MAP = 0x5EED  # the ld_imm64 immediate the programs below name the prog array by
# A socket filter tail-calls slot skb->len (the frame's length past its Ethernet header), the
# index's high half set (the helper takes a u32), and returns r0 when the call fails.
CALLER = f"""
    ldxw %r3, [%r1+0]
    lddw %r4, 0x100000000
    or %r3, %r4
    lddw %r2, {MAP}
    call 12
    exit
"""


def returns_len_plus(n: int) -> str:
    """A socket filter returning skb->len + n: the ctx it reads is the caller's."""
    return f"ldxw %r0, [%r1+0]\nadd %r0, {n}\nexit"


class Jumps:
    """A PROG_ARRAY of four slots and socket filters that name it."""

    def __init__(self) -> None:
        self.map = create_map(MapSpec("jumps", MapType.PROG_ARRAY, 4, 4, 4))

    def program(self, text: str, name: str, verify: bool = True) -> Program:
        insns = [dataclasses.replace(insn, src=isa.PSEUDO_MAP_FD) if insn.is_lddw and insn.imm == MAP else insn
                 for insn in assemble_insns(text)]
        env = Environment(standard_helpers(lambda line: None), self.map.regions(),
                          lambda insn, index: self.map.handle)
        return Program(insns, env, name, "socket", verify=verify)


@pytest.fixture
def jumps() -> tuple[Jumps, Program]:
    """The array with slot 1 holding a program that returns skb->len + 42, and the caller."""
    array = Jumps()
    array.map.set_program(1, array.program(returns_len_plus(42), "leaf"))
    return array, array.program(CALLER, "caller")


def frame(length: int) -> bytes:
    """A frame whose skb->len is `length` (the Ethernet header is pulled)."""
    return bytes(14 + length)


# slot -> the caller's r0: slot 1 runs the leaf (len 1 + 42); 0 and 2 are empty, 4 and 100 past the end
OUTCOMES = {0: ENOENT, 1: 43, 2: ENOENT, 4: ENOENT, 100: ENOENT}


def test_every_engine_gives_the_tail_called_result_or_falls_through(engine, jumps):
    _, caller = jumps
    assert {slot: caller.test_run(frame(slot), engine=engine).retval for slot in OUTCOMES} == OUTCOMES


def test_jitted_tail_calls_and_their_failures_stay_native(jumps):
    _, caller = jumps
    caller.prepare("jit")  # fills the slots' native entries
    with python_helper_calls() as calls:
        results = {slot: caller.test_run(frame(slot), repeat=5).retval for slot in OUTCOMES}
    assert results == OUTCOMES
    assert calls[0] == 0


def test_the_first_tail_call_through_a_slot_fills_its_entry(jumps):
    # A run fills the entries of the arrays its program names before it starts; a target that
    # tail-calls through another array finds that one's entries empty on its first call, which
    # takes the Python helper: it fills the entry, and the runs after it are native.
    outer, caller = jumps
    inner = Jumps()
    inner.map.set_program(1, inner.program(returns_len_plus(42), "leaf"))
    outer.map.set_program(1, inner.program(CALLER, "middle"))
    with python_helper_calls() as calls:
        assert caller.test_run(frame(1), repeat=10).retval == 43
    assert calls[0] == 1
    with python_helper_calls() as calls:
        assert caller.test_run(frame(1), repeat=10).retval == 43
    assert calls[0] == 0
    assert [caller.test_run(frame(1), engine=engine).retval for engine in ENGINES] == [43] * 3


def test_replacing_a_slot_takes_effect(engine, jumps):
    array, caller = jumps
    caller.prepare(engine)
    assert caller.test_run(frame(1), engine=engine).retval == 43
    array.map.set_program(1, array.program(returns_len_plus(100), "other"))
    assert caller.test_run(frame(1), engine=engine).retval == 101
    del array.map[1]
    assert caller.test_run(frame(1), engine=engine).retval == ENOENT
    array.map[1] = array.program(returns_len_plus(7), "third")
    assert caller.test_run(frame(1), engine=engine).retval == 8


def test_a_target_without_native_helpers_runs_through_the_helper(jumps):
    # An unverified target's helpers are Python: the slot keeps no entry, and every tail call
    # goes through the helper and bpfjit.program, with the same result.
    array, caller = jumps
    array.map.set_program(1, array.program(returns_len_plus(42), "unverified", verify=False))
    caller.prepare("jit")
    with python_helper_calls() as calls:
        assert caller.test_run(frame(1), repeat=4).retval == 43
    assert calls[0] == 4


# --- tests/progs/calls.c: chain tail-calls itself until the limit ---------------------------------

@pytest.mark.parametrize("repeat", [1, 3])
def test_the_limit_of_33_holds_natively(repeat):
    obj = bpfjit.load(PROGS / "calls.o")
    chain = obj.programs["chain"]
    chain.prepare("jit")
    with python_helper_calls() as calls:
        result = chain.test_run(bytes(64), repeat=repeat)
    # Each invocation: the first run and 33 tail calls; the 34th call falls through and the
    # program returns chain_runs.
    assert (result.retval, obj.bss.chain_runs) == (34 * repeat, 34 * repeat)
    assert calls[0] == 0


def test_an_empty_slot_then_a_program_as_the_reference(engine):
    obj = bpfjit.load(PROGS / "calls.o")
    entry = obj.programs["entry"]  # slot 3 is empty (falls through), slot 1 runs leaf
    assert [entry.test_run(bytes(64), engine=engine).retval for _ in range(3)] == [41, 42, 43]
    assert obj.bss.tail_hops == 3


# --- the bench's chain --------------------------------------------------------------------------

TAIL_CHAIN = next(case for case in HELPER_CASES if case.name == "tail_chain")


def chain_state(engine: str) -> tuple[list[int], dict[str, int]]:
    program, obj = measure.load_program(TAIL_CHAIN, verify=True)
    verdicts = [program.test_run(data, engine=engine).retval for _, data in sample_frames() * 2]
    return verdicts, {name: obj.bss[name] for name in ("chain_sum", "chain_hops", "chain_stage")}


def test_the_chain_leaves_the_reference_state_on_every_engine():
    reference = chain_state("reference")
    assert reference[1]["chain_hops"] == 8 * 4  # two worked frames, twice, 8 stages each
    for engine in ENGINES:
        assert chain_state(engine) == reference

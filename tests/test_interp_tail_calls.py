"""Native tail calls on the native interpreter (issue 12): its bpf_tail_call switches to the
target's image through the prog array's image table (runtime/maps/fd_array.py
ProgArray.image_table), checking the index and the run's count of 33 itself, without the Python
helper and without the target's JIT code; an empty slot, an index out of range or the limit fall
through with r0 = -ENOENT. What it does not cover (a call from a BPF function, an unverified or
budgeted run, a target it may not switch to) takes the helper as before. Every result must be
the reference interpreter's.
"""
from __future__ import annotations

import ctypes
import errno
import pathlib

import pytest

import bpfjit
from bpfjit.errors import MapError
from bpfjit.program_flags import BPF_F_XDP_HAS_FRAGS
from bpfjit.runtime.maps import ProgArray
from test_helper_bench_progs import python_helper_calls
from test_native_tail_calls import CALLER, ENOENT, MAP, OUTCOMES, Jumps, frame, returns_len_plus

PROGS = pathlib.Path(__file__).parent / "progs"


def slot_word(table: int, index: int) -> int:
    """Slot `index`'s word in one of a prog array's native tables."""
    return ctypes.c_uint64.from_address(table + 8 * index).value


@pytest.fixture
def jumps() -> tuple[Jumps, bpfjit.Program]:
    """The array with slot 1 holding a program that returns skb->len + 42, and the caller."""
    array = Jumps()
    array.map.set_program(1, array.program(returns_len_plus(42), "leaf"))
    return array, array.program(CALLER, "caller")


def test_tail_calls_and_their_failures_stay_native_and_interpreted(jumps):
    array, caller = jumps
    caller.prepare("interp")  # fills the slots' images
    with python_helper_calls() as calls:
        results = {slot: caller.test_run(frame(slot), repeat=5, engine="interp").retval for slot in OUTCOMES}
    assert results == OUTCOMES
    assert calls[0] == 0
    # The target ran interpreted: its image is in the interpreter's table, and the JIT's entry
    # was never asked for.
    assert slot_word(array.map.image_table, 1) not in (0, ProgArray.EMPTY_ENTRY)
    assert slot_word(array.map.entry_table, 1) == 0
    assert [slot_word(array.map.image_table, slot) for slot in (0, 2, 3)] == [ProgArray.EMPTY_ENTRY] * 3


def test_replacing_a_slot_takes_effect_natively(jumps):
    array, caller = jumps
    caller.prepare("interp")
    outcomes = []
    with python_helper_calls() as calls:
        outcomes.append(caller.test_run(frame(1), engine="interp").retval)
        array.map.set_program(1, array.program(returns_len_plus(100), "other"))
        outcomes.append(caller.test_run(frame(1), engine="interp").retval)
        del array.map[1]
        outcomes.append(caller.test_run(frame(1), engine="interp").retval)
        array.map[1] = array.program(returns_len_plus(7), "third")
        outcomes.append(caller.test_run(frame(1), repeat=3, engine="interp").retval)
    assert outcomes == [43, 101, ENOENT, 8]
    assert calls[0] == 0  # each run fills the changed slot before it starts


def behind_a_middle_program(outer: Jumps) -> Jumps:
    """A second array whose slot 1 returns skb->len + 42, reached from `outer`'s slot 1 by a
    program that tail-calls through it."""
    inner = Jumps()
    for array, text, name in ((inner, returns_len_plus(42), "leaf"), (outer, CALLER, "middle")):
        array.map.set_program(1, inner.program(text, name))
    return inner


def test_the_arrays_a_target_names_are_filled_before_the_run(jumps):
    # The middle program tail-calls through another array, which the caller does not name:
    # the run fills it too (nothing in an interpreted run could), so every call is native.
    outer, caller = jumps
    inner = behind_a_middle_program(outer)
    with python_helper_calls() as calls:
        assert caller.test_run(frame(1), repeat=10, engine="interp").retval == 43
        assert caller.test_run(frame(2), engine="interp").retval == ENOENT  # outer slot 2 is empty
    assert calls[0] == 0
    assert slot_word(inner.map.image_table, 1) not in (0, ProgArray.EMPTY_ENTRY)


def test_a_target_without_native_helpers_runs_through_the_helper(jumps):
    array, caller = jumps
    array.map.set_program(1, array.program(returns_len_plus(42), "unverified", verify=False))
    caller.prepare("interp")
    assert slot_word(array.map.image_table, 1) == 0  # no image the interpreter may switch to
    with python_helper_calls() as calls:
        assert caller.test_run(frame(1), repeat=4, engine="interp").retval == 43
    assert calls[0] == 4


def test_a_target_of_another_type_is_refused(jumps):
    # The kernel's bpf_prog_map_compatible: the array takes the kind of its first user (the
    # caller, which names it), and an update with a program of another type is EINVAL.
    array, caller = jumps
    xdp = bpfjit.Program.from_asm("mov %r0, 2\nexit", name="xdp_pass", prog_type="xdp")
    with pytest.raises(MapError) as refused:
        array.map.set_program(1, xdp)
    assert refused.value.errno == errno.EINVAL
    assert f"program 'xdp_pass': prog array {array.map.name} holds " in str(refused.value)
    assert array.map.program(1).name == "leaf"  # the slot keeps what it held


def test_a_tail_call_from_a_function_and_budgeted_runs_take_the_helper(jumps):
    array, _ = jumps
    from_function = array.program(f"""
        call local tail
        add %r0, 1000
        exit
    tail:
        ldxw %r3, [%r1+0]
        lddw %r2, {MAP}
        call 12
        exit
    """, "from_function")
    from_function.prepare("interp")
    for program, limits in ((from_function, {}), (array.program(CALLER, "budgeted"), {"max_steps": 100})):
        expected = {slot: program.test_run(frame(slot), engine="reference", **limits).retval for slot in OUTCOMES}
        with python_helper_calls() as calls:
            got = {slot: program.test_run(frame(slot), engine="interp", **limits).retval for slot in OUTCOMES}
        assert got == expected
        assert calls[0] == len(OUTCOMES)  # one helper call per run: each tail call, and each failure


# --- tests/progs/calls.c: chain tail-calls itself until the limit ---------------------------------

def chain_outcome(engine: str, repeat: int) -> tuple[int, int, int]:
    """r0 of the last of `repeat` runs of a fresh calls.o's chain, its chain_runs after them, and
    the Python helper calls they made."""
    obj = bpfjit.load(PROGS / "calls.o")
    chain = obj.programs["chain"]
    chain.prepare(engine)
    with python_helper_calls() as calls:
        retval = chain.test_run(bytes(64), repeat=repeat, engine=engine).retval
    return retval, obj.bss.chain_runs, calls[0]


@pytest.mark.parametrize("repeat", [1, 3])
def test_the_limit_of_33_holds_natively(repeat):
    # Each invocation: the first run and 33 tail calls; the 34th call falls through and the
    # program returns chain_runs; each invocation counts from 0 again.
    assert chain_outcome("interp", repeat) == (34 * repeat, 34 * repeat, 0)
    assert chain_outcome("reference", repeat)[:2] == (34 * repeat, 34 * repeat)


def test_an_empty_slot_then_a_program_natively():
    obj = bpfjit.load(PROGS / "calls.o")
    entry = obj.programs["entry"]  # slot 3 is empty (falls through), slot 1 runs leaf
    entry.prepare("interp")
    with python_helper_calls() as calls:
        assert [entry.test_run(bytes(64), engine="interp").retval for _ in range(3)] == [41, 42, 43]
    assert calls[0] == 0
    assert obj.bss.tail_hops == 3


def test_a_program_of_another_kind_naming_the_array_is_refused_at_load(jumps):
    # bpf_check_tail_call at load (verified or not): the array is the socket filters' (its first
    # user's), so an XDP program, or a socket filter flagged xdp.frags, that names it does not load.
    array, _ = jumps
    for prog_type, flags in (("xdp", 0), ("socket", BPF_F_XDP_HAS_FRAGS)):
        insns = array.program(CALLER, "probe", verify=False).original_insns
        with pytest.raises(MapError) as refused:
            bpfjit.Program(insns, array.program(CALLER, "env", verify=False).env, "other", prog_type, verify=False,
                           flags=flags)
        assert refused.value.errno == errno.EINVAL
    assert array.program(CALLER, "same_kind").test_run(frame(1)).retval == 43

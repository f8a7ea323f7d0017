"""Typed function pointers in global data (tests/progs/debug_point.c, fnptr_rules.c,
fnptr_bad_init.c): a debug point a Python tool switches between tracers while traffic runs, the
verifier's rules for function-pointer slots (each broken by a program rejected at load with its
message), and function pointers as Python values.

Expected values are derived by hand from the C sources: trace_length gives the packet's length,
trace_first_byte its first byte, trace_count the number of packets it has seen."""
from __future__ import annotations

import ctypes
import pathlib
import struct
import threading

import pytest

import bpfjit
from bpfjit.listing import xlated_listing
from bpfjit.runtime.environment import func_token

from conftest import ENGINES, traffic_beside_tool

PROGS = pathlib.Path(__file__).parent / "progs"
PACKET = bytes([7]) + bytes(59)  # 60 bytes, first byte 7


@pytest.mark.parametrize("engine", ENGINES)
def test_a_debug_point_calls_the_tracer_python_picks(engine):
    obj = bpfjit.load(PROGS / "debug_point.o")
    program = obj.programs["debug_point"]
    program.test_run(PACKET, engine=engine)
    assert (obj.globals["traced"], obj.globals["last"]) == (0, 0)  # hook is NULL: no tracing
    for tracer, expected in (("trace_length", 60), ("trace_first_byte", 7), ("trace_count", 1),
                             ("trace_count", 2), ("trace_length", 60)):
        obj.globals["hook"] = obj.functions[tracer]
        program.test_run(PACKET, engine=engine)
        assert obj.globals["last"] == expected, tracer
    assert obj.globals["traced"] == 5
    obj.globals["hook"] = None
    program.test_run(PACKET, engine=engine)
    assert obj.globals["traced"] == 5
    # The other pointer, of another prototype, was called with &word on every run.
    assert obj.globals["read_back"] == 42


@pytest.mark.parametrize("engine", ["jit", "interp"])
def test_the_tracer_switches_while_traffic_runs(engine):
    """Two threads run packets while Python keeps switching the hook: every run either traced
    or not, each trace one of the tracers' answers for the packet."""
    obj = bpfjit.load(PROGS / "debug_point.o")
    program = obj.programs["debug_point"]
    runs, answers, done = 300, set(), threading.Event()

    def traffic() -> None:
        for _ in range(runs):
            program.test_run(PACKET, repeat=10, engine=engine)

    def tool() -> None:
        choices = [obj.functions["trace_length"], obj.functions["trace_first_byte"], None]
        turn = 0
        while not done.is_set():
            obj.globals["hook"] = choices[turn % 3]
            answers.add(obj.globals["last"])
            turn += 1

    assert not any(t.is_alive() for t in traffic_beside_tool(traffic, 2, tool, done))
    assert answers <= {0, 60, 7}
    assert obj.globals["traced"] <= 2 * runs * 10


def test_reading_and_assigning_function_pointers_from_python():
    obj = bpfjit.load(PROGS / "debug_point.o")
    assert set(obj.functions) == {"trace_length", "trace_first_byte", "trace_count", "read_word"}
    assert [f.name for f in obj.globals["tracers"]] == ["trace_length", "trace_first_byte", "trace_count"]
    assert obj.globals["reader"] == obj.functions["read_word"]
    assert obj.globals["hook"] is None
    obj.globals["hook"] = obj.globals["tracers"][1]
    assert obj.bss.hook.name == "trace_first_byte"
    with pytest.raises(bpfjit.BPFError, match=r"^hook is a function pointer: assign a function .* not 74565$"):
        obj.globals["hook"] = 0x12345
    with pytest.raises(bpfjit.BPFError, match=r"^cannot assign read_word to hook: arg0 read_word\(unsigned long "
                                              r"long \*\) doesn't match hook\(struct xdp_md \*\)$"):
        obj.globals["hook"] = obj.functions["read_word"]
    with pytest.raises(bpfjit.BPFError, match="^hook holds function pointers: .* not bytes$"):
        obj.globals["hook"] = bytes(8)
    with pytest.raises(bpfjit.BPFError, match="^reader is initialised with a function: it can name another one"):
        obj.globals["reader"] = None
    other = bpfjit.load(PROGS / "debug_point.o")
    with pytest.raises(bpfjit.BPFError, match="^hook: trace_length is not a function of debug_point.o"):
        obj.globals["hook"] = other.functions["trace_length"]
    assert obj.globals["hook"].name == "trace_first_byte"  # no refused write changed it


@pytest.mark.parametrize("engine", ENGINES)
def test_a_program_may_store_a_fitting_function(engine):
    obj = bpfjit.load(PROGS / "debug_point.o")
    obj.programs["arm_length"].test_run(PACKET, engine=engine)
    assert obj.globals["hook"] == obj.functions["trace_length"]
    obj.programs["debug_point"].test_run(bytes(33), engine=engine)
    assert obj.globals["last"] == 33


@pytest.mark.parametrize("program, message", [
    ("no_null_check", "callx R2 type=func_or_null expected=func"),
    ("store_more_args", "trace_pair() has 2 args while hook() has 1 args"),
    ("store_void_return", "Return type UNKN of trace_nothing() doesn't match type INT of hook()"),
    ("store_other_struct", "arg0 trace_sock(struct __sk_buff *) doesn't match hook(struct xdp_md *)"),
    ("store_number", "invalid function pointer access, R1 type=scalar expected=func (hook)"),
    ("store_half", "function pointer hook access size must be BPF_DW"),
    ("helper_write", "function pointer hook cannot be accessed indirectly by helper"),
])
def test_each_rule_is_enforced_at_load(program, message):
    with pytest.raises(bpfjit.VerifierError) as caught:
        bpfjit.load(PROGS / "fnptr_rules.o", programs=[program])
    assert caught.value.message == message


@pytest.mark.parametrize("engine", ENGINES)
def test_a_checked_call_is_accepted(engine):
    obj = bpfjit.load(PROGS / "fnptr_rules.o", programs=["checked_call"])
    program = obj.programs["checked_call"]
    assert program.test_run(PACKET, engine=engine).retval == 2  # XDP_PASS: hook is NULL
    obj.globals["hook"] = obj.functions["trace_length"]
    assert program.test_run(PACKET, engine=engine).retval == 60


def test_initial_data_must_fit_the_pointer():
    with pytest.raises(bpfjit.ObjectError, match=r"^fnptr_bad_init.o: .data: hook = trace_pair: "
                                                 r"trace_pair\(\) has 2 args while hook\(\) has 1 args$"):
        bpfjit.load(PROGS / "fnptr_bad_init.o")


def test_the_xlated_listing_names_the_call_targets():
    obj = bpfjit.load(PROGS / "debug_point.o")
    listing = xlated_listing(obj, obj.programs["arm_length"])
    assert "; func trace_length" in listing
    listing = xlated_listing(obj, obj.programs["debug_point"])
    callx = [line for line in listing.splitlines() if "callx" in line]
    # hook (insn 7) is a tracer_t, which the three tracers fit; reader (insn 21) a reader_t, which
    # only read_word fits: the verifier followed each callx into exactly those.
    assert [line.split("\t")[0].strip() for line in callx] == ["7:", "21:"]
    assert callx[0].endswith("; may call trace_length, trace_first_byte, trace_count")
    assert callx[1].endswith("; may call read_word")


def test_the_xlated_listing_of_an_unverified_program_names_every_function_whose_address_is_taken():
    """Unverified, nothing narrows a callx: the engines dispatch it to any address-taken function."""
    obj = bpfjit.load(PROGS / "debug_point.o", verify=False)
    listing = xlated_listing(obj, obj.programs["debug_point"])
    callx = [line for line in listing.splitlines() if "callx" in line]
    assert len(callx) == 2
    assert all(line.endswith("; may call trace_length, trace_first_byte, trace_count, read_word") for line in callx)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_callx_reaches_only_the_functions_that_fit_even_behind_the_checks(engine):
    """A token written into the slot's memory directly (as a native tool could: no Python check
    sees it) names read_word, whose prototype does not fit hook's: every engine ends the run at
    the callx instead of calling it with the ctx, which read_word would dereference as a u64*."""
    obj = bpfjit.load(PROGS / "debug_point.o")
    obj.globals["hook"] = obj.functions["trace_length"]
    bss = obj.maps[".bss"]
    raw = ctypes.string_at(bss.value_base, bss.value_size)
    offset = raw.index(struct.pack("<Q", func_token(obj.functions["trace_length"].number)))
    wrong = func_token(obj.functions["read_word"].number)
    ctypes.memmove(bss.value_base + offset, struct.pack("<Q", wrong), 8)
    message = f"callx to {wrong:#x}, which is neither a helper nor a BPF function"
    with pytest.raises(bpfjit.BPFRuntimeError, match=message):
        obj.programs["debug_point"].test_run(PACKET, engine=engine)

"""The helper-heavy bench programs: what they compute on every engine, and that jitted runs of
them never enter Python.

bench/cases.py models each program (bench/progs: hash_churn.c, lru_churn.c, percpu_counter.c,
spin_counter.c, loop_squares.c, queue_churn.c, tail_chain.c, ringbuf_events.c) in plain Python,
apart from its C. Here each one runs sample frames on every engine and must give the model's
verdicts and leave the model's maps and globals. Then issue 12's acceptance: a verified program's helpers are native
code, so a jitted run calls no Python helper. Every Python function native code can call during a
run is a ctypes callback made by ``jit.engine.helper_callback`` (program helpers, and the Python
fallbacks of the native helpers); a profile hook counts calls of that wrapper. An unverified
program, whose helpers all stay Python, shows that the count sees every call.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import pytest

from bpfjit.bench import measure
from bpfjit.bench.cases import (FILLED_MAP_CASES, HELPER_CASES, RING_RUNS, XDP_DROP, XDP_PASS, XDP_REDIRECT,
                                check_helper_state, helper_expected, helper_frame, longest_prefix_verdict,
                                lru_churn_state, route_table)
from bpfjit.jit import engine as jit_engine
from bpfjit.runtime.run_context import Redirect
from bpfjit.packets import ETH_P_IP, HOST4, arp_frame, ethernet, ipv4, tcp4_frame, udp, udp4_frame
import test_bench_progs

CASES = {case.name: case for case in HELPER_CASES}
LPM_CASE, REDIRECT_CASE = FILLED_MAP_CASES
VARIANTS = [(case, cpu) for case in HELPER_CASES for cpu in case.cpu_variants()]
IDS = [case.name if cpu == "v3" else f"{case.name}-{cpu}" for case, cpu in VARIANTS]

# Helper calls per run on an IPv4 frame, counted from each program's C.
HELPER_CALLS = {"hash_churn": 64 * 3, "lru_churn": 64 * 2, "percpu_counter": 64, "spin_counter": 1 + 64 * 2,
                "loop_squares": 1, "queue_churn": 16 * 2, "tail_chain": 7, "ringbuf_submit": 16 * 2,
                "ringbuf_discard": 16 * 2}


def sample_frames() -> list[tuple[str, bytes]]:
    """Frames reaching every verdict: two IPv4 sources the programs work on, and frames they pass
    or drop untouched."""
    return [("timing input", helper_frame()),
            ("TCP from another source", tcp4_frame(5555, 80, b"x" * 90, src=bytes([198, 51, 100, 77]))),
            ("ARP", arp_frame()),
            ("IPv4 cut short in its header", ethernet(ETH_P_IP, ipv4(17, udp(1, 2, b""))[:16], pad=False)),
            ("Ethernet header only", ethernet(0x88B5, b"", pad=False))]


# --- the models ------------------------------------------------------------------------------------

def test_models_give_the_hand_worked_verdicts():
    verdicts = {description: helper_expected(frame) for description, frame in sample_frames()}
    assert verdicts == {"timing input": XDP_PASS, "TCP from another source": XDP_PASS, "ARP": XDP_PASS,
                        "IPv4 cut short in its header": XDP_DROP, "Ethernet header only": XDP_PASS}
    assert len(helper_frame()) == 64


def test_lru_model_evicts_the_least_recently_used_flow():
    # 64 flows through 32 entries: the cache holds the last 32 of them, each with key * 3.
    state = lru_churn_state([helper_frame()])
    assert len(state["entries"]) == 32
    assert all(value == key * 3 for key, value in state["entries"].items())
    assert list(state["entries"]) == list(lru_churn_state([helper_frame()] * 2)["entries"])


# --- every engine against the models --------------------------------------------------------------

@pytest.mark.parametrize("case, cpu", VARIANTS, ids=IDS)
def test_every_sample_gives_the_model_verdict_and_state(engine, case, cpu):
    program, obj = measure.load_program(case, cpu, verify=True)
    frames = [frame for _, frame in sample_frames()]
    for description, frame in sample_frames():
        measure.check(f"{engine} on {description!r}", case, program.test_run(frame, engine=engine).retval, None,
                      frame)
    check_helper_state(case.name, obj, frames)


@pytest.mark.parametrize("name", sorted(CASES))
def test_repeated_runs_leave_the_state_check_expects(engine, name):
    case = CASES[name]
    program, obj = measure.load_program(case, verify=True)
    runs = 3 if engine == "reference" else 50
    assert program.test_run(case.data(), repeat=runs, engine=engine).retval == XDP_PASS
    case.check_state(obj, runs)


def test_timing_rounds_drain_the_ring():
    # The warm-up rounds and two timed rounds of RING_RUNS runs hold more records than the 4 MB
    # ring: without the drain before each round, reserves would fail (rb_full) and the rounds
    # would time a full ring.
    case = CASES["ringbuf_submit"]
    program, obj = measure.checked_object(case, "v3", "jit", case.data())
    assert case.warmup_rounds * RING_RUNS * 16 * 16 >= 4 << 20  # the warm-up writes the whole ring
    measure.timed_rounds(case, program, obj, case.data(), "jit", RING_RUNS, 2)
    assert obj.bss["rb_full"] == 0
    assert obj.maps["events"].avail_data == RING_RUNS * 16 * 16


# --- no native helper enters Python --------------------------------------------------------------

WRAPPER = next(const for const in jit_engine.helper_callback.__code__.co_consts
               if getattr(const, "co_name", None) == "call")  # the callback helper_callback makes


@contextlib.contextmanager
def python_helper_calls() -> Iterator[list[int]]:
    """A one-element list counting the helper callbacks entered in this thread (native code
    calls back into Python on the thread that runs the program) while the block runs."""
    count = [0]

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is WRAPPER:
            count[0] += 1

    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(None)


def python_helper_calls_of_runs(case, cpu: str, engine: str, verify: bool) -> int:
    """Python helper calls during RUNS runs of a freshly loaded and prepared program, whose
    results and state are checked too (so the runs did make their helper calls)."""
    program, obj = measure.load_program(case, cpu, verify=verify)
    program.prepare(engine)
    with python_helper_calls() as calls:
        result = program.test_run(case.data(), repeat=RUNS, engine=engine)
    assert result.retval == XDP_PASS
    case.check_state(obj, RUNS)
    return calls[0]


RUNS = 20


@pytest.mark.parametrize("case, cpu", VARIANTS, ids=IDS)
def test_jitted_runs_call_no_python_helper(case, cpu):
    assert python_helper_calls_of_runs(case, cpu, "jit", True) == 0


@pytest.mark.parametrize("case", HELPER_CASES, ids=[case.name for case in HELPER_CASES])
def test_interpreted_runs_call_no_python_helper(case):
    assert python_helper_calls_of_runs(case, "v3", "interp", True) == 0


@pytest.mark.parametrize("engine_name", ["jit", "interp"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_count_sees_every_python_helper_call(name, engine_name):
    # Unverified, every helper is a Python callback, except bpf_loop, which the JIT and the native
    # interpreter both run natively in every program.
    calls = 0 if name == "loop_squares" else HELPER_CALLS[name]
    assert python_helper_calls_of_runs(CASES[name], "v3", engine_name, False) == RUNS * calls


# --- the committed objects are what their sources compile to -------------------------------------

@pytest.mark.parametrize("source", sorted({case.source for case in HELPER_CASES + FILLED_MAP_CASES}))
def test_helper_objects_are_fresh(source, tmp_path):
    test_bench_progs.test_bench_objects_are_fresh(source, "bpf_xdp.h", tmp_path)


# --- lpm_lookup: a lookup in 10,000 prefixes --------------------------------------------------------

def lpm_frames() -> list[tuple[str, bytes]]:
    """The timing frame, destinations that stop at a shorter prefix of the timing frame's
    destination or at a random one of the table, one no prefix covers, and frames not looked up."""
    routes = route_table()
    random_route = next(iter(sorted((length, network) for length, network in routes if length == 20
                                    and network >> 24 != HOST4[0])))
    to = {"timing input": HOST4,
          "the /31 of the destination": bytes(HOST4[:3]) + bytes([HOST4[3] ^ 1]),
          "the /8 of the destination": bytes([HOST4[0], HOST4[1] ^ 0x80, 7, 7]),
          "a random /20": (random_route[1] | 0x5A5).to_bytes(4, "big"),
          "no route": bytes([0, 0, 0, 1])}
    return [(description, udp4_frame(40000, 9000, bytes(22), dst=address)) for description, address in to.items()] \
        + [("ARP", arp_frame()), ("IPv4 cut short", ethernet(ETH_P_IP, ipv4(17, udp(1, 2, b""))[:16], pad=False))]


def test_the_route_table_holds_every_prefix_of_the_destination():
    routes = route_table()
    destination = int.from_bytes(HOST4, "big")
    assert len(routes) == 10_000
    assert all((length, destination >> (32 - length) << (32 - length)) in routes for length in range(8, 33))
    assert not any(network >> 24 == 0 for _, network in routes)  # 0.0.0.0/8: "no route"
    assert longest_prefix_verdict(helper_frame()) == routes[(32, destination)]


@pytest.mark.parametrize("cpu", LPM_CASE.cpu_variants())
def test_lpm_lookup_gives_the_longest_prefix_verdict(engine, cpu):
    program, _ = measure.load_program(LPM_CASE, cpu, verify=True)
    verdicts = {description: program.test_run(frame, engine=engine).retval for description, frame in lpm_frames()}
    assert verdicts == {description: longest_prefix_verdict(frame) for description, frame in lpm_frames()}
    assert verdicts["no route"] == XDP_DROP and verdicts["ARP"] == XDP_PASS


def test_jitted_lookups_call_no_python_helper():
    program, _ = measure.load_program(LPM_CASE, verify=True)
    program.prepare("jit")
    with python_helper_calls() as calls:
        result = program.test_run(LPM_CASE.data(), repeat=RUNS, engine="jit")
    assert result.retval == longest_prefix_verdict(LPM_CASE.data()) and calls[0] == 0


# --- xdp_redirect: bpf_redirect_map into a DEVMAP ----------------------------------------------------

@pytest.mark.parametrize("cpu", REDIRECT_CASE.cpu_variants())
def test_xdp_redirect_sends_ipv4_frames_out_of_their_port(engine, cpu):
    program, obj = measure.load_program(REDIRECT_CASE, cpu, verify=True)
    for description, frame in sample_frames():
        result = program.test_run(frame, engine=engine)
        assert result.retval == REDIRECT_CASE.expected(frame), description
        redirected = result.retval == XDP_REDIRECT  # to the port of the destination's last byte
        assert result.redirect == (Redirect(map="tx_ports", key=frame[33] & 7) if redirected else None)
    obj.maps["tx_ports"].clear()  # every port empty: bpf_redirect_map's flags drop the frame
    assert program.test_run(helper_frame(), engine=engine).retval == XDP_DROP


def test_jitted_redirects_call_no_python_helper():
    program, _ = measure.load_program(REDIRECT_CASE, verify=True)
    program.prepare("jit")
    with python_helper_calls() as calls:
        result = program.test_run(REDIRECT_CASE.data(), repeat=RUNS, engine="jit")
    assert result.retval == XDP_REDIRECT and calls[0] == 0

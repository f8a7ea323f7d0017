"""engine="interp": the native interpreter (jit/native_interp.py) as an engine of Program and the
CLI. Each test runs the same program on the native interpreter and on the
reference (engine="reference") and compares what BPF_PROG_TEST_RUN reports and what the maps hold.
tests/test_native_interp.py checks the interpreter loop itself (conformance, random programs,
sandbox); this file checks the wiring: objects, maps, helpers, callbacks, tail calls, static
keys, budgets and the CLI.
"""
from __future__ import annotations

import json
import pathlib

import pytest

import bpfjit
from bpfjit import BPFError, BPFRuntimeError
from bpfjit.cli import main
from bpfjit.program import RUN_ENGINES, Program

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
DATA = pathlib.Path(bpfjit.__file__).resolve().parent / "data"


def test_interp_is_an_engine_a_run_may_choose():
    assert "interp" in RUN_ENGINES
    with pytest.raises(BPFError, match="unknown engine 'native'"):
        Program.from_asm("mov %r0, 1\nexit").test_run(engine="native")


def test_the_bundled_firewall_gives_the_references_results_and_counters():
    packets = [bytes.fromhex(line.split("#")[0].strip()) for line in (DATA / "packets.hex").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    results = {}
    for engine in ("interp", "reference"):
        obj = bpfjit.load(DATA / "firewall.o")
        verdicts = [obj.programs["firewall"].test_run(p, engine=engine).retval for p in packets]
        results[engine] = (verdicts, obj.maps["verdicts"].items(), sorted(obj.maps["sources"].items()))
    assert results["interp"] == results["reference"]


def test_tail_calls_and_callbacks():
    results = {}
    for engine in ("interp", "reference"):
        obj = bpfjit.load(PROGS / "calls.o")
        obj.maps["values"][2] = 5
        entry = [obj.programs["entry"].test_run(bytes(64), engine=engine).retval for _ in range(2)]
        chain = obj.programs["chain"].test_run(bytes(64), repeat=3, engine=engine).retval
        callbacks = obj.programs["callbacks"].test_run(bytes(64), engine=engine).retval
        results[engine] = (entry, chain, callbacks, obj.bss.tail_hops, obj.globals["loop_sum"],
                           obj.globals["visited_sum"], obj.maps["values"].items())
    assert results["interp"] == results["reference"]
    assert results["interp"][:3] == ([41, 42], 3 * 34, 10 * 1000 + 4)


def test_static_keys_toggled_between_runs_take_effect():
    obj = bpfjit.load(PROGS / "static_keys.o")
    program = obj.programs["sk_main"]
    returns = []
    for debug, fast in [(False, False), (True, True), (False, True), (True, False)]:
        obj.static_keys["debug"].set(debug)
        obj.static_keys["fast_path"].set(fast)
        returns.append(program.test_run(bytes(64), engine="interp").retval)
    assert returns == [2, 3, 3, 2]  # XDP_PASS, or XDP_TX on the fast path
    assert obj.bss.main_count == 0x000 + 0x143 + 0x002 + 0x141


def test_repeat_runs_in_the_native_loop_with_maps_carrying_over():
    obj = bpfjit.load(PROGS / "load_options.o", programs=["count_lengths"], maps={"lengths": {"max_entries": 4}})
    result = obj.programs["count_lengths"].test_run(bytes(20), repeat=1000, engine="interp")
    assert result.retval == 2 and result.duration_ns > 0
    assert dict(obj.maps["lengths"].items()) == {20: 1000}


def test_an_unverified_program_runs_sandboxed_with_the_references_message():
    program = Program.from_asm("lddw %r1, 0x4141414141414141\nstxdw [%r1+0], %r1\nmov %r0, 0\nexit", verify=False)
    messages = []
    for engine in ("interp", "reference"):
        with pytest.raises(BPFRuntimeError) as caught:
            program.run(b"", engine=engine)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


def test_a_budget_stops_an_endless_loop():
    program = Program.from_asm("mov %r0, 0\nadd %r0, 1\nja -2\nexit", verify=False)
    with pytest.raises(BPFRuntimeError, match="instruction budget of 1000 exhausted"):
        program.run(b"", engine="interp", max_steps=1000)


def test_the_cli_runs_on_the_interp_engine(capsys):
    frame = (DATA / "packets.hex").read_text().splitlines()[2].split("#")[0].strip()  # a DNS query
    replies = {}
    for engine in ("interp", "reference"):
        assert main(["run", str(DATA / "firewall.o"), "--engine", engine, "--data-hex", frame, "--json"]) == 0
        replies[engine] = json.loads(capsys.readouterr().out)
    assert replies["interp"]["engine"] == "interp"
    assert replies["interp"]["retval"] == replies["reference"]["retval"] == 2  # XDP_PASS

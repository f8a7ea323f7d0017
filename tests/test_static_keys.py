"""Static keys in a C object (tests/progs/static_keys.c, built with bpfjit/include/bpfjit/static_keys.h).

debug is an "unlikely" key with three sites (D1; D2 inside a 4-iteration loop; D3 in a .text
subprogram both programs call), fast_path a "likely" key with two (F1 in sk_main, F2 in sk_other).
Expected values, worked out from the C source: sk_main adds D1 0x1, F1 0x2 (and returns XDP_TX
instead of XDP_PASS), D2 4 x 0x10, D3 0x100 to main_count; sk_other adds F2 0x1000 (and returns
XDP_PASS instead of XDP_DROP) and D3 0x100 to other_count.
"""
from __future__ import annotations

import ctypes
import pathlib

import pytest

import bpfjit
from bpfjit.cli import main
from bpfjit.runtime.static_keys import NOP5

OBJ = pathlib.Path(__file__).resolve().parent / "progs" / "static_keys.o"
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3

# (debug, fast_path) -> (sk_main retval, main_count, sk_other retval, other_count) for one run
EXPECTED = {
    (False, False): (XDP_PASS, 0x000, XDP_DROP, 0x0000),
    (True, False): (XDP_PASS, 0x141, XDP_DROP, 0x0100),
    (False, True): (XDP_TX, 0x002, XDP_PASS, 0x1000),
    (True, True): (XDP_TX, 0x143, XDP_PASS, 0x1100),
}


def run_both(obj, engine, repeat=1):
    main_ret = obj.programs["sk_main"].test_run(bytes(64), repeat=repeat, engine=engine).retval
    other_ret = obj.programs["sk_other"].test_run(bytes(64), repeat=repeat, engine=engine).retval
    return main_ret, obj.bss.main_count, other_ret, obj.bss.other_count


def test_keys_and_sites_are_found():
    obj = bpfjit.load(OBJ)
    assert sorted(obj.static_keys) == ["debug", "fast_path"]
    sites = {name: sorted(key.name for key in p.env.static_keys.values()) for name, p in obj.programs.items()}
    # D3 sits in the shared .text subprogram: each program has its own copy of that site.
    assert sites == {"sk_main": ["debug", "debug", "debug", "fast_path"], "sk_other": ["debug", "fast_path"]}


@pytest.mark.parametrize("debug, fast_path", sorted(EXPECTED))
def test_results_in_every_state(engine, debug, fast_path):
    obj = bpfjit.load(OBJ)
    obj.static_keys["debug"].set(debug)
    obj.static_keys["fast_path"].set(fast_path)
    assert run_both(obj, engine) == EXPECTED[(debug, fast_path)]


def test_toggling_between_runs_of_compiled_code(engine):
    # One object, keys flipped between runs: the counters add up state by state.
    obj = bpfjit.load(OBJ)
    main_total = other_total = 0
    for state in [(False, False), (True, False), (True, True), (False, True), (False, False)]:
        obj.static_keys["debug"].set(state[0])
        obj.static_keys["fast_path"].set(state[1])
        main_ret, main_count, other_ret, other_count = run_both(obj, engine, repeat=3)
        main_total += 3 * EXPECTED[state][1]
        other_total += 3 * EXPECTED[state][3]
        assert (main_ret, main_count, other_ret, other_count) == (
            EXPECTED[state][0], main_total, EXPECTED[state][2], other_total)


def test_jited_sites_are_nops_when_off_and_jumps_when_on():
    obj = bpfjit.load(OBJ)
    debug, fast_path = obj.static_keys["debug"], obj.static_keys["fast_path"]
    prog = obj.programs["sk_main"]
    prog.compile()

    def site_code(key):
        return [ctypes.string_at(site.address, 5) for site in key.native_sites]

    assert len(debug.native_sites) >= 3 and len(fast_path.native_sites) >= 1  # LLVM may copy sites
    assert all(code == NOP5 for code in site_code(debug))  # unlikely, off: 5-byte nop
    assert all(code[0] == 0xE9 for code in site_code(fast_path))  # likely, off: jmp rel32
    debug.enable()
    fast_path.enable()
    assert all(code[0] == 0xE9 for code in site_code(debug))
    assert all(code == NOP5 for code in site_code(fast_path))


def test_prog_dump_jited_shows_the_live_sites(capsys):
    assert main(["prog", "dump", str(OBJ), "-p", "sk_other", "--jited"]) == 0
    off = capsys.readouterr().out.split("static-branch sites")[1]
    assert "0f 1f 44 00 00    nopl 0x0(%rax,%rax,1)" in off and "key debug off" in off
    assert "e9 " in off and "key fast_path off" in off
    assert main(["prog", "dump", str(OBJ), "-p", "sk_other", "--jited", "--key", "debug=on",
                 "--key", "fast_path=on"]) == 0
    on = capsys.readouterr().out.split("static-branch sites")[1]
    debug_lines = [line for line in on.splitlines() if "key debug on" in line]
    fast_lines = [line for line in on.splitlines() if "key fast_path on" in line]
    assert debug_lines and all(" jmp 0x" in line for line in debug_lines)
    assert fast_lines and all("nopl" in line for line in fast_lines)


def test_run_with_key_flag(capsys):
    assert main(["run", str(OBJ), "-p", "sk_main", "--data-hex", "00" * 64, "--key", "fast_path=on",
                 "--json"]) == 0
    assert '"retval": 3' in capsys.readouterr().out

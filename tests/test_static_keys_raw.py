"""Static keys on raw bytecode: flavours, declared keys, patching, and toggling under load."""
from __future__ import annotations

import ctypes
import threading
import time

import pytest

from bpfjit import disasm, isa
from bpfjit.errors import BPFError
from bpfjit.program import Program
from bpfjit.runtime.static_keys import NOP5

# debug (unlikely, insn 1) adds 10 then comes back; fast (likely, insn 2) jumps to +1 while off
# and falls through to +100 while on.
SOURCE = """
mov %r0, 0
nop_or_goto dbg
back:
goto_or_nop fast
add %r0, 100
ja out
fast:
add %r0, 1
out:
exit
dbg:
add %r0, 10
ja back
"""
EXPECTED = {(False, False): 1, (False, True): 100, (True, False): 11, (True, True): 110}


def program_with_keys():
    prog = Program.from_asm(SOURCE)
    return prog, prog.declare_static_key("debug", [1]), prog.declare_static_key("fast", [2])


@pytest.mark.parametrize("debug, fast", sorted(EXPECTED))
def test_every_key_state_on_both_engines(engine, debug, fast):
    prog, debug_key, fast_key = program_with_keys()
    debug_key.set(debug)
    fast_key.set(fast)
    assert prog.run(engine=engine) == EXPECTED[(debug, fast)]


def test_toggling_after_compile_rewrites_the_code():
    prog, debug_key, fast_key = program_with_keys()
    assert prog.run() == 1
    sites = prog.compile().sites
    assert {site.index for site in sites} == {1, 2}
    for debug, fast in sorted(EXPECTED):
        debug_key.set(debug)
        fast_key.set(fast)
        assert prog.run() == EXPECTED[(debug, fast)]
        for site in sites:
            code = ctypes.string_at(site.address, 5)
            jumps = (debug if site.index == 1 else not fast)
            assert (code[0] == 0xE9) == jumps and (code == NOP5) == (not jumps)
            assert site.address % 8 <= 3  # the 5 bytes never cross an 8-byte word


def test_flavours_without_a_key_keep_their_initial_state(engine):
    prog = Program.from_asm(SOURCE)  # no keys declared: both behave as disabled keys
    assert prog.run(engine=engine) == 1


def test_declaring_a_key_on_a_plain_goto_fails():
    prog = Program.from_asm(SOURCE)
    with pytest.raises(BPFError, match="insn 0 is not a static-branch JA"):
        prog.declare_static_key("x", [0])


def test_declaring_a_key_after_compiling_fails():
    prog = Program.from_asm(SOURCE)
    prog.run()  # compiles; its sites already belong to no key
    with pytest.raises(BPFError, match="before the program is first compiled"):
        prog.declare_static_key("debug", [1])


@pytest.mark.parametrize("mnemonic, src, opcode", [
    ("goto_or_nop", 1, isa.JA_OP), ("nop_or_goto", 3, isa.JA_OP),
    ("gotol_or_nop", 1, isa.GOTOL_OP), ("nop_or_gotol", 3, isa.GOTOL_OP),
])
def test_assembler_and_disassembler_flavours(mnemonic, src, opcode):
    insns = Program.from_asm(f"mov %r0, 0\n{mnemonic} +1\nexit\nexit").insns
    assert (insns[1].opcode, insns[1].src) == (opcode, src)
    assert disasm.insn_text(insns[1]) == f"{mnemonic} +0x1"


def test_concurrent_toggle_and_run_stress():
    """One thread runs the jitted program in a loop while another toggles both keys: no crash,
    and every result is one of the four valid ones."""
    prog, debug_key, fast_key = program_with_keys()
    prog.compile()
    valid = set(EXPECTED.values())
    seen: set[int] = set()
    bad: list[int] = []
    stop = time.monotonic() + 2.0

    def runner():
        while time.monotonic() < stop:
            result = prog.test_run(repeat=20_000).retval
            seen.add(result)
            if result not in valid:
                bad.append(result)

    def toggler():
        flips = 0
        while time.monotonic() < stop:
            debug_key.set(flips & 1)
            fast_key.set(flips & 2)
            flips += 1
        toggles.append(flips)

    toggles: list[int] = []
    threads = [threading.Thread(target=runner), threading.Thread(target=toggler)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not bad
    assert toggles[0] > 100 and len(seen) >= 2  # it really toggled while the program ran

"""Loading clang-built objects: maps, globals, rodata, function pointers, printk; IR constants."""
from __future__ import annotations

import pathlib

import pytest

from bpfjit.errors import BPFError
from bpfjit.object import load

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
GLOBALS = PROGS / "globals.o"


def test_globals_program_three_runs(engine):
    obj = load(GLOBALS, rodata={"factor": 5})
    result = obj.programs["prog_a"].test_run(bytes(64), repeat=3, engine=engine)
    assert result.retval == 2  # XDP_PASS
    # hits counts runs; total = total + ops[hits & 1](hits) + hits, with twice(x) = 2x + secret(7)
    # and thrice(x) = x * factor(5): 10 -> 10+5+1 = 16 -> 16+11+2 = 29 -> 29+15+3 = 47
    assert obj.bss.hits == 3
    assert obj.globals["total"] == 47
    assert obj.maps["counts"][1] == 3 and obj.maps["counts"][0] == 0
    # prog_b: helper_sum(factor, 1) = 5 + 1 + hits(3) = 9, plus bpf_printk's length: "hi 3" is 4
    assert obj.programs["prog_b"].test_run(bytes(64), engine=engine).retval == 9 + 4
    assert obj.trace_log == ["hi 3"]


def test_globals_are_typed_and_writable(engine):
    obj = load(GLOBALS)
    assert obj.rodata.factor == 3 and obj.section(".data.custom").secret == 7
    obj.bss.hits = 41
    obj.data.total = 0
    obj.programs["prog_a"].test_run(bytes(64), engine=engine)
    # hits 42 is even: twice(42) = 91; total = 0 + 91 + 42
    assert obj.bss.hits == 42 and obj.data.total == 133


def test_rodata_is_frozen_after_load():
    obj = load(GLOBALS)
    with pytest.raises(BPFError, match="frozen"):
        obj.rodata.factor = 4
    with pytest.raises(BPFError, match="nothere"):
        load(GLOBALS, rodata={"nothere": 1})


def test_ir_has_constant_addresses_and_folded_rodata():
    obj = load(GLOBALS, rodata={"factor": 5})
    prog = obj.programs["prog_a"]
    ir = prog.compile().ir
    bound = {address: name for name, address in prog.compile().bindings.items()}
    bss_value = obj.maps[".bss"].value_address(0)
    rodata_value = obj.maps[".rodata"].value_address(0)
    counts = obj.maps["counts"]
    # The .bss variable's address is a constant in the code (a symbol bound to it at link time)...
    assert f"ptrtoint (ptr @{bound[bss_value]} to i64)" in ir
    # ...the array-map lookup is address arithmetic on the values' base, not a helper call...
    assert f"ptrtoint (ptr @{bound[counts.value_base]} to i64)" in ir
    assert "call i64 @bpfjit_h" not in ir, "no helper is called through a callback in prog_a"
    # ...and the .rodata load (factor, in thrice) is folded to its value: the load is gone, and once
    # LLVM drops the dead address load, the address does not reach the optimised code at all.
    assert "store i64 5, ptr %r0" in ir
    assert f"@{bound[rodata_value]}" not in prog.compile().optimised_ir

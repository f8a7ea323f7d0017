"""Loading clang-built objects: maps, globals, rodata, function pointers, printk; IR constants."""
from __future__ import annotations

import io
import pathlib

import pytest
from elftools.elf.elffile import ELFFile

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


# --- loading a subset of the programs (libbpf's autoload) ----------------------------------------

def _sections(data: bytes) -> dict[str, tuple[int, int]]:
    """Section name -> (file offset of its contents, file offset of its name)."""
    with io.BytesIO(data) as stream:
        elf = ELFFile(stream)
        names = elf.get_section(elf["e_shstrndx"])["sh_offset"]
        return {s.name: (s["sh_offset"], names + s["sh_name"]) for s in elf.iter_sections()}


def _patched(tmp_path: pathlib.Path, data: bytearray) -> pathlib.Path:
    path = tmp_path / "patched.o"
    path.write_bytes(bytes(data))
    return path


def _with_section_renamed(tmp_path: pathlib.Path, old: str, new: str) -> pathlib.Path:
    """globals.o as if clang had built it with SEC(new) for SEC(old): in the section headers' names
    and in BTF's strings (func and line info name sections too). new may not be longer than old."""
    assert len(new) <= len(old)
    data = bytearray(GLOBALS.read_bytes())
    at = _sections(data)[old][1]
    data[at:at + len(old)] = new.encode().ljust(len(old), b"\0")
    data[:] = data.replace(b"\0" + old.encode() + b"\0", b"\0" + new.encode().ljust(len(old), b"\0") + b"\0")
    return _patched(tmp_path, data)


def _with_prog_b_falling_off_its_end(tmp_path: pathlib.Path) -> pathlib.Path:
    """globals.o with prog_b's last insn (exit, insn 14 of section socket) made an add: the
    structure check rejects prog_b; prog_a is untouched."""
    data = bytearray(GLOBALS.read_bytes())
    exit_insn = _sections(data)["socket"][0] + 14 * 8
    assert data[exit_insn] == 0x95  # BPF_JMP | BPF_EXIT
    data[exit_insn] = 0x07  # BPF_ALU64 | BPF_ADD | BPF_K: r0 += 0
    return _patched(tmp_path, data)


def test_load_only_the_programs_named(engine):
    obj = load(GLOBALS, programs=["prog_b"])
    assert list(obj.programs) == ["prog_b"]
    # helper_sum(factor 3, 1) + hits 0, plus the length of "hi 0": maps and globals are all there
    assert obj.programs["prog_b"].test_run(bytes(64), engine=engine).retval == 3 + 1 + 0 + 4
    assert obj.trace_log == ["hi 0"] and obj.bss.hits == 0
    assert list(load(GLOBALS, programs=[]).programs) == []
    assert list(load(GLOBALS).programs) == ["prog_a", "prog_b"]


def test_unknown_program_names_are_listed():
    with pytest.raises(BPFError, match=r"globals.o: no program named 'nope', 'prog_c' \(programs: prog_a, prog_b\)"):
        load(GLOBALS, programs=["prog_a", "nope", "prog_c"])
    with pytest.raises(BPFError, match="list of program names"):
        load(GLOBALS, programs="prog_a")


def test_a_rejected_program_does_not_stop_the_others(tmp_path):
    broken = _with_prog_b_falling_off_its_end(tmp_path)
    with pytest.raises(BPFError, match="exit"):
        load(broken)  # every program: the first rejection stops the load
    with pytest.raises(BPFError, match="exit"):
        load(broken, programs=["prog_b"])
    obj = load(broken, programs=["prog_a"])
    assert list(obj.programs) == ["prog_a"]
    assert obj.programs["prog_a"].test_run(bytes(64)).retval == 2  # XDP_PASS


def test_question_mark_sections_load_only_when_named(tmp_path):
    # SEC("?xdp"): libbpf does not autoload it; its program type still comes from "xdp".
    path = _with_section_renamed(tmp_path, "socket", "?xdp")
    assert list(load(path).programs) == ["prog_a"]
    obj = load(path, programs=["prog_b"])
    assert list(obj.programs) == ["prog_b"]
    assert obj.programs["prog_b"].prog_type == "xdp" and obj.programs["prog_b"].section == "?xdp"
    assert obj.programs["prog_b"].test_run(bytes(64)).retval == 3 + 1 + 0 + 4
    assert list(load(path, programs=["prog_a", "prog_b"]).programs) == ["prog_a", "prog_b"]


def test_a_program_not_loaded_leaves_its_prog_array_slot_empty():
    # calls.c: jumps = {[1] = leaf, [2] = chain}; entry tail-calls slot 3 (empty), then slot 1 (leaf).
    calls = PROGS / "calls.o"
    assert load(calls).programs["entry"].test_run(bytes(64)).retval == 40 + 1  # leaf ran
    obj = load(calls, programs=["entry"])
    assert obj.programs["entry"].test_run(bytes(64)).retval == 7  # both tail calls fell through
    assert obj.bss.tail_hops == 0

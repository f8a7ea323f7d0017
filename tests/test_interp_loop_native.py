"""The native interpreter runs bpf_loop and bpf_for_each_map_elem (on array maps) itself
(jit/native_interp_ir.py: callback_loop): each call of the callback is a nested interpretation,
with no Python helper in between, and every result equals the reference interpreter's and the
JIT's.

Programs are assembly: ``ldfunc %rN, NAME`` loads a function pointer (ld_imm64 src=4) and
``ldmap %rN, K`` the program's map K (ld_imm64 src=1). Expected values are worked out by hand in
the comments; the Python helpers the interpreter calls are counted with the profile hook of
tests/test_helper_bench_progs.py.
"""
from __future__ import annotations

import re
import struct

import pytest

from bpfjit import isa
from bpfjit.asm import assemble_insns
from bpfjit.errors import BPFRuntimeError
from bpfjit.isa import Insn
from bpfjit.program import Program
from bpfjit.runtime.environment import ArrayLayout, Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import Map, MapSpec, create_map
from bpfjit.runtime.stdhelpers import LOOP, standard_helpers

import test_loop_inline
from test_helper_bench_progs import python_helper_calls

ENGINES = ("reference", "jit", "interp")
PLACEHOLDER = re.compile(r"^\s*(ldfunc|ldmap)\s+%r(\d+),\s*(\w+)\s*$")


def build(functions: dict[str, str], maps: tuple[Map, ...] = (), verify: bool = True, helpers=None) -> Program:
    """A program of the functions (name -> assembly, the main one first), its ld_imm64 of
    functions and maps patched in, and the array maps' layouts given as bpfjit.object gives
    them (what lets the JIT and the interpreter inline for_each)."""
    texts, loads = {}, {}
    for name, text in functions.items():
        lines = text.strip().splitlines()
        loads[name] = [match.groups() for line in lines if (match := PLACEHOLDER.match(line))]
        texts[name] = "\n".join(PLACEHOLDER.sub(r"lddw %r\2, 0", line) for line in lines)
    bodies = {name: assemble_insns(text) for name, text in texts.items()}
    starts, insns = {}, []
    for name, body in bodies.items():
        starts[name] = len(insns)
        insns += body
    for name, body in bodies.items():
        slots = [starts[name] + i for i, insn in enumerate(body) if insn.is_lddw]
        for slot, (kind, reg, target) in zip(slots, loads[name], strict=True):
            insns[slot] = (Insn(isa.LDDW, int(reg), isa.PSEUDO_FUNC, 0, starts[target] - slot - 1) if kind == "ldfunc"
                           else Insn(isa.LDDW, int(reg), isa.PSEUDO_MAP_FD, 0, int(target)))
    layouts = {m.handle: ArrayLayout(m.value_base, m.elem_stride, m.max_entries)
               for m in maps if m.map_type == MapType.ARRAY}
    env = Environment(helpers or standard_helpers(lambda line: None), [r for m in maps for r in m.regions()],
                      lambda insn, index: maps[insn.imm].handle, array_map=layouts.get)
    prog = Program(insns, env, verify=verify)
    prog.maps = maps  # kept alive with the program
    return prog


def array(name: str, values: list[int]) -> Map:
    """An array map of u64 values, keys 0..len - 1."""
    m = create_map(MapSpec(name, MapType.ARRAY, 4, 8, len(values)))
    for key, value in enumerate(values):
        m[key] = value
    return m


def interpreted(prog: Program, data: bytes = b"", **options):
    """A run on the native interpreter, and the Python helpers it called."""
    prog.prepare("interp")
    with python_helper_calls() as calls:
        result = prog.test_run(data, engine="interp", **options)
    return result, calls[0]


# --- bpf_loop: the program of tests/test_loop_inline.py ----------------------------------------------
# f(i, ctx) adds i * i to the sum and returns 1 when i is the stop index; the run returns bpf_loop's
# result and writes the sum after its three inputs (count, flags, stop).
NEVER, MAX_LOOPS = test_loop_inline.NEVER, test_loop_inline.MAX_LOOPS
LOOP_CASES = {
    "none": (0, 0, NEVER, 0, 0),
    "one": (1, 0, NEVER, 1, 0),
    "many": (1000, 0, NEVER, 1000, 332_833_500),  # 999 * 1000 * 1999 / 6
    "stops at 3": (10, 0, 3, 4, 14),  # 0 + 1 + 4 + 9
    "stops at once": (MAX_LOOPS, 0, 0, 1, 0),  # the bound itself is allowed
    "flags": (10, 1, NEVER, (1 << 64) - 22, 0),  # -EINVAL, no call
    "too many": (MAX_LOOPS + 1, 0, 0, (1 << 64) - 7, 0),  # -E2BIG, no call
}


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "unverified"])
@pytest.mark.parametrize("case", LOOP_CASES)
def test_bpf_loop_runs_without_python_and_agrees(case, verify):
    count, flags, stop, loops, total = LOOP_CASES[case]
    memory = struct.pack("<4Q", count, flags, stop, 0)
    prog = test_loop_inline.program()
    if not verify:  # the checked variant runs the loop too
        prog = Program(prog.original_insns, prog.env, verify=False)
    results = {engine: test_loop_inline.run(prog, engine, count, flags, stop) for engine in ("reference", "jit")}
    result, calls = interpreted(prog, memory)
    results["interp"] = (result.retval, struct.unpack_from("<Q", result.data_out, 24)[0])
    assert results == dict.fromkeys(ENGINES, (loops, total))
    assert calls == 0


def test_repeated_runs_loop_in_the_native_repeat():
    result, calls = interpreted(test_loop_inline.program(), struct.pack("<4Q", 10, 0, NEVER, 0), repeat=50)
    assert (result.retval, calls) == (10, 0)


def test_a_users_own_bpf_loop_is_called_by_the_interpreter():
    helpers = standard_helpers(lambda line: None)
    seen = []
    helpers.register(LOOP, lambda count, *_: seen.append(count) or 99, "bpf_loop", helpers.get(LOOP).proto)
    result, calls = interpreted(test_loop_inline.program(helpers), struct.pack("<4Q", 5, 0, NEVER, 0))
    assert (result.retval, calls, seen) == (99, 1, [5])


# --- nested callbacks calling helpers -------------------------------------------------------------
# main: bpf_loop(count, outer, &ctx, 0) with ctx = {sum, calls} on its stack, count and a stop index
# read from memory; it writes (result, sum, calls) after its inputs.
# outer(i, ctx): n = bpf_loop(i + 1, inner, ctx, 0); calls += n; counts[i & 3] += n (a map lookup);
# returns 1 when i is the stop index.
# inner(j, ctx): sum += counts[j & 3] + j (a map lookup); returns 0.
COUNTS_SLOT = """
        and %r1, 3
        stxw [%r10-4], %r1
        ldmap %r1, 0
        mov %r2, %r10
        add %r2, -4
        call 1
"""  # r0 = &counts[r1 & 3] (or null)


def stop_at(index: str, stop: str) -> str:
    """The end of a callback: return 1 when the registers index and stop are equal, else 0."""
    return f"""
        mov %r0, 0
        jne {index}, {stop}, +1
        mov %r0, 1
        exit
"""


NESTED = {
    "main": """
        mov %r9, %r1
        ldxdw %r1, [%r9+0]
        ldxdw %r8, [%r9+8]
        stdw [%r10-16], 0
        stdw [%r10-8], 0
        stxdw [%r10-24], %r8
        ldfunc %r2, outer
        mov %r3, %r10
        add %r3, -24
        mov %r4, 0
        call 181
        stxdw [%r9+16], %r0
        ldxdw %r1, [%r10-16]
        stxdw [%r9+24], %r1
        ldxdw %r1, [%r10-8]
        stxdw [%r9+32], %r1
        mov %r0, 0
        exit
    """,
    "outer": """
        mov %r6, %r1
        mov %r7, %r2
        add %r1, 1
        ldfunc %r2, inner
        mov %r3, %r7
        mov %r4, 0
        call 181
        mov %r8, %r0
        ldxdw %r1, [%r7+16]
        add %r1, %r8
        stxdw [%r7+16], %r1
        mov %r1, %r6""" + COUNTS_SLOT + """
        jeq %r0, 0, +3
        ldxdw %r1, [%r0+0]
        add %r1, %r8
        stxdw [%r0+0], %r1
        ldxdw %r1, [%r7+0]""" + stop_at("%r6", "%r1"),
    "inner": """
        mov %r6, %r1
        mov %r7, %r2""" + COUNTS_SLOT + """
        jeq %r0, 0, +5
        ldxdw %r1, [%r0+0]
        add %r1, %r6
        ldxdw %r2, [%r7+8]
        add %r2, %r1
        stxdw [%r7+8], %r2
        mov %r0, 0
        exit
    """,
}


def nested_run(engine: str, count: int, stop: int) -> tuple[tuple[int, ...], list[int], int]:
    """(bpf_loop's result, sum, calls), the counts map after the run, and the Python helper calls."""
    counts = array("counts", [100, 200, 300, 400])
    prog = build(NESTED, (counts,))
    memory = struct.pack("<5Q", count, stop, 0, 0, 0)
    if engine == "interp":
        result, calls = interpreted(prog, memory)
    else:
        result, calls = prog.test_run(memory, engine=engine), None
    return struct.unpack_from("<3Q", result.data_out, 16), [counts[key] for key in range(4)], calls


@pytest.mark.parametrize("count, stop", [(3, NEVER), (6, 2), (0, NEVER)])
def test_nested_loops_calling_helpers_agree(count, stop):
    runs = {engine: nested_run(engine, count, stop) for engine in ENGINES}
    assert runs["interp"][2] == 0
    assert {engine: run[:2] for engine, run in runs.items()} == dict.fromkeys(ENGINES, runs["reference"][:2])


def test_nested_loops_give_the_hand_worked_result():
    # outer i = 0, 1, 2 runs inner 1, 2, 3 times: calls = 6. counts[i] grows by i + 1 after
    # outer i's inner loop, so inner j adds counts[j] + j: 100 + 0 (i = 0), then 101 + 0 and
    # 200 + 1 (i = 1), then 101 + 0, 202 + 1 and 300 + 2 (i = 2): sum = 100 + 302 + 606 = 1008.
    assert nested_run("interp", 3, NEVER)[:3] == ((3, 1008, 6), [101, 202, 303, 400], 0)


# --- bpf_for_each_map_elem on an array map --------------------------------------------------------
# main: for_each_map_elem(values, g, &stop, flags) with flags and the stop key read from memory;
# returns the helper's result. g(map, key, value, ctx): *value += *key + 1; returns 1 at the stop key.
FOR_EACH = {
    "main": """
        ldxdw %r4, [%r1+0]
        ldxdw %r2, [%r1+8]
        stxdw [%r10-8], %r2
        ldmap %r1, 0
        ldfunc %r2, g
        mov %r3, %r10
        add %r3, -8
        call 164
        exit
    """,
    "g": """
        ldxw %r1, [%r2+0]
        ldxdw %r5, [%r3+0]
        add %r5, %r1
        add %r5, 1
        stxdw [%r3+0], %r5
        ldxdw %r2, [%r4+0]""" + stop_at("%r1", "%r2"),
}
FOR_EACH_CASES = {
    "every element": (0, NEVER, 5, [11, 22, 33, 44, 55]),
    "stops at key 2": (0, 2, 3, [11, 22, 33, 40, 50]),
    "stops at once": (0, 0, 1, [11, 20, 30, 40, 50]),
    "flags": (1, NEVER, (1 << 64) - 22, [10, 20, 30, 40, 50]),  # -EINVAL, no call
}


def for_each_run(engine: str, flags: int, stop: int, map_type: MapType = MapType.ARRAY,
                 verify: bool = True) -> tuple[int, list[int], int | None]:
    """for_each's result, the map's values after the run as Python reads them, and the Python
    helper calls on the interpreter."""
    values = create_map(MapSpec("values", map_type, 4, 8, 5))
    for key in range(5):
        values[key] = 10 * (key + 1)
    prog = build(FOR_EACH, (values,), verify=verify)
    memory = struct.pack("<2Q", flags, stop)
    if engine == "interp":
        result, calls = interpreted(prog, memory)
    else:
        result, calls = prog.test_run(memory, engine=engine), None
    return result.retval, [values[key] for key in range(5)], calls


@pytest.mark.parametrize("case", FOR_EACH_CASES)
def test_for_each_on_an_array_runs_without_python_and_agrees(case):
    flags, stop, visited, after = FOR_EACH_CASES[case]
    runs = {engine: for_each_run(engine, flags, stop)[:2] for engine in ENGINES}
    assert runs == dict.fromkeys(ENGINES, (visited, after))
    assert for_each_run("interp", flags, stop)[2] == 0


@pytest.mark.parametrize("map_type, verify", [(MapType.HASH, True), (MapType.ARRAY, False)],
                         ids=["hash map", "unverified"])
def test_for_each_the_interpreter_leaves_to_the_python_helper_agrees(map_type, verify):
    # A hash map has no array layout, and the checked variant's accesses do not know the key's
    # native slot: both call the Python helper once, and give the same results. (A hash map's
    # elements are visited in insertion order here: keys 0-4.)
    runs = {engine: for_each_run(engine, 0, 2, map_type, verify)[:2] for engine in ENGINES}
    assert runs == dict.fromkeys(ENGINES, (3, [11, 22, 33, 40, 50]))
    assert for_each_run("interp", 0, 2, map_type, verify)[2] == 1


# --- failures inside a callback -------------------------------------------------------------------
BAD_CALLBACK = {
    "main": """
        mov %r1, 4
        ldfunc %r2, f
        mov %r3, 0
        mov %r4, 0
        call 181
        exit
    """,
    "f": """
        mov %r0, 0
        jne %r1, 2, +1
        ldxdw %r0, [%r2+0]
        exit
    """,
}


def failure(prog: Program, engine: str) -> str:
    with pytest.raises(BPFRuntimeError) as info:
        prog.test_run(b"", engine=engine)
    return str(info.value)


def test_a_failure_in_a_callback_stops_the_run_where_it_happened():
    # Unverified: iteration 2 reads through ctx, a null pointer, at f's third instruction (slot 9).
    prog = build(BAD_CALLBACK, verify=False)
    messages = {engine: failure(prog, engine) for engine in ENGINES}
    assert messages == dict.fromkeys(ENGINES, messages["reference"])
    assert messages["reference"].startswith("insn 9: ")


def test_a_callback_that_is_no_function_fails_as_on_the_reference():
    # Unverified: r2 holds 8, no function's token; the Python helper reports it on every engine.
    text = dict(BAD_CALLBACK, main=BAD_CALLBACK["main"].replace("ldfunc %r2, f", "mov %r2, 8"))
    prog = build(text, verify=False)
    messages = {engine: failure(prog, engine) for engine in ENGINES}
    assert messages == dict.fromkeys(ENGINES, messages["reference"])
    assert "is not a BPF function" in messages["reference"]

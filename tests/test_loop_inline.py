"""bpf_loop inlined by the JIT (jit/lower.py: inline_loop): a native loop that calls the
callback directly, as the kernel inlines it, with the helper's results on every engine.

The program reads count, flags and a stop index from its memory, runs
bpf_loop(count, f, &slots, flags) where f(i, ctx) adds i * i to the sum in ctx and returns 1
when i is the stop index, then writes the sum after its inputs and returns bpf_loop's result.
Expected values are worked out by hand in the comments.
"""
from __future__ import annotations

import struct

import pytest

from bpfjit import isa
from bpfjit.asm import assemble_insns
from bpfjit.isa import Insn
from bpfjit.program import Program
from bpfjit.runtime.environment import ArrayLayout, Environment
from bpfjit.runtime.stdhelpers import LOOP, standard_helpers

MAIN = """
    mov %r9, %r1
    ldxdw %r6, [%r9+0]
    ldxdw %r7, [%r9+8]
    ldxdw %r8, [%r9+16]
    stdw [%r10-8], 0
    stxdw [%r10-16], %r8
    mov %r1, %r6
    lddw %r2, 0
    mov %r3, %r10
    add %r3, -16
    mov %r4, %r7
    call 181
    ldxdw %r1, [%r10-8]
    stxdw [%r9+24], %r1
    exit
"""
CALLBACK = """
    ldxdw %r3, [%r2+0]
    ldxdw %r4, [%r2+8]
    mov %r5, %r1
    mul %r5, %r1
    add %r4, %r5
    stxdw [%r2+8], %r4
    mov %r0, 0
    jne %r1, %r3, +1
    mov %r0, 1
    exit
"""
NEVER = 1 << 40  # a stop index no iteration reaches
MAX_LOOPS = 1 << 23  # the kernel's BPF_MAX_LOOPS


def program(helpers=None) -> Program:
    main = assemble_insns(MAIN)
    start = len(main)
    loads = [i for i, insn in enumerate(main) if insn.is_lddw]
    main[loads[0]] = Insn(isa.LDDW, 2, isa.PSEUDO_FUNC, 0, start - loads[0] - 1)  # r2 = f
    return Program(main + assemble_insns(CALLBACK), Environment(helpers or standard_helpers(lambda line: None)))


def run(prog: Program, engine: str, count: int, flags: int, stop: int) -> tuple[int, int]:
    result = prog.test_run(struct.pack("<4Q", count, flags, stop, 0), engine=engine)
    return result.retval, struct.unpack_from("<Q", result.data_out, 24)[0]


CASES = [
    (10, 0, NEVER, 10, 285),  # every iteration: 0 + 1 + 4 + ... + 81
    (10, 0, 3, 4, 14),  # i = 3 returns 1: four calls, 0 + 1 + 4 + 9
    (0, 0, NEVER, 0, 0),  # no call
    (10, 1, NEVER, (1 << 64) - 22, 0),  # flags: -EINVAL before any call
    (MAX_LOOPS + 1, 0, 0, (1 << 64) - 7, 0),  # over BPF_MAX_LOOPS: -E2BIG before any call
    (MAX_LOOPS, 0, 0, 1, 0),  # at the bound: allowed; i = 0 stops it at once
]


@pytest.mark.parametrize("count,flags,stop,loops,total", CASES)
def test_bpf_loop_results(engine, count, flags, stop, loops, total):
    assert run(program(), engine, count, flags, stop) == (loops, total)


def test_the_jitted_loop_calls_no_python_helper():
    ir = program().compile().ir
    assert "@bpfjit_h181" not in ir  # no binding of helper 181: no ctypes callback either
    assert "call i64 @bpf_f16(" in ir  # the callback (slot 16: after 14 insns, one an lddw), called directly


def test_a_users_own_bpf_loop_is_called_instead():
    helpers = standard_helpers(lambda line: None)
    standard = helpers.get(LOOP)
    calls = []

    def counted(count, callback, ctx, flags, *_):
        calls.append(count)
        return 99

    helpers.register(LOOP, counted, "bpf_loop", standard.proto)
    prog = program(helpers)
    assert "@bpfjit_h181" in prog.compile().ir
    for engine in ("jit", "reference"):
        assert run(prog, engine, 5, 0, NEVER) == (99, 0)
    assert calls == [5, 5]


# --- bpf_for_each_map_elem on an array map -------------------------------------------------------
# main reads flags and a stop key from its memory, runs for_each_map_elem(values, g, &slots, flags)
# where g(map, key, value, ctx) adds key * 100 + value to the sum in ctx and returns 1 at the stop
# key, then writes the sum after its inputs and returns the helper's result.
FOR_EACH_MAIN = """
    mov %r9, %r1
    ldxdw %r7, [%r9+0]
    ldxdw %r8, [%r9+8]
    stdw [%r10-8], 0
    stxdw [%r10-16], %r8
    lddw %r1, 0
    lddw %r2, 0
    mov %r3, %r10
    add %r3, -16
    mov %r4, %r7
    call 164
    ldxdw %r1, [%r10-8]
    stxdw [%r9+16], %r1
    exit
"""
FOR_EACH_CALLBACK = """
    ldxw %r5, [%r2+0]
    ldxdw %r0, [%r3+0]
    mov %r1, %r5
    mul %r1, 100
    add %r1, %r0
    ldxdw %r0, [%r4+8]
    add %r0, %r1
    stxdw [%r4+8], %r0
    ldxdw %r1, [%r4+0]
    mov %r0, 0
    jne %r5, %r1, +1
    mov %r0, 1
    exit
"""


def for_each_program() -> Program:
    from bpfjit.runtime.map_types import MapType
    from bpfjit.runtime.maps import MapSpec, create_map
    values = create_map(MapSpec("values", MapType.ARRAY, 4, 8, 5))
    for key, value in enumerate([10, 20, 30, 40, 50]):
        values[key] = value
    main = assemble_insns(FOR_EACH_MAIN)
    start = len(main)
    loads = [i for i, insn in enumerate(main) if insn.is_lddw]
    main[loads[0]] = Insn(isa.LDDW, 1, isa.PSEUDO_MAP_FD, 0, 0)  # r1 = the map
    main[loads[1]] = Insn(isa.LDDW, 2, isa.PSEUDO_FUNC, 0, start - loads[1] - 1)  # r2 = g
    env = Environment(standard_helpers(lambda line: None), [*values.regions()], lambda insn, index: values.handle,
                      array_map=lambda handle: ArrayLayout(values.value_base, values.elem_stride, values.max_entries)
                      if handle == values.handle else None)  # as bpfjit.object gives the JIT array layouts
    prog = Program(main + assemble_insns(FOR_EACH_CALLBACK), env)
    prog.values = values  # keeps the map alive with the program
    return prog


FOR_EACH_CASES = [
    (0, NEVER, 5, 1150),  # all five: (0 + 10) + (100 + 20) + (200 + 30) + (300 + 40) + (400 + 50)
    (0, 2, 3, 360),  # key 2 returns 1: three visited, 10 + 120 + 230
    (0, 0, 1, 10),  # the first stops it
    (1, NEVER, (1 << 64) - 22, 0),  # flags: -EINVAL before any call
]


@pytest.mark.parametrize("flags,stop,visited,total", FOR_EACH_CASES)
def test_for_each_on_an_array_map(engine, flags, stop, visited, total):
    result = for_each_program().test_run(struct.pack("<3Q", flags, stop, 0), engine=engine)
    assert (result.retval, struct.unpack_from("<Q", result.data_out, 16)[0]) == (visited, total)


def test_the_jitted_for_each_calls_no_python_helper():
    ir = for_each_program().compile().ir
    assert "@bpfjit_h164" not in ir
    assert "call i64 @bpf_f16(" in ir  # the callback (slot 16: after 14 insns, two of them lddw)

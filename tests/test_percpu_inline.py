"""Per-CPU array lookups inlined by the JIT (issue 12): the address of the run's CPU's copy of a
value is computed in the code (RunEnv.cpu modulo the map's slots), as the kernel's JIT inlines
``percpu_array_map_gen_lookup``, instead of calling the native helper. Every engine must give
the same results as the reference interpreter, whichever thread (CPU slot) runs the program.

The program bumps value ``index`` (the u32 at the start of its memory) of a PERCPU_ARRAY of four
u64s and returns ``new value << 8 | bpf_get_smp_processor_id()``, or -1 when the lookup gives
NULL (an index past the end), so each result says which CPU's copy a run bumped.
"""
from __future__ import annotations

import dataclasses
import threading

import pytest

from bpfjit import isa
from bpfjit.asm import assemble_insns
from bpfjit.program import ENGINES, Program
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import MapSpec, create_map
from bpfjit.runtime.status import thread_cpu
from bpfjit.runtime.stdhelpers import standard_helpers

ENTRIES, NCPUS = 4, 3
NULL = (1 << 64) - 1  # the program's r0 when the lookup gave NULL
BUMP = """
    ldxw %r6, [%r1+0]
    stxw [%r10-4], %r6
    lddw %r1, 0            # the map (a PSEUDO_MAP_FD load, set below)
    mov %r2, %r10
    add %r2, -4
    call 1                 # bpf_map_lookup_elem
    jeq %r0, 0, +7
    ldxdw %r7, [%r0+0]
    add %r7, 1
    stxdw [%r0+0], %r7
    call 8                 # bpf_get_smp_processor_id
    lsh %r7, 8
    or %r0, %r7
    exit
    mov %r0, -1
    exit
"""


def bump_program(ncpus: int = NCPUS, verify: bool = True):
    """The program above over a fresh PERCPU_ARRAY of `ncpus` slots: (program, map)."""
    counts = create_map(MapSpec("counts", MapType.PERCPU_ARRAY, 4, 8, ENTRIES), ncpus=ncpus)
    insns = assemble_insns(BUMP)
    insns[2] = dataclasses.replace(insns[2], src=isa.PSEUDO_MAP_FD)
    env = Environment(standard_helpers(lambda line: None, ncpus), counts.regions(), lambda insn, index: counts.handle)
    return Program(insns, env, "bump", verify=verify), counts


def key(index: int) -> bytes:
    return index.to_bytes(4, "little")


def test_the_jit_inlines_the_lookup():
    program, _ = bump_program()
    ir = program.compile().ir
    assert "@bpfjit_h1(" not in ir  # no call of bpf_map_lookup_elem
    assert "@bpfjit_h8(" in ir      # while bpf_get_smp_processor_id stays a call


@pytest.mark.parametrize("ncpus", [1, NCPUS])
def test_every_engine_bumps_the_reference_value(ncpus):
    program, counts = bump_program(ncpus)
    cpu = thread_cpu() % ncpus
    results = {engine: [program.run(key(index), engine=engine) for index in (0, 3, 3, 1)] for engine in ENGINES}
    # The engines share the map: each one carries on from the counts the one before left.
    assert results == {engine: [(n << 8 | cpu) for n in (turn + 1, 2 * turn + 1, 2 * turn + 2, turn + 1)]
                       for turn, engine in enumerate(ENGINES)}
    expected = [0] * ncpus
    expected[cpu] = 3
    assert counts[0] == counts[1] == expected
    expected[cpu] = 6
    assert counts[3] == expected
    assert counts[2] == [0] * ncpus


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "unverified"])
def test_an_index_past_the_end_gives_null(engine, verify):
    program, counts = bump_program(verify=verify)
    for index in (ENTRIES, ENTRIES + 1, 1 << 31, (1 << 32) - 1):
        assert program.run(key(index), engine=engine) == NULL
    assert all(counts[i] == [0] * NCPUS for i in range(ENTRIES))


def test_budgeted_jit_runs_inline_the_same_lookup():
    program, counts = bump_program()
    cpu = thread_cpu() % NCPUS
    assert program.test_run(key(2), repeat=5, engine="jit", max_steps=1000).retval == 5 << 8 | cpu
    assert counts[2][cpu] == 5


def test_each_thread_bumps_its_own_cpu_slot():
    # Threads are numbered as they first run a program (runtime/maps/native.py): 2 * NCPUS of
    # them, one after another, reach every slot. In each, every engine must bump the copy of
    # the slot bpf_get_smp_processor_id names, carrying on from each other's counts.
    program, counts = bump_program()
    seen: list[tuple[int, list[int]]] = []

    def runs() -> None:
        seen.append((thread_cpu() % NCPUS, [program.run(key(1), engine=engine) for engine in ENGINES]))

    for _ in range(2 * NCPUS):
        thread = threading.Thread(target=runs)
        thread.start()
        thread.join()
    assert {cpu for cpu, _ in seen} == set(range(NCPUS))
    bumps = [0] * NCPUS
    for cpu, results in seen:
        assert results == [(bumps[cpu] + n) << 8 | cpu for n in (1, 2, 3)]
        bumps[cpu] += 3
    assert counts[1] == bumps  # the Python view: one value per CPU slot
    assert counts[0] == counts[2] == counts[3] == [0] * NCPUS


def test_python_writes_reach_the_inlined_lookup():
    program, counts = bump_program()
    cpu = thread_cpu() % NCPUS
    counts[2] = [100 + c for c in range(NCPUS)]  # one value per CPU slot
    assert program.run(key(2), engine="jit") == (100 + cpu + 1) << 8 | cpu
    assert counts[2] == [100 + c + (c == cpu) for c in range(NCPUS)]

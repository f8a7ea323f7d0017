"""Generated loops over a raw program's memory, judged against the reference interpreter
(tests/test_length_bounds.py, tests/test_links.py; tests/test_runtime_library.py runs
loops through outcome() too).

The reference interpreter checks every access, so where it faults, the verifier must have left
that access checked (the JIT and the native interpreter would otherwise read or write outside
the memory); where a loop is claimed bounded by the length (its trips not counted), it must not
run past the reference's step limit; and every engine gives the reference's result or fault.
"""
from __future__ import annotations

import random
import re
from typing import Callable, Iterator

from bpfjit import isa
from bpfjit.errors import BPFRuntimeError, VerifierError
from bpfjit.program import Program


def inputs(rng: random.Random, sizes) -> Iterator[bytes]:
    for size in sizes:
        yield bytes(rng.randrange(3) for _ in range(size))


def outcome(program: Program, data: bytes, engine: str) -> int | None:
    """What one run gives: r0, or the slot of the instruction it failed at."""
    try:
        return program.run(data, engine=engine)
    except BPFRuntimeError as error:
        return error.index


def failure(error: BPFRuntimeError) -> tuple[int | None, str]:
    """Where and how a run failed, without the address (each run's memory lies elsewhere)."""
    return error.index, re.sub(r" at 0x[0-9a-f]+", "", error.reason)


def run_campaign(generate: Callable[[random.Random], str], seed: int, count: int, jit_every: int) \
        -> tuple[int, int, int]:
    """Judge `count` generated programs; (accepted, with an unchecked load, with an uncounted loop)."""
    rng = random.Random(seed)
    accepted = unchecked = bounded = 0
    for number in range(count):
        text = generate(rng)
        try:
            program = Program.from_asm(text)
        except VerifierError:
            continue
        accepted += 1
        checked = program.facts.checked_accesses
        loads = [i for i, insn in enumerate(program.original_insns) if insn.cls == isa.LDX]
        unchecked += any(i not in checked for i in loads)
        bounded += bool(program.verification.bounded_loops)
        sizes = [*range(0, 34), rng.randrange(34, 300)]
        runs = []
        for data in inputs(rng, sizes):
            try:
                outcome = program.run(data, engine="reference", max_steps=20_000)
            except BPFRuntimeError as error:
                if "budget" in error.reason or "steps" in error.reason:
                    # a loop claimed bounded by the length (not counted) runs a few times its trips
                    assert not program.verification.bounded_loops, f"runs on at length {len(data)}:\n{text}"
                    continue
                assert error.index in checked, f"unchecked insn {error.index} faults at length {len(data)}:\n{text}"
                outcome = failure(error)
            runs.append((data, outcome))
        if number % jit_every:
            continue
        for engine in ("jit", "interp"):
            for data, expected in runs:
                try:
                    got = program.run(data, engine=engine)
                except BPFRuntimeError as error:
                    got = failure(error)
                assert got == expected, f"{engine} at length {len(data)}: {got!r} != {expected!r}\n{text}"
    return accepted, unchecked, bounded

"""Tracing sections (tracepoint, kprobe) run on a ctx the user gives, and strings in .rodata.str1.1."""
from __future__ import annotations

import pathlib

import bpfjit

OBJ = pathlib.Path(__file__).resolve().parent / "progs" / "raw_sections.o"


def test_tracepoint_and_kprobe_run_on_a_given_ctx(engine):
    obj = bpfjit.load(OBJ)
    assert {name: p.prog_type for name, p in obj.programs.items()} == {"tp": "tracepoint", "kp": "kprobe"}
    assert ".rodata.str1.1" in obj.maps  # the string literal's section became a read-only map
    # tp: r1 points at the record (ctx[1] = 42, past the 8-byte common header); it copies
    # "hello, tracepoint" into an 8-byte buffer: 7 characters and the NUL (8 returned);
    # buf[4] = 'o' (111). 8 * 1000 + 42 + 111.
    record = bytes(8) + (42).to_bytes(8, "little")
    assert obj.programs["tp"].test_run(ctx=record, engine=engine).retval == 8153
    assert obj.programs["kp"].test_run(ctx=bytes(8), repeat=3, engine=engine).retval == 7
    assert obj.bss.kprobe_hits == 3

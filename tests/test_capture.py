"""Runs over captured traffic through the API (bpfjit/capture.py, Program.run_capture): each
packet's result must be the one its own test_run gives, on every engine, through the native
batches of the JIT and the native interpreter (jit/batch.py) and the per-packet path alike, with
one thread or several; maps carry over from packet to packet. The CLI's ``--pcap`` is tested in
tests/test_pcap.py and test_capture_cli.py.
"""
from __future__ import annotations

import dataclasses
import pathlib
from unittest import mock

import pytest

import bpfjit
from bpfjit import isa
from bpfjit.asm import assemble_insns
from bpfjit.errors import BPFError
from bpfjit.packets import udp4_frame
from bpfjit.program import ENGINES, Program
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import MapSpec, create_map
from bpfjit.runtime.stdhelpers import standard_helpers
from test_cli_objects import FIREWALL, PACKETS

BENCH_PROGS = pathlib.Path(__file__).resolve().parent.parent / "bench" / "progs"
FRAMES = [frame for _, frame in PACKETS]
ROUTER = pathlib.Path(__file__).resolve().parent.parent / "examples" / "router.o"

# An XDP program with a path per first byte of the frame, each moving or marking the packet the
# way the XDP helpers do, so that what a batch must reset between packets shows: 1 pushes a
# 4-byte header (adjust_head) and transmits, 2 writes 4 bytes of metadata (adjust_meta), 3 grows
# the tail by 8 zeroed bytes, 4 redirects to ifindex = the second byte and returns the helper's
# verdict (XDP_REDIRECT), 5 redirects but passes (no redirect is reported), 6 moves data 8 bytes
# back and returns the headroom it uncovered (zeros in a fresh buffer, whatever an earlier
# packet wrote there), others pass.
PATHS = """
    mov %r6, %r1
    ldxw %r2, [%r6+0]
    ldxw %r3, [%r6+4]
    mov %r4, %r2
    add %r4, 14
    jgt %r4, %r3, pass
    ldxb %r7, [%r2+0]
    ldxb %r8, [%r2+1]
    jeq %r7, 1, head
    jeq %r7, 2, meta
    jeq %r7, 3, tail
    jeq %r7, 4, redirect
    jeq %r7, 5, redirect_pass
    jeq %r7, 6, headroom
    ja pass
headroom:
    mov %r1, %r6
    mov %r2, -8
    call 44
    ldxw %r2, [%r6+0]
    ldxw %r3, [%r6+4]
    mov %r4, %r2
    add %r4, 8
    jgt %r4, %r3, pass
    ldxdw %r0, [%r2+0]
    exit
head:
    mov %r1, %r6
    mov %r2, -4
    call 44
    ldxw %r2, [%r6+0]
    ldxw %r3, [%r6+4]
    mov %r4, %r2
    add %r4, 4
    jgt %r4, %r3, pass
    stw [%r2+0], 0x21434e45
    mov %r0, 3
    exit
meta:
    mov %r1, %r6
    mov %r2, -4
    call 54
    ldxw %r2, [%r6+8]
    ldxw %r3, [%r6+0]
    mov %r4, %r2
    add %r4, 4
    jgt %r4, %r3, pass
    stw [%r2+0], 0x1eadbeef
    mov %r0, 2
    exit
tail:
    mov %r1, %r6
    mov %r2, 8
    call 65
    mov %r0, 2
    exit
redirect:
    mov %r1, %r8
    mov %r2, 0
    call 23
    exit
redirect_pass:
    mov %r1, %r8
    mov %r2, 0
    call 23
pass:
    mov %r0, 2
    exit
"""


def paths_program() -> Program:
    return Program.from_asm(PATHS, prog_type="xdp", helpers=standard_helpers(print))


def path_frames() -> list[bytes]:
    """Every path twice, a runt (refused), a frame with XDP frags (over 3,520 bytes: the
    per-packet path inside a native batch) and frames of several lengths."""
    frames = [bytes([path, 7 + path]) + bytes(range(40 + path)) for path in range(8)] * 2
    return [*frames, bytes(3), bytes([1, 0]) + bytes(5000), bytes([4, 9]) + bytes(100), bytes([2]) + bytes(1499)]


def expected(program: Program, frames: list[bytes]) -> list[tuple]:
    """Each frame's own test run on the reference interpreter: (r0, data_out, redirect) or the error."""
    outcomes = []
    for frame in frames:
        try:
            result = program.test_run(frame, engine="reference")
        except BPFError as error:
            outcomes.append(("error", str(error)))
            continue
        outcomes.append((result.retval, result.data_out, result.redirect))
    return outcomes


def outcomes_of(results) -> list[tuple]:
    return [("error", str(r.error)) if r.error is not None else (r.retval, r.data_out, r.redirect) for r in results]


@pytest.mark.parametrize("threads", [1, 2])
def test_each_packet_gets_its_own_test_runs_result(engine, threads):
    program, frames = paths_program(), path_frames() * 3
    results = list(program.run_capture(frames, engine=engine, threads=threads))
    assert outcomes_of(results) == expected(program, frames)
    assert [r.index for r in results] == list(range(len(frames)))
    assert all(r.data == frame for r, frame in zip(results, frames))


def test_each_packet_gets_its_own_redirect_map_target(engine):
    # examples/router.o: the JIT inlines bpf_redirect_map, whose record the native batch loop
    # takes per packet; a miss (port 5 has no device) drops the frame and reports no target.
    obj = bpfjit.load(ROUTER)
    for port in (0, 1, 3):
        obj.maps["tx_ports"][port] = 10 + port
    frames = [udp4_frame(1, 2, b"x", dst=bytes([10, 0, 0, last])) for last in (8, 1, 3, 5, 9, 11)] * 4
    program = obj.programs["route"]
    results = list(program.run_capture(frames, engine=engine))
    assert outcomes_of(results) == expected(program, frames)
    assert [r.redirect.key if r.redirect else None for r in results[:6]] == [0, 1, 3, None, 1, 3]


def test_metadata_is_reported_apart_from_the_packet():
    frame = bytes([2, 0]) + bytes(60)
    for engine in ENGINES:
        result = next(iter(paths_program().run_capture([frame], engine=engine)))
        assert result.meta_len == 4 and result.data_out[:4] == (0x1EADBEEF).to_bytes(4, "little")
        assert result.packet_out == frame


def test_without_data_only_the_verdicts_are_kept():
    program, frames = paths_program(), path_frames()
    results = list(program.run_capture(frames, keep_data=False))
    assert [r.retval for r in results] == [None if o[0] == "error" else o[0] for o in expected(program, frames)]
    assert {r.data_out for r in results} == {None}


@pytest.mark.parametrize("native_engine", ["jit", "interp"])
def test_linear_xdp_packets_run_natively_without_a_test_run_each(native_engine):
    # Frames of at most 3,520 bytes never reach test_run (only frags and runts do).
    program = bpfjit.load(FIREWALL).programs["firewall"]
    program.prepare(native_engine)
    with mock.patch.object(Program, "test_run", side_effect=AssertionError("a test run per packet")):
        results = list(program.run_capture(FRAMES * 50, engine=native_engine))
    assert len(results) == 50 * len(FRAMES) and all(r.error is None for r in results)


def test_maps_carry_from_packet_to_packet(engine):
    obj = bpfjit.load(FIREWALL)
    list(obj.programs["firewall"].run_capture([*FRAMES, bytes(3)] * 5, engine=engine))
    assert obj.bss.total_packets == 5 * len(FRAMES)


def test_threads_count_in_their_own_per_cpu_slots():
    # percpu_counter bumps 64 per-CPU counters per IPv4 frame without atomics: two threads in
    # one slot would lose bumps. Threads take slots in the order they first run.
    obj = bpfjit.load(BENCH_PROGS / "percpu_counter.bpf.o", ncpus=4)
    frames = [udp4_frame(1000, 53, b"q", src=bytes([10, 0, 0, i % 200])) for i in range(20_000)]
    results = list(obj.programs["percpu_counter"].run_capture(frames, threads=2, keep_data=False))
    assert {r.retval for r in results} == {2}
    counts = obj.maps["slot_counts"]
    assert sum(cpu["packets"] for slot in range(64) for cpu in counts[slot]) == 64 * len(frames)


class TailCalls:
    """An XDP prog array: slot 1 a verified program (a native tail call), slot 2 an unverified
    one (its helpers are Python: the tail call stops the native batch, and bpfjit.program follows
    it), slot 3 an unverified one that reads outside its memory (the packet's error)."""
    MAP = 0x5EED
    CALLER = f"""
        ldxw %r2, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r4, %r2
        add %r4, 14
        jgt %r4, %r3, out
        ldxb %r3, [%r2+0]
        lddw %r2, {MAP}
        call 12
    out:
        mov %r0, 2
        exit
    """

    def __init__(self) -> None:
        self.map = create_map(MapSpec("jumps", MapType.PROG_ARRAY, 4, 4, 4))
        self.map.set_program(1, self.program("mov %r0, 3\nexit", "tx"))
        self.map.set_program(2, self.program("mov %r0, 1\nexit", "drop", verify=False))
        self.map.set_program(3, self.program("lddw %r2, 0x41414141\nldxdw %r0, [%r2+0]\nexit", "wild", verify=False))
        self.caller = self.program(self.CALLER, "caller")

    def program(self, text: str, name: str, verify: bool = True) -> Program:
        insns = [dataclasses.replace(insn, src=isa.PSEUDO_MAP_FD) if insn.is_lddw and insn.imm == self.MAP else insn
                 for insn in assemble_insns(text)]
        env = Environment(standard_helpers(print), self.map.regions(), lambda insn, index: self.map.handle)
        return Program(insns, env, name, "xdp", verify=verify)


def test_tail_calls_left_to_python_and_failures_stop_only_their_packet(engine):
    jumps = TailCalls()
    frames = [bytes([slot]) + bytes(40) for slot in (0, 1, 2, 3, 2, 1, 0, 3, 3, 1)] * 3
    results = list(jumps.caller.run_capture(frames, engine=engine))
    assert [r.retval for r in results] == [{0: 2, 1: 3, 2: 1, 3: None}[frame[0]] for frame in frames]
    assert all(("invalid read" in str(r.error)) == (frame[0] == 3) for r, frame in zip(results, frames))


def test_bad_arguments_are_refused():
    program = paths_program()
    with pytest.raises(BPFError, match="unknown engine 'fast'"):
        program.run_capture([], engine="fast")
    with pytest.raises(BPFError, match="threads must be a whole number of at least 1, not 0"):
        program.run_capture([], threads=0)
    assert list(program.run_capture([])) == []

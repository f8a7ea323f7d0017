"""Hostile programs against the standard helpers: every pointer a helper is handed is checked.

Each program below passes a helper a pointer the run may not use (NULL, a wild address, a buffer
smaller than what the helper reads or writes, read-only memory as a destination), misuses a ring
buffer record, or asks bpf_trace_printk for a huge field width. Each must end in one clean
BPFRuntimeError naming the instruction, the helper, the argument and the bad address and size,
on both engines, and leave the process alive; the expected messages and values are written out
by hand from the programs and the kernel's rules (docs/semantics.md#helpers).

The programs load unverified (``verify=False``): the verifier would refuse every one of them at
load time, and what is tested here is the run-time net behind it, the helpers' own checks.
"""
from __future__ import annotations

import ctypes
import errno
import time

import pytest

from bpfjit import isa
from bpfjit.asm import assemble_insns
from bpfjit.errors import BPFRuntimeError
from bpfjit.isa import Insn
from bpfjit.program import Program
from bpfjit.runtime import helper_args, run_context
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import Map, MapSpec, create_map
from bpfjit.runtime.memory import Regions
from bpfjit.runtime.run_context import RunContext
from bpfjit.runtime.status import RunEnv
from bpfjit.runtime.stdhelpers import standard_helpers

WILD = 0x4141414141
PAGE = 4096


def program(text: str, *maps: Map, trace: list[str] | None = None) -> Program:
    """An assembled, unverified program with the standard helpers and the memory of `maps` (their
    handles are plain constants in the text, which the verifier would not take as map pointers)."""
    sink = trace.append if trace is not None else (lambda line: None)
    regions = [region for m in maps for region in m.regions()]
    return Program(assemble_insns(text), Environment(standard_helpers(sink), regions), verify=False)


def hash_map(key_size: int = 4, value_size: int = 8) -> Map:
    return create_map(MapSpec("h", MapType.HASH, key_size, value_size, 4))


def fails(prog: Program, engine: str, message: str, data: bytes = bytes(8)) -> None:
    with pytest.raises(BPFRuntimeError) as info:
        prog.run(data, engine=engine)
    assert str(info.value) == message


# --- maps -----------------------------------------------------------------------------------------

def test_lookup_with_a_null_key(engine):
    m = hash_map()
    prog = program(f"lddw %r1, {m.handle}\nmov %r2, 0\ncall 1\nexit", m)
    fails(prog, engine, "insn 3: bpf_map_lookup_elem: invalid read of 4 bytes at 0x0 (arg 2)")


def test_lookup_key_larger_than_the_memory_it_points_at(engine):
    m = hash_map(key_size=16)
    prog = program(f"lddw %r3, {m.handle}\nmov %r2, %r1\nmov %r1, %r3\ncall 1\nexit", m)
    with pytest.raises(BPFRuntimeError, match=r"^insn 4: bpf_map_lookup_elem: invalid read of 16 bytes at "
                                              r"0x[0-9a-f]+ \(arg 2\)$"):
        prog.run(bytes(8), engine=engine)  # r1: 8 bytes of memory, the key is 16


def test_update_with_a_wild_value(engine):
    m = hash_map()
    prog = program(f"""
        stw [%r10-4], 1
        lddw %r1, {m.handle}
        mov %r2, %r10
        add %r2, -4
        lddw %r3, {WILD}
        mov %r4, 0
        call 2
        exit""", m)
    fails(prog, engine, "insn 8: bpf_map_update_elem: invalid read of 8 bytes at 0x4141414141 (arg 3)")
    assert len(m) == 0


def test_delete_with_a_wild_key(engine):
    m = hash_map()
    prog = program(f"lddw %r1, {m.handle}\nlddw %r2, {WILD}\ncall 3\nexit", m)
    fails(prog, engine, "insn 4: bpf_map_delete_elem: invalid read of 4 bytes at 0x4141414141 (arg 2)")


def test_stack_keys_and_values_are_accepted(engine):
    # The same calls with pointers into the BPF stack work on both engines (a region on the
    # interpreter, the native frame on the JIT): update key 7 -> 0x55, then read it back.
    m = hash_map()
    prog = program(f"""
        stw [%r10-4], 7
        stdw [%r10-16], 0x55
        lddw %r1, {m.handle}
        mov %r2, %r10
        add %r2, -4
        mov %r3, %r10
        add %r3, -16
        mov %r4, 0
        call 2
        lddw %r1, {m.handle}
        mov %r2, %r10
        add %r2, -4
        call 1
        jeq %r0, 0, miss
        ldxdw %r0, [%r0]
        exit
    miss:
        mov %r0, -1
        exit""", m)
    assert prog.run(engine=engine) == 0x55
    assert m[7] == 0x55


def test_not_a_map(engine):
    prog = program("mov %r1, 0x1234\nmov %r2, %r10\ncall 1\nexit")
    fails(prog, engine, "insn 2: bpf_map_lookup_elem: 0x1234 is not a map (arg 1)")


@pytest.mark.parametrize("helper, name", [(88, "map_pop_elem"), (89, "map_peek_elem")])
def test_pop_and_peek_into_read_only_memory(engine, helper, name):
    queue = create_map(MapSpec("q", MapType.QUEUE, 0, 4, 4))
    queue.push_elem(9)
    # the destination is the map's own header: readable, not writable
    prog = program(f"lddw %r1, {queue.handle}\nlddw %r2, {queue.handle}\ncall {helper}\nexit", queue)
    fails(prog, engine, f"insn 4: bpf_{name}: invalid write of 4 bytes at {queue.handle:#x} "
                        "(read-only map q header) (arg 2)")
    assert queue.values() == [9]


def test_pop_into_a_null_buffer(engine):
    queue = create_map(MapSpec("q", MapType.QUEUE, 0, 4, 4))
    queue.push_elem(9)
    prog = program(f"lddw %r1, {queue.handle}\nmov %r2, 0\ncall 88\nexit", queue)
    fails(prog, engine, "insn 3: bpf_map_pop_elem: invalid write of 4 bytes at 0x0 (arg 2)")
    assert queue.values() == [9]


def test_push_from_a_wild_value(engine):
    queue = create_map(MapSpec("q", MapType.QUEUE, 0, 4, 4))
    prog = program(f"lddw %r1, {queue.handle}\nlddw %r2, {WILD}\nmov %r3, 0\ncall 87\nexit", queue)
    fails(prog, engine, "insn 5: bpf_map_push_elem: invalid read of 4 bytes at 0x4141414141 (arg 2)")
    assert len(queue) == 0


# --- spin locks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("helper, name", [(93, "spin_lock"), (94, "spin_unlock")])
def test_spin_lock_at_a_wild_address(engine, helper, name):
    prog = program(f"lddw %r1, {WILD}\ncall {helper}\nexit")
    fails(prog, engine, f"insn 2: bpf_{name}: invalid write of 4 bytes at 0x4141414141 (arg 1)")


def test_spin_lock_on_read_only_memory(engine):
    m = hash_map()
    prog = program(f"lddw %r1, {m.handle}\ncall 93\nexit", m)
    fails(prog, engine, f"insn 2: bpf_spin_lock: invalid write of 4 bytes at {m.handle:#x} "
                        "(read-only map h header) (arg 1)")


# --- probe_read -----------------------------------------------------------------------------------

def test_probe_read_bad_source_into_a_small_buffer(engine):
    # A bad source zero-fills the destination: with 64 KiB asked for a 32-byte stack buffer,
    # that would write 64 KiB over whatever lies above it. The destination is checked first.
    prog = program(f"mov %r1, %r10\nadd %r1, -32\nmov %r2, 65536\nlddw %r3, {WILD}\ncall 113\nexit")
    with pytest.raises(BPFRuntimeError, match=r"^insn 5: bpf_probe_read_kernel: invalid write of 65536 bytes "
                                              r"at 0x[0-9a-f]+ \(arg 1\)$"):
        prog.run(engine=engine)


def test_probe_read_bad_source_into_the_program_memory(engine):
    prog = program(f"mov %r2, 64\nlddw %r3, {WILD}\ncall 4\nexit")  # r1: 8 bytes of memory
    with pytest.raises(BPFRuntimeError, match=r"^insn 3: bpf_probe_read: invalid write of 64 bytes "
                                              r"at 0x[0-9a-f]+ \(arg 1\)$"):
        prog.run(bytes(8), engine=engine)


def test_probe_read_bad_source_fits_zeroes_and_efault(engine):
    # Within the destination, a bad source is the kernel's -EFAULT with the buffer zeroed.
    prog = program(f"mov %r2, 8\nlddw %r3, {WILD}\ncall 113\nexit")
    mem = bytearray(b"\xff" * 8)
    assert prog.run(mem, engine=engine) == -errno.EFAULT & isa.MASK64
    assert mem == bytes(8)


def test_probe_read_to_a_wild_destination(engine):
    prog = program(f"lddw %r1, {WILD}\nmov %r2, 4\nmov %r3, %r10\nadd %r3, -8\ncall 113\nexit")
    fails(prog, engine, "insn 5: bpf_probe_read_kernel: invalid write of 4 bytes at 0x4141414141 (arg 1)")


def test_probe_read_str_to_a_buffer_smaller_than_size(engine):
    prog = program("mov %r3, %r1\nmov %r2, 100\ncall 115\nexit")
    with pytest.raises(BPFRuntimeError, match=r"^insn 2: bpf_probe_read_kernel_str: invalid write of 100 "
                                              r"bytes at 0x[0-9a-f]+ \(arg 1\)$"):
        prog.run(b"abc\0", engine=engine)


def test_probe_read_str_stops_at_the_end_of_the_source_region(engine):
    # The source is the last 3 bytes of the memory, with no NUL: the string ends with its region.
    prog = program("""
        mov %r3, %r1
        add %r3, 13
        mov %r2, 16
        call 115
        exit""")
    mem = bytearray(b"\xff" * 13 + b"xyz")
    assert prog.run(mem, engine=engine) == 4
    assert mem[:4] == b"xyz\0"


# --- ring buffers ---------------------------------------------------------------------------------

def ringbuf() -> Map:
    return create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, PAGE))


SUBMIT, DISCARD = 132, 133


def reserve_then(rb: Map, *commits: tuple[int, int]) -> Program:
    """Reserve a 16-byte record (kept in r6), then call each (helper, offset): the helper on the
    record's address plus offset. The n-th commit's call is instruction 10 + 4 n."""
    lines = [f"lddw %r1, {rb.handle}", "mov %r2, 16", "mov %r3, 0", "call 131", "jeq %r0, 0, out", "mov %r6, %r0"]
    for helper, offset in commits:
        lines += ["mov %r1, %r6", f"add %r1, {offset}", "mov %r2, 0", f"call {helper}"]
    return program("\n".join(lines + ["out:", "mov %r0, 0", "exit"]), rb)


def test_ringbuf_submit_of_an_interior_pointer(engine):
    rb = ringbuf()
    with pytest.raises(BPFRuntimeError, match=r"^insn 10: bpf_ringbuf_submit: 0x[0-9a-f]+ is not the start of a "
                                              r"ring buffer record reserved and not yet submitted or "
                                              r"discarded \(arg 1\)$"):
        reserve_then(rb, (SUBMIT, 8)).run(engine=engine)


def test_ringbuf_second_submit(engine):
    rb = ringbuf()
    with pytest.raises(BPFRuntimeError, match=r"^insn 14: bpf_ringbuf_submit: .* not yet submitted"):
        reserve_then(rb, (SUBMIT, 0), (SUBMIT, 0)).run(engine=engine)
    records: list[bytes] = []
    assert rb.poll(records.append) == 1 and records == [bytes(16)]  # the first submit counted


def test_ringbuf_discard_after_submit(engine):
    rb = ringbuf()
    with pytest.raises(BPFRuntimeError, match=r"^insn 14: bpf_ringbuf_discard: .* not yet submitted"):
        reserve_then(rb, (SUBMIT, 0), (DISCARD, 0)).run(engine=engine)


def test_ringbuf_reserve_and_commit_in_order_still_work(engine):
    rb = ringbuf()
    assert reserve_then(rb, (DISCARD, 0)).run(engine=engine) == 0
    assert reserve_then(rb, (SUBMIT, 0)).run(engine=engine) == 0
    records: list[bytes] = []
    assert rb.poll(records.append) == 1 and records == [bytes(16)]


def test_ringbuf_discard_of_a_stack_address(engine):
    rb = ringbuf()
    prog = program("mov %r1, %r10\nadd %r1, -16\nmov %r2, 0\ncall 133\nexit", rb)
    with pytest.raises(BPFRuntimeError, match=r"^insn 3: bpf_ringbuf_discard: 0x[0-9a-f]+ is not the start"):
        prog.run(engine=engine)


def test_ringbuf_output_of_a_wild_buffer(engine):
    rb = ringbuf()
    prog = program(f"lddw %r1, {rb.handle}\nlddw %r2, {WILD}\nmov %r3, 8\nmov %r4, 0\ncall 130\nexit", rb)
    fails(prog, engine, "insn 6: bpf_ringbuf_output: invalid read of 8 bytes at 0x4141414141 (arg 2)")
    assert rb.avail_data == 0


def test_ringbuf_output_on_a_hash_map(engine):
    m = hash_map()
    prog = program(f"lddw %r1, {m.handle}\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\nmov %r4, 0\ncall 130\nexit", m)
    fails(prog, engine, f"insn 6: bpf_ringbuf_output: {m.handle:#x} is not a ringbuf map (arg 1)")


# --- bpf_trace_printk -----------------------------------------------------------------------------

def printk(engine: str, memory: bytes, size: int, r3: str = "mov %r3, 0") -> tuple[int, list[str]]:
    """bpf_trace_printk(r1 = the format in the memory, size, r3): its result and trace lines."""
    lines: list[str] = []
    prog = program(f"mov %r2, {size}\n{r3}\ncall 6\nexit", trace=lines)
    return prog.run(memory, engine=engine), lines


def test_printk_percent_s_at_a_wild_address(engine):
    # char f[] = "s=%s"; return bpf_trace_printk(f, sizeof f, 0x4141414141);
    prog = program(f"""
        stw [%r10-8], 0x73253d73
        stb [%r10-4], 0
        mov %r1, %r10
        add %r1, -8
        mov %r2, 5
        lddw %r3, {WILD}
        call 6
        exit""")
    fails(prog, engine, "insn 7: bpf_trace_printk: invalid read of 1 byte at 0x4141414141 (arg 3)")


def test_printk_format_larger_than_its_memory(engine):
    with pytest.raises(BPFRuntimeError, match=r"^insn 2: bpf_trace_printk: invalid read of 4096 bytes at "
                                              r"0x[0-9a-f]+ \(arg 1\)$"):
        printk(engine, b"hi\0", 4096)


def test_printk_percent_s_ends_with_its_region(engine):
    # "s=%s\0" then "xyz" with no NUL: the string is read up to the end of the memory only.
    retval, lines = printk(engine, b"s=%s\0xyz", 5, "mov %r3, %r1\nadd %r3, 5")
    assert lines == ["s=xyz"] and retval == 5


def test_printk_format_without_nul_is_einval(engine):
    retval, lines = printk(engine, b"abc", 3)
    assert retval == -errno.EINVAL & isa.MASK64 and lines == []


@pytest.mark.parametrize("fmt, arg, line, length", [
    # The kernel formats into 1024 bytes: the line keeps 1023, the helper returns the full length.
    (b"%999999999d\0", 7, " " * 1023, (1 << 23) - 1),          # widths stop at FIELD_WIDTH_MAX
    (b"%-999999999d|\0", 7, "7" + " " * 1022, (1 << 23)),
    (b"[%05000d]\0", 42, "[" + "0" * 1022, 5002),
    (b"%2000d\0", 5, " " * 1023, 2000),
    (b"%1021d!\0", 5, " " * 1020 + "5!", 1022),
    (b"%1022d!\0", 5, " " * 1021 + "5!", 1023),               # fills the line exactly
    (b"%1023d!\0", 5, " " * 1022 + "5", 1024),                # one byte too many: "!" cut
])
def test_printk_field_widths_are_capped(engine, fmt, arg, line, length):
    started = time.perf_counter()
    retval, lines = printk(engine, fmt, len(fmt), f"mov %r3, {arg}")
    assert time.perf_counter() - started < 2
    assert lines == [line] and retval == length


# --- inside a callback ----------------------------------------------------------------------------

def test_a_fault_inside_a_callback_names_the_callback_instruction(engine):
    # main (slots 0-6): bpf_loop(1, f, 0, 0); f (slot 7): bpf_spin_lock(0x4141414141) at slot 9
    insns = (assemble_insns("mov %r1, 1\nlddw %r2, 0\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit")
             + assemble_insns(f"lddw %r1, {WILD}\ncall 93\nexit"))
    insns[1] = Insn(isa.LDDW, 2, isa.PSEUDO_FUNC, 0, 7 - 2)
    prog = Program(insns, Environment(standard_helpers(lambda line: None)), verify=False)
    fails(prog, engine, "insn 9: bpf_spin_lock: invalid write of 4 bytes at 0x4141414141 (arg 1)")


# --- the checks themselves ------------------------------------------------------------------------

def test_native_stack_only_on_jit_runs():
    # An address inside this thread's stack, below where a JIT run's frames would begin, is the
    # program's own only when the run keeps its BPF stack there (JIT runs).
    heap = ctypes.c_uint64()
    low = helper_args._thread_stack_low()
    env = RunEnv()
    env.stack_top = low + (1 << 16)
    address = low + (1 << 15)
    for native, allowed in ((True, True), (False, False)):
        run = RunContext(env, Environment(), lambda start, args: 0, Regions(), native_stack=native)
        with run_context.active(run):
            assert helper_args.accessible(address, 8) is allowed
            assert helper_args.accessible(address, 8, write=True) is allowed
            assert not helper_args.accessible(env.stack_top - 4, 8)  # runs past the frames' top
            assert not helper_args.accessible(ctypes.addressof(heap), 8)  # heap: no region

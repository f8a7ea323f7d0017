"""Queue, stack and ring-buffer helpers and bpf_get_smp_processor_id, run natively for verified
programs on the compiled engines (jit/native_queue.py, native_ringbuf.py, native_misc.py), on the
same native memory the Python API reads.

Every run goes through the ``engine`` fixture, and every expectation is worked out by hand from
the kernel's rules (kernel/bpf/queue_stack_maps.c, kernel/bpf/ringbuf.c; docs/semantics.md#maps),
so the compiled engines' native helpers and the reference interpreter's Python ones are held to
the same results.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import functools
import struct
import sys
import threading
import time


import bpfjit.asm
import bpfjit.program
from bpfjit import isa
from bpfjit.errors import MapError
from bpfjit.jit import native_helpers
from bpfjit.program import Program
from bpfjit.runtime import stdhelpers
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.helpers import Prototype
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import MapSpec, QueueMap, RingBuf, create_map
from bpfjit.runtime.maps.native import CPU_NUMBERING, processor_id

MASK = (1 << 64) - 1
BPF_EXIST, BPF_NOEXIST = 2, 1
RB_NO_WAKEUP, RB_FORCE_WAKEUP = 1, 2
PUSH, POP, PEEK = 0, 1, 2
SUBMIT, DISCARD, OUTPUT, QUERY, CPU = 0, 1, 2, 3, 4

# r1 points at u64 op, u64 flags, u64 value; pop and peek leave the element in the value field.
QUEUE_PROGRAM = """
mov %r6, %r1
ldxdw %r7, [%r6+0]
ldxdw %r8, [%r6+8]
ldxdw %r3, [%r6+16]
stxdw [%r10-8], %r3
lddw %r1, 0
mov %r2, %r10
add %r2, -8
jeq %r7, 1, pop
jeq %r7, 2, peek
mov %r3, %r8
call 87
exit
pop:
call 88
ja store
peek:
call 89
store:
ldxdw %r3, [%r10-8]
stxdw [%r6+16], %r3
exit
"""

# r1 points at u64 op, u64 flags, u64 arg, 16 bytes of data. SUBMIT / DISCARD: reserve 16 bytes,
# copy the data in, commit with the flags (1 if reserved, 0 if not); OUTPUT: output (arg & 15) + 1
# bytes of the data; QUERY: query(arg); CPU: bpf_get_smp_processor_id, and that value + 100
# written to this cpu's slot of a per-CPU array (the second map).
RING_PROGRAM = """
mov %r6, %r1
ldxdw %r7, [%r6+0]
ldxdw %r8, [%r6+8]
ldxdw %r9, [%r6+16]
ldxdw %r3, [%r6+24]
stxdw [%r10-16], %r3
ldxdw %r3, [%r6+32]
stxdw [%r10-8], %r3
jeq %r7, 4, cpu
lddw %r1, 0
jeq %r7, 2, output
jeq %r7, 3, query
mov %r2, 16
mov %r3, 0
call 131
jeq %r0, 0, none
ldxdw %r3, [%r10-16]
stxdw [%r0+0], %r3
ldxdw %r3, [%r10-8]
stxdw [%r0+8], %r3
mov %r1, %r0
mov %r2, %r8
jeq %r7, 1, discard
call 132
mov %r0, 1
exit
discard:
call 133
mov %r0, 1
exit
none:
exit
output:
mov %r2, %r10
add %r2, -16
mov %r3, %r9
and %r3, 15
add %r3, 1
mov %r4, %r8
call 130
exit
query:
mov %r2, %r9
call 134
exit
cpu:
call 8
mov %r6, %r0
stw [%r10-4], 0
lddw %r1, 1
mov %r2, %r10
add %r2, -4
call 1
jeq %r0, 0, missing
mov %r1, %r6
add %r1, 100
stxdw [%r0+0], %r1
missing:
mov %r0, %r6
exit
"""


def helpers(ncpus: int):
    """The standard helpers, with bpf_get_smp_processor_id in the form runtime/maps/native.py
    gives it (the form the native registry recognises)."""
    registry = stdhelpers.standard_helpers(lambda line: None, ncpus)
    registry.register(stdhelpers.GET_SMP_PROCESSOR_ID, functools.partial(processor_id, ncpus),
                      "get_smp_processor_id", Prototype("integer"))
    return registry


def ring_program(rb: RingBuf, counters=None, verify: bool = True) -> Program:
    """RING_PROGRAM on rb, and a per-CPU array of one slot unless `counters` is given."""
    counters = counters or create_map(MapSpec("pc", MapType.PERCPU_ARRAY, 4, 8, 1))
    return program(RING_PROGRAM, [rb, counters], verify, counters.ncpus)


def program(text: str, maps: list, verify: bool = True, ncpus: int = 1) -> Program:
    """`text` with ``lddw %rN, K`` loading the handle of maps[K]."""
    insns = bpfjit.asm.assemble_insns(text)
    insns = [dataclasses.replace(insn, src=isa.PSEUDO_MAP_FD) if insn.opcode == isa.LDDW else insn
             for insn in insns]
    regions = [region for m in maps for region in m.regions()]
    env = Environment(helpers(ncpus), regions, lambda insn, index: maps[insn.imm].handle)
    return Program(insns, env, "ops", "raw", verify=verify)


def queue_packet(op: int, flags: int = 0, value: int = 0) -> bytes:
    return struct.pack("<QQQ", op, flags, value)


def ring_packet(op: int, flags: int = 0, arg: int = 0, data: bytes = b"") -> bytes:
    return struct.pack("<QQQ16s", op, flags, arg, data)


class Runner:
    """Runs one program on one engine: the result, and the value field for pops and peeks."""

    def __init__(self, prog: Program, engine: str):
        self.prog, self.engine = prog, engine

    def queue(self, op: int, flags: int = 0, value: int = 0) -> tuple[int, int]:
        result = self.prog.test_run(queue_packet(op, flags, value), engine=self.engine)
        return result.retval, struct.unpack_from("<Q", result.data_out, 16)[0]

    def ring(self, op: int, flags: int = 0, arg: int = 0, data: bytes = b"") -> int:
        return self.prog.test_run(ring_packet(op, flags, arg, data), engine=self.engine).retval


def err(code: int) -> int:
    return -code & MASK


# --- queue and stack ---------------------------------------------------------------------------


def test_queue_push_pop_peek(engine):
    q = create_map(MapSpec("q", MapType.QUEUE, 0, 8, 3))
    run = Runner(program(QUEUE_PROGRAM, [q]), engine).queue
    assert run(POP) == (err(errno.ENOENT), 0)                 # empty: -ENOENT, value zeroed
    assert run(PUSH, 0, 11)[0] == run(PUSH, 0, 22)[0] == 0
    q.push_elem(33)                                          # Python pushes into the same ring
    assert run(PUSH, 0, 44)[0] == err(errno.E2BIG)           # full (3 elements)
    assert run(PUSH, BPF_NOEXIST, 44)[0] == err(errno.EINVAL)
    assert run(PUSH, 3, 44)[0] == err(errno.EINVAL)          # unknown flags
    assert run(PEEK) == (0, 11) and len(q) == 3
    assert run(PUSH, BPF_EXIST, 44)[0] == 0                  # drops the oldest (11)
    assert q.values() == [22, 33, 44]
    assert run(POP) == (0, 22)
    assert q.pop_elem() == 33                                # Python pops from the same ring
    assert run(PUSH, 0, 55)[0] == run(PUSH, 0, 66)[0] == 0   # the ring wraps
    assert q.values() == [44, 55, 66] and len(q) == 3
    assert [run(POP) for _ in range(4)] == [(0, 44), (0, 55), (0, 66), (err(errno.ENOENT), 0)]
    q.update_elem(None, 77)                                  # user space's update is a push
    assert q.lookup_elem(None) == 77 and run(POP) == (0, 77)


def test_stack_push_pop_peek(engine):
    s = create_map(MapSpec("s", MapType.STACK, 0, 8, 2))
    run = Runner(program(QUEUE_PROGRAM, [s]), engine).queue
    assert run(PEEK) == (err(errno.ENOENT), 0)
    assert run(PUSH, 0, 1)[0] == 0
    s.push_elem(2)
    assert run(PUSH, 0, 3)[0] == err(errno.E2BIG)
    assert run(PEEK) == (0, 2)
    assert run(PUSH, BPF_EXIST, 3)[0] == 0                   # drops the oldest (1): 2 3
    assert s.values() == [3, 2]
    assert run(POP) == (0, 3) and s.pop_elem() == 2
    assert run(POP) == (err(errno.ENOENT), 0) and len(s) == 0


# --- ring buffer -------------------------------------------------------------------------------


def drain(rb: RingBuf) -> list[bytes]:
    got: list[bytes] = []
    rb.poll(got.append)
    return got


def test_ringbuf_reserve_commit_output_query_and_wakeups(engine):
    rb = create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    run = Runner(ring_program(rb), engine).ring
    assert run(QUERY, arg=1) == 4096 and run(QUERY, arg=9) == 0
    assert run(SUBMIT, 0, data=b"A" * 16) == 1
    assert rb.wakeups == 1                                   # the record is at the consumer position
    assert run(QUERY, arg=3) == 24 and run(QUERY, arg=0) == 24   # round_up(16 + 8, 8)
    assert run(DISCARD, RB_NO_WAKEUP, data=b"B" * 16) == 1
    assert rb.wakeups == 1
    assert run(OUTPUT, RB_FORCE_WAKEUP, 4, b"CCCCC") == 0    # 5 bytes: a 16-byte record
    assert rb.wakeups == 2                                   # forced, though not at the consumer
    assert run(OUTPUT, 0, 0, b"D") == 0                      # not at the consumer: no wakeup
    assert run(OUTPUT, 4, 0, b"E") == err(errno.EINVAL)      # unknown flags
    assert rb.wakeups == 2 and run(QUERY, arg=3) == 24 * 2 + 16 * 2
    assert drain(rb) == [b"A" * 16, b"CCCCC", b"D"]          # the discarded record is skipped
    assert run(QUERY, arg=2) == run(QUERY, arg=3) == 80 and run(QUERY, arg=0) == 0
    assert run(SUBMIT, RB_NO_WAKEUP, data=b"F" * 16) == 1    # at the consumer, but asked not to
    assert rb.wakeups == 2
    assert drain(rb) == [b"F" * 16]


def test_ringbuf_full(engine):
    rb = create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    run = Runner(ring_program(rb), engine).ring
    # 24-byte records; at most 4095 bytes in flight: 170 records (4080 bytes) fit, not 171
    assert [run(SUBMIT, RB_NO_WAKEUP, data=bytes([i]) * 16) for i in range(171)] == [1] * 170 + [0]
    assert run(OUTPUT, 0, 7, b"x" * 8) == err(errno.EAGAIN)
    assert rb.query(3) == 4080
    got = drain(rb)
    assert got == [bytes([i]) * 16 for i in range(170)]
    # the ring wraps: the next records straddle the end of the data area
    assert [run(SUBMIT, 0, data=bytes([200 + i]) * 16) for i in range(3)] == [1, 1, 1]
    assert drain(rb) == [bytes([200 + i]) * 16 for i in range(3)]
    assert rb.query(2) == rb.query(3) == 4080 + 72


def test_a_submit_wakes_a_waiting_poll(engine):
    rb = create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    run = Runner(ring_program(rb), engine).ring
    run(QUERY)

    def later():
        time.sleep(0.05)
        run(SUBMIT, 0, data=b"W" * 16)

    thread = threading.Thread(target=later)
    thread.start()
    start = time.monotonic()
    got: list[bytes] = []
    assert rb.poll(got.append, timeout=20.0) == 1 and got == [b"W" * 16]
    assert time.monotonic() - start < 10.0  # woken by the submit, long before the timeout
    thread.join()
    assert rb.wakeups == 1


def test_python_commits_a_record_a_program_reserved():
    rb = create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    reserve = native(stdhelpers.RINGBUF_RESERVE)
    record = reserve(rb.handle, 8, 0, 0, 0)
    assert record == rb.data_base + 8
    ctypes.memmove(record, b"natively", 8)
    assert drain(rb) == []                                  # still reserved
    assert rb.submit(record + 8) == -errno.EINVAL           # not a record's start
    assert rb.submit(record) == 0 and rb.submit(record) == -errno.EINVAL
    assert drain(rb) == [b"natively"]


# --- bpf_get_smp_processor_id ------------------------------------------------------------------


def test_processor_id_is_the_per_cpu_slot(engine):
    ncpus = 3
    rb = create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    counters = create_map(MapSpec("pc", MapType.PERCPU_ARRAY, 4, 8, 1), ncpus=ncpus)
    run = Runner(ring_program(rb, counters), engine).ring
    seen: list[tuple[int, int]] = []

    def on_a_thread():
        seen.append((run(CPU), CPU_NUMBERING.current() % ncpus))

    for _ in range(4):  # each new thread takes the next cpu number: slots 0, 1, 2 all show up
        thread = threading.Thread(target=on_a_thread)
        thread.start()
        thread.join()
    assert all(got == expected for got, expected in seen)
    slots = {got for got, _ in seen}
    assert len(slots) == 3
    assert [counters[0][slot] for slot in range(ncpus)] == [slot + 100 for slot in range(ncpus)]


def test_processor_id_binds_natively_per_slot_count():
    one, three = (Environment(helpers(n)) for n in (1, 3))
    first = native_helpers.native_address(stdhelpers.GET_SMP_PROCESSOR_ID, one)
    other = native_helpers.native_address(stdhelpers.GET_SMP_PROCESSOR_ID, three)
    assert first and other and first != other
    assert native_helpers.bound_natively(first) and native_helpers.bound_natively(other)
    assert native_helpers.native_address(stdhelpers.GET_SMP_PROCESSOR_ID, Environment(helpers(3))) == other
    assert native(stdhelpers.GET_SMP_PROCESSOR_ID, one)(0, 0, 0, 0, 0) == 0
    mine = CPU_NUMBERING.current()
    assert native(stdhelpers.GET_SMP_PROCESSOR_ID, three)(0, 0, 0, 0, 0) == mine % 3


def test_the_standard_registry_binds_processor_id_natively():
    env = Environment(stdhelpers.standard_helpers(lambda line: None, 2))
    assert native_helpers.native_address(stdhelpers.GET_SMP_PROCESSOR_ID, env) is not None


def test_probe_read_kernel_stays_python():
    env = Environment(helpers(1))
    for helper_id in (stdhelpers.PROBE_READ_KERNEL, stdhelpers.PROBE_READ_KERNEL_STR):
        assert native_helpers.native_address(helper_id, env) is None


HELPER = ctypes.CFUNCTYPE(ctypes.c_uint64, *(ctypes.c_uint64,) * 5)


def native(helper_id: int, env: Environment | None = None):
    return HELPER(native_helpers.native_address(helper_id, env or Environment(helpers(1))))


# --- no Python on the compiled engines ---------------------------------------------------------

# The Python code these helpers run when they are not native.
PYTHON_SIDE = {fn.__code__ for fn in (
    stdhelpers.map_push_elem, stdhelpers.map_pop_elem, stdhelpers.map_peek_elem, stdhelpers.ringbuf_reserve,
    stdhelpers.ringbuf_submit, stdhelpers.ringbuf_discard, stdhelpers.ringbuf_output, stdhelpers.ringbuf_query,
    QueueMap.push, QueueMap._get, RingBuf.reserve, RingBuf._commit, RingBuf.query, processor_id)}


def python_calls(runs) -> int:
    """How many times running `runs` entered the Python side of these helpers (on this thread,
    where the engines run helpers and their callbacks)."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        if event == "call" and frame.f_code in PYTHON_SIDE:
            count += 1

    sys.setprofile(profile)
    try:
        runs()
    finally:
        sys.setprofile(None)
    return count


def every_helper(verify: bool, engine: str) -> int:
    q = create_map(MapSpec("q", MapType.QUEUE, 0, 8, 4))
    rb = create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    counters = create_map(MapSpec("pc", MapType.PERCPU_ARRAY, 4, 8, 1), ncpus=2)
    queue = Runner(program(QUEUE_PROGRAM, [q], verify), engine)
    ring = Runner(ring_program(rb, counters, verify), engine)
    queue.queue(PEEK)  # compiled (or decoded) before counting
    ring.ring(QUERY)

    def runs():
        for op in (PUSH, PUSH, PEEK, POP):
            queue.queue(op, 0, 5)
        for op in (SUBMIT, DISCARD, OUTPUT, QUERY, CPU):
            ring.ring(op)

    calls = python_calls(runs)
    assert q.values() == [5] and drain(rb) == [b"\0" * 16, b"\0"]
    return calls


def test_native_helpers_never_enter_python_on_the_compiled_engines():
    verified = {engine: every_helper(True, engine) for engine in bpfjit.program.ENGINES}
    unverified = {engine: every_helper(False, engine) for engine in bpfjit.program.ENGINES}
    # Unverified programs keep the Python helpers on every engine (which shows the count works);
    # verified ones enter Python only on the reference interpreter, which is the Python side.
    assert all(count >= 9 for count in unverified.values()), unverified
    assert sorted(count > 0 for count in verified.values()) == [False] * (len(verified) - 1) + [True], verified


# --- threads -----------------------------------------------------------------------------------

PER_THREAD = 1500


def producers(target) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    return threads


def test_two_threads_push_while_python_pops(engine):
    q = create_map(MapSpec("q", MapType.QUEUE, 0, 8, 64))
    run = Runner(program(QUEUE_PROGRAM, [q]), engine).queue
    run(PEEK)

    def push(thread: int):
        for i in range(PER_THREAD):
            while run(PUSH, 0, thread << 32 | i)[0]:  # -E2BIG while full: try again
                time.sleep(0)

    threads = producers(push)
    got: list[int] = []
    deadline = time.monotonic() + 120
    while len(got) < 2 * PER_THREAD and time.monotonic() < deadline:
        try:
            got.append(q.pop_elem())
        except MapError as exc:
            assert exc.errno == errno.ENOENT
            time.sleep(0)
    for thread in threads:
        thread.join()
    for thread in (1, 2):  # each producer's elements, all of them, once, in push order
        assert [v & 0xFFFF_FFFF for v in got if v >> 32 == thread] == list(range(PER_THREAD))
    assert len(got) == 2 * PER_THREAD and len(q) == 0


def test_two_threads_write_one_ring_buffer_while_python_polls(engine):
    rb = create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    run = Runner(ring_program(rb), engine).ring
    run(QUERY)

    def output(thread: int):
        for i in range(PER_THREAD):
            op = (OUTPUT, SUBMIT, DISCARD)[i % 3]
            done = 0 if op == OUTPUT else 1
            while run(op, 0, 15, struct.pack("<QQ", thread, i)) != done:
                time.sleep(0)  # no room: try again

    threads = producers(output)
    got: list[tuple[int, int]] = []
    expected = 2 * (PER_THREAD - PER_THREAD // 3)
    deadline = time.monotonic() + 120
    while len(got) < expected and time.monotonic() < deadline:
        rb.poll(lambda sample: got.append(struct.unpack("<QQ", sample)), timeout=0.01)
    for thread in threads:
        thread.join()
    for thread in (1, 2):  # every output and submitted record, once, in order; no discarded one
        assert [i for n, i in got if n == thread] == [i for i in range(PER_THREAD) if i % 3 != 2]
    assert drain(rb) == []

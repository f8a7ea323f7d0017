"""Map types and standard helpers from a clang-built object (tests/progs/maps_helpers.c).

Every program runs on both engines (the ``engine`` fixture) against the same expectations, worked
out by hand from the C source and the kernel's behaviour; ``test_engines_agree`` also compares the
two engines' complete end states with each other.
"""
from __future__ import annotations

import errno
import pathlib
import struct
import time

import pytest

from bpfjit.errors import MapError
from bpfjit.object import load
from bpfjit.runtime.maps import BPF_NOEXIST

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
OBJ = PROGS / "maps_helpers.o"
PACKET = bytes(64)
XDP_PASS = 2
EEXIST, ENOENT, E2BIG = errno.EEXIST, errno.ENOENT, errno.E2BIG


def run(obj, name: str, engine: str, repeat: int = 1) -> int:
    return obj.programs[name].test_run(PACKET, repeat=repeat, engine=engine).retval


# --- HASH -----------------------------------------------------------------------------------------

HASH_RES = [0, -EEXIST, -ENOENT, 0, 11 + 20 + 99, 0, -ENOENT, 0]


def test_hash_flags_delete_and_struct_values(engine):
    obj = load(OBJ)
    h = obj.maps["hash"]
    assert len(h) == 0
    h[5] = {"a": 1, "b": 2, "c": 3}
    assert h[5] == {"a": 1, "b": 2, "c": 3}
    with pytest.raises(MapError) as info:
        h.update_elem(5, {"a": 9}, BPF_NOEXIST)
    assert info.value.errno == EEXIST

    assert run(obj, "hash_ops", engine) == XDP_PASS
    assert obj.bss.hash_res == HASH_RES
    # key 1 was inserted, updated and deleted; key 3 = key 5 doubled; key 5's c += 1000 in place
    assert 1 not in h
    assert dict(h.items()) == {5: {"a": 1, "b": 2, "c": 1003}, 3: {"a": 2, "b": 4, "c": 6}}

    assert run(obj, "hash_ops", engine) == XDP_PASS
    assert obj.bss.hash_res == HASH_RES
    assert dict(h.items()) == {5: {"a": 1, "b": 2, "c": 2003}, 3: {"a": 2, "b": 4, "c": 2006}}

    del h[5]
    assert run(obj, "hash_ops", engine) == XDP_PASS
    assert obj.bss.hash_res == HASH_RES
    assert dict(h.items()) == {3: {"a": 2, "b": 4, "c": 2006}}


# --- LRU_HASH -------------------------------------------------------------------------------------

def test_lru_evicts_least_recently_used(engine):
    obj = load(OBJ)
    lru = obj.maps["lru"]
    lru[9] = 90  # the oldest element once the program starts inserting
    assert run(obj, "lru_ops", engine) == XDP_PASS
    # 9, 0, 1, 2 fill the map; 3 evicts 9; the lookup makes 0 recent; 4 evicts 1, 5 evicts 2
    assert obj.bss.lru_res == [0, 0, 0, 50]
    assert dict(lru.items()) == {0: 0, 3: 30, 4: 40, 5: 50}
    assert 9 not in lru and 1 not in lru and 2 not in lru
    # Again from {3, 4, 0, 5}: updating 0 refreshes it, 1 2 3 evict 3 4 5, ... the same end state.
    assert run(obj, "lru_ops", engine, repeat=2) == XDP_PASS
    assert obj.bss.lru_res == [0, 0, 0, 50]
    assert dict(lru.items()) == {0: 0, 3: 30, 4: 40, 5: 50}
    assert len(lru) == 4


# --- PERCPU_ARRAY, bpf_get_smp_processor_id -------------------------------------------------------

def test_percpu_array_single_cpu(engine):
    obj = load(OBJ, ncpus=1)
    pcpu = obj.maps["pcpu"]
    assert pcpu[0] == [0] and pcpu[1] == [0]
    pcpu[1] = [7]
    assert run(obj, "percpu_ops", engine, repeat=3) == 1
    assert obj.bss.cpu_seen == 0
    assert pcpu[0] == [3 * (7 + 5)]
    assert pcpu[1] == [7]


def test_percpu_array_value_on_this_cpu_only(engine):
    obj = load(OBJ, ncpus=4)
    pcpu = obj.maps["pcpu"]
    pcpu[1] = 9  # one value: written to every cpu
    assert pcpu[1] == [9, 9, 9, 9]
    pcpu[1] = [100, 200, 300, 400]  # a list of ncpus values: one per cpu
    assert run(obj, "percpu_ops", engine, repeat=2) == 1
    cpu = obj.bss.cpu_seen
    assert 0 <= cpu < 4
    # The program saw its own cpu's value 1, and only its own cpu's value 0 changed.
    assert pcpu[0] == [2 * (100 * (c + 1) + 5) if c == cpu else 0 for c in range(4)]
    assert pcpu[1] == [100, 200, 300, 400]
    assert [v for _, v in pcpu.items()] == [pcpu[0], pcpu[1]]


# --- QUEUE and STACK ------------------------------------------------------------------------------

def test_queue_and_stack(engine):
    obj = load(OBJ)
    queue, stack = obj.maps["queue"], obj.maps["stack"]
    assert len(queue) == 0 and len(stack) == 0

    assert run(obj, "qs_push", engine) == XDP_PASS
    # 1..4 fill the queue, 5 is refused (-E2BIG), 6 with BPF_EXIST drops the oldest (1)
    assert obj.bss.qs_res == [-E2BIG, 0, 0]
    assert obj.bss.peeked == 30
    assert queue.values() == [2, 3, 4, 6] and len(queue) == 4
    assert stack.values() == [30, 20, 10] and len(stack) == 3

    # Python pops the head of each, pushes one more on the queue
    assert queue.pop_elem() == 2
    assert stack.pop_elem() == 30
    queue.push_elem(7)
    assert stack.peek_elem() == 20
    assert queue.values() == [3, 4, 6, 7]

    assert run(obj, "qs_pop", engine) == XDP_PASS
    # queue: FIFO, then empty (-ENOENT, value zeroed); stack: LIFO, then empty
    assert obj.bss.pop_ret == [0, 0, 0, 0, -ENOENT, 0, 0, -ENOENT]
    assert obj.bss.pop_val == [3, 4, 6, 7, 0, 20, 10, 0]
    assert len(queue) == 0 and len(stack) == 0
    for m in (queue, stack):
        with pytest.raises(MapError) as info:
            m.pop_elem()
        assert info.value.errno == ENOENT


# --- RINGBUF --------------------------------------------------------------------------------------

EVENT = struct.Struct("<IIQ")  # struct event { u32 seq; u32 kind; u64 value; }
RECORD = 8 + EVENT.size  # header + data, already 8-aligned: 24 bytes
SUBMITTED = [(1, 100, 0x1111), (3, 300, 0x3333), (4, 400, 0x4444)]  # seq 2 was discarded


def test_ringbuf_reserve_submit_discard_output_query(engine):
    obj = load(OBJ)
    rb = obj.maps["rb"]
    got: list[bytes] = []
    assert rb.poll(got.append) == 0 and got == []

    assert run(obj, "rb_produce", engine) == XDP_PASS
    # output returned 0; 4 records (the discarded one included) are between cons 0 and prod 96
    assert obj.bss.rb_res == [0, 4 * RECORD, 4096, 0, 4 * RECORD]
    assert rb.poll(got.append) == 3
    assert [EVENT.unpack(r) for r in got] == SUBMITTED
    assert rb.poll(got.append) == 0 and len(got) == 3

    assert run(obj, "rb_produce", engine) == XDP_PASS
    assert obj.bss.rb_res == [0, 4 * RECORD, 4096, 4 * RECORD, 8 * RECORD]
    got.clear()
    assert rb.poll(got.append) == 3
    assert [EVENT.unpack(r) for r in got] == SUBMITTED


# --- ktime, prandom, smp_processor_id -------------------------------------------------------------

def test_ktime_prandom_cpu(engine):
    obj = load(OBJ)
    prog = obj.programs["misc"]
    values: list[int] = []
    for _ in range(16):
        before = time.monotonic_ns()  # CLOCK_MONOTONIC, bpf_ktime_get_ns's clock
        assert prog.test_run(PACKET, engine=engine).retval == 1
        after = time.monotonic_ns()
        t1, t2 = obj.bss.t1, obj.bss.t2
        assert before <= t1 <= t2 <= after
        assert obj.bss.cpu_id == 0
        values += obj.bss.rnd
    assert all(0 <= v < 1 << 32 for v in values)
    assert len(set(values)) == len(values)  # 64 random u32s: a repeat has probability ~5e-7
    acc = 0
    for v in values:
        acc |= v
    assert acc == 0xFFFFFFFF  # every bit is set somewhere (each bit missing: probability 2**-64)


# --- probe_read_kernel(_str) ----------------------------------------------------------------------

def test_probe_read_kernel_and_str_from_rodata(engine):
    obj = load(OBJ)
    assert bytes(obj.rodata.greeting) == b"hello, bpf\0"
    assert run(obj, "probe", engine) == XDP_PASS
    # probe_read_kernel: 0; _str: the length with the NUL (11), and truncated to 6 bytes: 6
    assert obj.bss.probe_res == [0, 11, 6]
    assert bytes(obj.bss.buf_out) == b"hello, bpf\0" + bytes(5)
    assert bytes(obj.bss.str_out) == b"hello, bpf\0" + bytes(5)
    assert bytes(obj.bss.trunc_out) == b"hello\0" + bytes(2)


# --- bpf_printk -----------------------------------------------------------------------------------

PRINTK = [
    "d=-42 u=3000000000 x=beef",               # %d of a negative int, %u, %x
    "llx=123456789abcdef ld=-5000000000 c=Z",  # %llx, %ld of a negative long, %c
    "s=hello, bpf w=[   42] %",                # %s from .rodata, %5d, %%
    "[7   |00ab|ABCD]",                        # %-4d, %04x, %X
]


def test_printk_formats(engine):
    lines: list[str] = []
    obj = load(OBJ, trace=lines.append)
    assert run(obj, "printk", engine) == XDP_PASS
    assert obj.trace_log == PRINTK
    assert lines == PRINTK
    # bpf_trace_printk returns bstr_printf's count: the characters written, without the NUL
    # (kernel/trace/bpf_trace.c; only bpf_snprintf adds 1 for the NUL)
    assert obj.bss.printk_ret == [len(m) for m in PRINTK]
    assert run(obj, "printk", engine) == XDP_PASS
    assert obj.trace_log == PRINTK + PRINTK


# --- both engines, same end state -----------------------------------------------------------------

DETERMINISTIC = ["hash_ops", "lru_ops", "percpu_ops", "qs_push", "qs_pop", "rb_produce", "probe",
                 "printk"]


def _end_state(engine: str) -> dict:
    obj = load(OBJ)
    obj.maps["hash"][5] = {"a": 1, "b": 2, "c": 3}
    obj.maps["pcpu"][1] = 11
    retvals = [obj.programs[name].test_run(PACKET, repeat=2, engine=engine).retval
               for name in DETERMINISTIC]
    records: list[bytes] = []
    obj.maps["rb"].poll(records.append)
    bss = obj.bss.as_dict()
    for volatile in ("t1", "t2", "rnd"):
        del bss[volatile]
    return {
        "retvals": retvals, "bss": bss, "records": records, "trace": obj.trace_log,
        "maps": {name: sorted(obj.maps[name].items()) for name in ("hash", "lru", "pcpu")},
        "queue": obj.maps["queue"].values(), "stack": obj.maps["stack"].values(),
    }


def test_engines_agree():
    interp, jit = _end_state("reference"), _end_state("jit")
    assert interp == jit
    assert interp["retvals"] == [XDP_PASS] * 2 + [1] + [XDP_PASS] * 5
    assert len(interp["records"]) == 6

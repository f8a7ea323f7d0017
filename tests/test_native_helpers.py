"""Native helpers (jit/native_helpers.py): a verified program's jitted code calls native map
lookup/update/delete, spin locks and clocks instead of Python callbacks, and they leave the maps
exactly as the Python implementations (which the interpreter calls) do.

The differential tests run one small raw program on two identical maps, one per engine: the
packet says what to do (op, flags, key, value), and both the helper results and the whole map
contents after every step must agree, through full maps, BPF_NOEXIST/BPF_EXIST errors, LRU
evictions and per-CPU values.
"""
from __future__ import annotations

import ctypes
import random
import struct
import threading
import time

import pytest

import bpfjit.asm
from bpfjit import isa
from bpfjit.jit import native_helpers
from bpfjit.program import Program
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import MapSpec, create_map
from bpfjit.runtime.maps.native import ATOMICS
from bpfjit.runtime.stdhelpers import (GET_PRANDOM_U32, KTIME_GET_BOOT_NS, KTIME_GET_NS, MAP_DELETE_ELEM,
                                       MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, SPIN_LOCK, SPIN_UNLOCK, current_cpu,
                                       standard_helpers)

LOOKUP, UPDATE, DELETE = 0, 1, 2
MISSING = (1 << 64) - 1

# r1 points at the packet: u64 op, u64 flags, u64 key, u64 value. The key and the value go to the
# stack; a lookup returns the value's first 8 bytes (or -1), update and delete their result.
_HEAD = """mov %r6, %r1
ldxdw %r7, [%r6+0]
ldxdw %r8, [%r6+8]
ldxdw %r3, [%r6+16]
stxdw [%r10-8], %r3
ldxdw %r3, [%r6+24]
stxdw [%r10-16], %r3"""
_BODY = """mov %r2, %r10
add %r2, -8
jeq %r7, 1, +7
jeq %r7, 2, +11
call 1
jeq %r0, 0, +2
ldxdw %r0, [%r0+0]
exit
mov %r0, -1
exit
mov %r3, %r10
add %r3, -16
mov %r4, %r8
call 2
exit
call 3
exit"""


def map_program(m, verify: bool = True) -> Program:
    env = Environment(standard_helpers(lambda line: None, ncpus=m.ncpus), [*m.regions()],
                      lambda insn, index: m.handle)
    insns = [*bpfjit.asm.assemble_insns(_HEAD), *isa.lddw(1, 0, isa.PSEUDO_MAP_FD),
             *bpfjit.asm.assemble_insns(_BODY)]
    return Program(insns, env, "ops", "raw", verify=verify)


def packet(op: int, flags: int, key: int, value: int) -> bytes:
    return struct.pack("<QQQQ", op, flags, key, value)


def contents(m) -> list:
    return m.items()


HASHES = [MapType.HASH, MapType.LRU_HASH, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH]
ARRAYS = [MapType.ARRAY, MapType.PERCPU_ARRAY]


@pytest.mark.parametrize("map_type", HASHES + ARRAYS, ids=lambda t: t.name.lower())
def test_native_and_python_helpers_leave_the_same_map(map_type):
    key_size = 4 if map_type in ARRAYS else 8
    maps = {engine: create_map(MapSpec("m", map_type, key_size, 8, 6), ncpus=3) for engine in ("jit", "reference")}
    progs = {engine: map_program(m) for engine, m in maps.items()}
    rng = random.Random(int(map_type))
    for step in range(600):
        data = packet(rng.choice([LOOKUP, UPDATE, UPDATE, DELETE]), rng.choice([0, 0, 1, 2, 4, 7]),
                      rng.randrange(9), rng.getrandbits(64))
        results = {engine: progs[engine].test_run(data, engine=engine).retval for engine in progs}
        assert results["jit"] == results["reference"], (step, data.hex())
        assert contents(maps["jit"]) == contents(maps["reference"]), step


def test_errors_full_map_and_flags():
    m = create_map(MapSpec("h", MapType.HASH, 8, 8, 2))
    prog = map_program(m)

    def call(op, flags, key, value=0):
        return prog.test_run(packet(op, flags, key, value), engine="jit").retval

    assert call(UPDATE, 1, 1, 10) == 0                                  # BPF_NOEXIST, absent
    assert call(UPDATE, 1, 1, 11) == -17 & MISSING                      # -EEXIST
    assert call(UPDATE, 2, 5, 50) == -2 & MISSING                       # BPF_EXIST, absent: -ENOENT
    assert call(UPDATE, 2, 1, 12) == 0 and m[1] == 12                   # BPF_EXIST, present
    assert call(UPDATE, 0, 2, 20) == 0
    assert call(UPDATE, 0, 3, 30) == -7 & MISSING                       # full: -E2BIG
    assert call(UPDATE, 3, 3, 30) == -22 & MISSING                      # bad flags: -EINVAL
    assert call(UPDATE, 4, 1, 30) == -22 & MISSING                      # BPF_F_LOCK, no lock: -EINVAL
    assert call(DELETE, 0, 1) == 0 and call(DELETE, 0, 1) == -2 & MISSING
    assert call(LOOKUP, 0, 2) == 20 and call(LOOKUP, 0, 1) == MISSING
    assert m.items() == [(2, 20)]


def test_lru_evicts_the_same_victims_on_both_engines():
    for engine in ("jit", "reference"):
        m = create_map(MapSpec("lru", MapType.LRU_HASH, 8, 8, 3))
        prog = map_program(m)
        for key in (1, 2, 3):
            prog.test_run(packet(UPDATE, 0, key, key * 10), engine=engine)
        prog.test_run(packet(LOOKUP, 0, 1, 0), engine=engine)     # 1 is used: 2 is now the oldest
        m[3] = 33                                                 # a Python write is a use too
        prog.test_run(packet(UPDATE, 0, 4, 40), engine=engine)    # evicts 2
        prog.test_run(packet(UPDATE, 0, 5, 50), engine=engine)    # evicts 1
        assert m.items() == [(3, 33), (4, 40), (5, 50)], engine


def test_percpu_values_seen_from_python():
    m = create_map(MapSpec("pc", MapType.PERCPU_HASH, 8, 8, 4), ncpus=4)
    prog = map_program(m)
    seen, cpus = [], []

    def worker(value):
        cpus.append(current_cpu(4))  # the slot this thread's runs use (threads number in order of first run)
        prog.test_run(packet(UPDATE, 0, 7, value), engine="jit")
        seen.append(prog.test_run(packet(LOOKUP, 0, 7, 0), engine="jit").retval)

    worker(100)  # creates the element: 100 on this thread's cpu, 0 on the others
    thread = threading.Thread(target=worker, args=(200,))
    thread.start()
    thread.join()
    expected = [0] * 4
    for cpu, value in zip(cpus, (100, 200)):
        expected[cpu] = value  # two threads may share a slot: the later update wins
    assert list(m[7]) == expected and seen == [100, 200]


def test_verified_programs_bind_native_helpers_and_unverified_ones_callbacks():
    m = create_map(MapSpec("h", MapType.HASH, 8, 8, 4))
    verified, unverified = map_program(m), map_program(m, verify=False)
    for helper_id in (MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM):
        address = verified.compile().bindings[f"bpfjit_h{helper_id}"]
        assert address == native_helpers.native_address(helper_id, verified.env)
        assert native_helpers.bound_natively(address)
        assert not native_helpers.bound_natively(unverified.compile().bindings[f"bpfjit_h{helper_id}"])
    for helper_id in (SPIN_LOCK, SPIN_UNLOCK, KTIME_GET_NS, KTIME_GET_BOOT_NS):
        assert native_helpers.native_address(helper_id, verified.env) is not None


def test_a_user_helper_under_a_standard_id_stays_python():
    m = create_map(MapSpec("h", MapType.HASH, 8, 8, 4))
    prog = map_program(m)
    prog.env.helpers.register(MAP_DELETE_ELEM, lambda *regs: 1234, "map_delete_elem")
    assert native_helpers.native_address(MAP_DELETE_ELEM, prog.env) is None


HELPER = ctypes.CFUNCTYPE(ctypes.c_uint64, *(ctypes.c_uint64,) * 5)


def native(helper_id: int):
    env = Environment(standard_helpers(lambda line: None))
    return HELPER(native_helpers.native_address(helper_id, env))


def test_spin_lock_word_protocol_shared_with_python():
    lock, unlock = native(SPIN_LOCK), native(SPIN_UNLOCK)
    word = ctypes.c_uint32(0)
    address = ctypes.addressof(word)
    assert lock(address, 0, 0, 0, 0) == 0 and word.value == 1
    assert ATOMICS.cmpxchg32(address, 0, 1) == 1          # Python cannot take it now
    assert unlock(address, 0, 0, 0, 0) == 0 and word.value == 0
    assert ATOMICS.cmpxchg32(address, 0, 1) == 0          # Python takes it ...
    released = threading.Timer(0.005, lambda: setattr(word, "value", 0))
    # ... and lets it go while the native helper spins, long before it would give up on spinning
    released.start()
    assert lock(address, 0, 0, 0, 0) == 0 and word.value == 1
    released.join()


def test_spin_lock_counts_stay_exact_across_threads():
    lock, unlock = native(SPIN_LOCK), native(SPIN_UNLOCK)
    words = (ctypes.c_uint64 * 2)()
    lock_address, counter = ctypes.addressof(words), ctypes.addressof(words) + 8

    def bump():
        for _ in range(2000):
            lock(lock_address, 0, 0, 0, 0)
            value = ctypes.c_uint64.from_address(counter)
            value.value += 1
            unlock(lock_address, 0, 0, 0, 0)

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert words[1] == 6000


def test_clocks():
    now = native(KTIME_GET_NS)(0, 0, 0, 0, 0)
    assert abs(now - time.clock_gettime_ns(time.CLOCK_MONOTONIC)) < 50_000_000
    boot = native(KTIME_GET_BOOT_NS)(0, 0, 0, 0, 0)
    assert abs(boot - time.clock_gettime_ns(time.CLOCK_BOOTTIME)) < 50_000_000


def test_prandom_gives_distinct_u32s_with_every_bit_set_somewhere_across_threads():
    prandom = native(GET_PRANDOM_U32)
    values: list[int] = []

    def draw():
        values.extend(prandom(0, 0, 0, 0, 0) for _ in range(2000))

    threads = [threading.Thread(target=draw) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(0 <= v < 1 << 32 for v in values)
    # 6000 draws of 32 bits: a repeat has probability ~4e-3 for a uniform source; a shared step
    # handed to two threads would repeat whole runs of values.
    assert len(set(values)) >= len(values) - 2
    assert all(sum(v >> bit & 1 for v in values) > 2700 for bit in range(32))  # each bit ~half the time


def test_jit_and_python_writers_keep_one_hash_map_consistent():
    m = create_map(MapSpec("shared", MapType.HASH, 8, 8, 512))
    prog = map_program(m)
    errors = []

    def jitted():
        for round_ in range(20):
            for key in range(100):
                prog.test_run(packet(UPDATE, 0, key, round_), engine="jit")
            for key in range(0, 100, 2):
                prog.test_run(packet(DELETE, 0, key, 0), engine="jit")

    def python():
        try:
            for round_ in range(20):
                for key in range(1000, 1100):
                    m[key] = round_
                for key in range(1000, 1100, 2):
                    del m[key]
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=jitted), threading.Thread(target=python)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = {key: 19 for key in (*range(1, 100, 2), *range(1001, 1100, 2))}
    assert dict(m.items()) == expected and len(m) == 100
    table = m.chains
    assert sorted([*table.slots(), *table.free[:table.nfree]]) == list(range(512))
    for key in expected:
        assert prog.test_run(packet(LOOKUP, 0, key, 0), engine="jit").retval == 19

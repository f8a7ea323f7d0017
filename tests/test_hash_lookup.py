"""Jitted hash-map lookups walk the map's native chains (runtime/hash_index.py) instead of calling
Python: checked here against the interpreter (which walks the chains from Python) and a plain dict model,
while keys are inserted, deleted, evicted and cleared, and while another thread churns the map.

tests/progs/hash_lookup.c: lookup_small (3-byte keys, 4 entries), lookup_odd (13-byte keys, 8
entries), lookup_wide (24-byte keys, 4096 entries) return the u64 value stored for the key at the
start of the packet, or -1 (as the u32 retval 0xffffffff) when it is absent.
"""
from __future__ import annotations

import ctypes
import pathlib
import random
import struct
import threading
import time

import pytest

import bpfjit
from bpfjit.runtime.hash_index import NULLS, bucket_count, key_chunks, key_hash
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import BPF_NOEXIST, MapSpec, create_map
from bpfjit.runtime.maps.hash_table import HashTable

OBJ = pathlib.Path(__file__).resolve().parent / "progs" / "hash_lookup.o"
MISSING = 0xFFFFFFFF
PROGRAMS = {"small": "lookup_small", "odd": "lookup_odd", "wide": "lookup_wide"}


def chains(index: HashTable) -> dict[int, list[int]]:
    """bucket -> the slots in its chain, walked from Python; every chain must end on its own marker."""
    out = {}
    for bucket in range(index.nbuckets):
        at, slots = index.heads[bucket], []
        while at < NULLS:
            slots.append(at - 1)
            at = index.links[at - 1]
            assert len(slots) <= len(index.links), "a chain loops"
        assert at == NULLS | bucket
        if slots:
            out[bucket] = slots
    return out


def assert_chains_match(m) -> None:
    """The native chains hold exactly the keys of the map's order list, each in the bucket its hash
    picks, and the free stack holds every other slot."""
    found = {}
    for bucket, slots in chains(m.chains).items():
        for slot in slots:
            key = ctypes.string_at(m.key_base + slot * m.key_stride, m.key_size)
            assert m.chains.bucket(key) == bucket
            found[key] = slot
    assert found == {m.chains.key_at(slot): slot for slot in m.chains.slots()}
    assert sorted([*found.values(), *m.chains.free[:m.chains.nfree]]) == list(range(m.max_entries))


# --- the index on its own -------------------------------------------------------------------------

def test_key_chunks_cover_the_key_exactly():
    assert key_chunks(3) == [(0, 2), (2, 1)]
    assert key_chunks(13) == [(0, 8), (8, 4), (12, 1)]
    assert key_chunks(24) == [(0, 8), (8, 8), (16, 8)]
    for size in range(1, 70):
        covered = [offset + i for offset, length in key_chunks(size) for i in range(length)]
        assert covered == list(range(size))


def test_bucket_count_is_a_power_of_two_of_at_least_max_entries():
    assert [bucket_count(n) for n in (1, 2, 3, 4, 5, 4096, 4097)] == [1, 2, 4, 4, 8, 4096, 8192]


def test_hash_depends_on_every_byte():
    key = bytes(range(13))
    for i in range(13):
        changed = bytearray(key)
        changed[i] ^= 1
        assert key_hash(bytes(changed)) != key_hash(key)


@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.LRU_HASH])
def test_chains_follow_inserts_deletes_evictions_and_clears(map_type):
    m = create_map(MapSpec("h", map_type, 5, 8, 6))
    rng = random.Random(1)
    keys = [bytes([k, 0, 0, 0, k]) for k in range(12)]
    for step in range(600):
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.55:
            m.update(key, struct.pack("<Q", step))
        elif roll < 0.95:
            m.delete(key)
        else:
            m.clear()
        assert_chains_match(m)


# --- jitted lookups against the interpreter and a dict --------------------------------------------

def packet(key: bytes) -> bytes:
    return key + bytes(64 - len(key))


def expect(model: dict[bytes, int], key: bytes) -> int:
    return model[key] if key in model else MISSING


@pytest.mark.parametrize("map_name", sorted(PROGRAMS))
def test_lookups_follow_the_map_through_churn(map_name):
    obj = bpfjit.load(OBJ)
    m, program = obj.maps[map_name], obj.programs[PROGRAMS[map_name]]
    rng = random.Random(map_name)
    # Keys from a small pool, so that buckets collide and deleted slots come back.
    pool = [rng.randbytes(m.key_size) for _ in range(3 * m.max_entries if m.max_entries < 100 else 300)]
    model: dict[bytes, int] = {}
    for step in range(400):
        key = rng.choice(pool)
        roll = rng.random()
        if roll < 0.5:
            value = rng.randrange(1 << 31)
            if m.update(key, struct.pack("<Q", value)) == 0:
                model[key] = value
            else:
                assert len(model) == m.max_entries and key not in model
        elif roll < 0.97:
            m.delete(key)
            model.pop(key, None)
        else:
            m.clear()
            model.clear()
        for probe in rng.sample(pool, 6) + list(model)[:4]:
            want = expect(model, probe)
            assert program.test_run(packet(probe), engine="jit").retval == want, (step, probe)
            assert program.test_run(packet(probe), engine="reference").retval == want, (step, probe)
    assert_chains_match(m)


def test_colliding_keys_are_all_found():
    obj = bpfjit.load(OBJ)
    m, program = obj.maps["odd"], obj.programs["lookup_odd"]
    # Keys that differ only in their last byte (the last chunk) and all land in bucket 3.
    prefix = bytes(range(12))
    same_bucket = [key for key in (prefix + bytes([b]) for b in range(256)) if m.chains.bucket(key) == 3]
    same_bucket = same_bucket[:m.max_entries]
    assert len(same_bucket) == m.max_entries
    for value, key in enumerate(same_bucket, start=100):
        assert m.update(key, struct.pack("<Q", value), BPF_NOEXIST) == 0
    assert chains(m.chains) == {3: list(range(m.max_entries - 1, -1, -1))}
    for value, key in enumerate(same_bucket, start=100):
        assert program.test_run(packet(key), engine="jit").retval == value
    m.delete(same_bucket[3])  # from the middle of the chain
    assert program.test_run(packet(same_bucket[3]), engine="jit").retval == MISSING
    assert [program.test_run(packet(k), engine="jit").retval for k in same_bucket[4:]] == list(range(104, 108))


def test_two_maps_in_one_program():
    obj = bpfjit.load(OBJ)
    key = bytes(range(24))
    obj.maps["odd"].update(key[:13], struct.pack("<Q", 5))
    for engine in ("jit", "reference"):
        assert obj.programs["lookup_twice"].test_run(packet(key), engine=engine).retval == 5 + 2000
    obj.maps["wide"].update(key, struct.pack("<Q", 70))
    for engine in ("jit", "reference"):
        assert obj.programs["lookup_twice"].test_run(packet(key), engine=engine).retval == 5 + 70


def test_the_value_a_lookup_returns_is_the_map_value():
    # The program reads through the pointer the inlined walk produced: writes from Python show.
    obj = bpfjit.load(OBJ)
    key = bytes(range(3))
    obj.maps["small"].update(key, struct.pack("<Q", 1))
    program = obj.programs["lookup_small"]
    assert program.test_run(packet(key), engine="jit").retval == 1
    obj.maps["small"].update(key, struct.pack("<Q", 2))
    assert program.test_run(packet(key), engine="jit").retval == 2


def test_lookups_while_another_thread_churns_the_map():
    # A key that stays present must be found by every run while the other slots are deleted and
    # reused under it (the walk restarts when it strays into another chain); a key that comes and
    # goes is found with its value or not at all.
    obj = bpfjit.load(OBJ)
    m, program = obj.maps["odd"], obj.programs["lookup_odd"]
    steady, flicker = bytes(range(13)), bytes(range(1, 14))
    m.update(steady, struct.pack("<Q", 42))
    others = [bytes([k]) * 13 for k in range(2, 40)]
    stop = threading.Event()

    def churn() -> None:
        rng = random.Random(3)
        while not stop.is_set():
            key = rng.choice(others + [flicker])
            if m.update(key, struct.pack("<Q", 7), BPF_NOEXIST) != 0:
                m.delete(key)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        deadline = time.monotonic() + 1.0
        seen = set()
        while time.monotonic() < deadline:
            assert program.test_run(packet(steady), repeat=2000, engine="jit").retval == 42
            seen.add(program.test_run(packet(flicker), engine="jit").retval)
        assert seen <= {7, MISSING}
    finally:
        stop.set()
        worker.join()
    assert_chains_match(m)

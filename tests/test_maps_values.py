"""BPF maps in native memory (bpfjit.runtime.maps): what the user side sees of keys and values:
spin lock words, BTF-shaped keys and values, freezing and access flags.

Expected values are worked out by hand from the kernel's semantics (kernel/bpf/arraymap.c,
hashtab.c, queue_stack_maps.c, ringbuf.c, libbpf's ringbuf consumer) and docs/semantics.md#maps,
#spin-locks and #helpers, never copied from the implementation's output. Where bpfjit deliberately
differs (exact LRU, in-place hash updates) the tests follow the documented bpfjit rule.
"""
from __future__ import annotations

import errno
import struct

import pytest

from bpfjit.errors import MapError
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_F_RDONLY, BPF_F_WRONLY, BPF_NOEXIST

from map_cases import errno_of, mem, mk, poke, u32


# --- spin lock fields ----------------------------------------------------------------------------


def test_spin_lock_word_hidden_and_preserved_array():
    # struct { struct bpf_spin_lock lock; u32 v; } -> lock at 0, v at 4
    m = mk("locked", MapType.ARRAY, 4, 8, 1, lock_offset=0)
    a = m.lookup(u32(0))
    poke(a, u32(1) + u32(5))                    # held lock, v = 5
    assert m[0] == 5 << 32                      # lock shows as zero
    m[0] = (0xAAAAAAAA << 32) | 0xBBBBBBBB      # user write: lock word left alone
    assert mem(a, 8) == u32(1) + u32(0xAAAAAAAA)
    assert m.update(u32(0), u32(0xCCCCCCCC) + u32(6), BPF_ANY) == 0   # program side too
    assert mem(a, 8) == u32(1) + u32(6)
    assert m.update(u32(0), u32(0) + u32(7), BPF_F_LOCK) == 0
    assert m.update(u32(0), u32(0) + u32(7), BPF_F_LOCK | BPF_NOEXIST) == -errno.EEXIST
    assert m.update(u32(0), u32(0) + u32(7), BPF_F_LOCK | 3) == -errno.EINVAL
    assert m.lookup_elem(0, BPF_F_LOCK) == 7 << 32
    m.clear()
    assert mem(a, 8) == u32(1) + u32(0)


def test_spin_lock_hash_new_element_starts_unlocked():
    m = mk("lh", MapType.HASH, 4, 8, 2, lock_offset=4)   # { u32 v; struct bpf_spin_lock l; }
    m[1] = u32(3) + u32(0xFFFFFFFF)
    a = m.lookup(u32(1))
    assert mem(a, 8) == u32(3) + u32(0)         # new element: lock zeroed
    poke(a + 4, u32(1))                          # a program holds the lock
    m[1] = u32(4) + u32(0)
    assert mem(a, 8) == u32(4) + u32(1)         # existing element: lock untouched
    assert m[1] == 4
    assert m.update(u32(1), u32(5) + u32(9), BPF_F_LOCK | BPF_EXIST) == 0
    assert mem(a, 8) == u32(5) + u32(1)
    assert m.update(u32(2), u32(5) + u32(9), BPF_F_LOCK | BPF_EXIST) == -errno.ENOENT
    assert errno_of(mk("nl", MapType.HASH, 4, 8, 1).lookup_elem, 1, BPF_F_LOCK) == errno.EINVAL


# --- BTF-shaped keys and values ------------------------------------------------------------------


class FakeBTF:
    """Duck-typed stand-in for runtime.btf: type 1 = struct {u16 port; u16 proto} (key),
    type 2 = struct {u32 a; u32 b} (value), type 3 = struct {lock; u32 v}."""

    def __init__(self):
        self.calls = []

    def encode_value(self, type_id, value):
        self.calls.append(("encode", type_id))
        if type_id == 1:
            return struct.pack("<HH", value["port"], value["proto"])
        if type_id == 2:
            return struct.pack("<II", value["a"], value["b"])
        if type_id == 3:
            return struct.pack("<II", 0, value["v"])
        raise ValueError(f"no type {type_id}")

    def format_value(self, type_id, data):
        self.calls.append(("format", type_id, bytes(data)))
        if type_id == 1:
            port, proto = struct.unpack("<HH", data)
            return {"port": port, "proto": proto}
        if type_id == 2:
            a, b = struct.unpack("<II", data)
            return {"a": a, "b": b}
        if type_id == 3:
            lock, v = struct.unpack("<II", data)
            return {"lock": lock, "v": v}
        raise ValueError(f"no type {type_id}")


def test_btf_shaped_keys_and_values():
    btf = FakeBTF()
    m = mk("flows", MapType.HASH, 4, 8, 4, key_type_id=1, value_type_id=2, btf=btf)
    m[{"port": 80, "proto": 6}] = {"a": 1, "b": 2}
    assert ("encode", 1) in btf.calls and ("encode", 2) in btf.calls
    assert m[{"port": 80, "proto": 6}] == {"a": 1, "b": 2}
    assert m.keys() == [{"port": 80, "proto": 6}]
    assert m.items() == [({"port": 80, "proto": 6}, {"a": 1, "b": 2})]
    # raw forms still work: key 80 | 6 << 16, value bytes
    key = struct.pack("<HH", 443, 17)
    m[key] = struct.pack("<II", 3, 4)
    assert m[{"port": 443, "proto": 17}] == {"a": 3, "b": 4}
    m[(6 << 16) | 22] = (9 << 32) | 8
    assert m[{"port": 22, "proto": 6}] == {"a": 8, "b": 9}
    assert mem(m.lookup(struct.pack("<HH", 80, 6)), 8) == struct.pack("<II", 1, 2)


def test_btf_encode_errors_become_map_errors():
    m = mk("flows", MapType.HASH, 4, 8, 4, value_type_id=99, btf=FakeBTF())
    with pytest.raises(MapError) as info:
        m[1] = {"x": 1}
    assert "flows" in str(info.value) and info.value.errno == errno.EINVAL


def test_btf_percpu_and_lock():
    btf = FakeBTF()
    pc = mk("pcs", MapType.PERCPU_ARRAY, 4, 8, 1, value_type_id=2, btf=btf, ncpus=2)
    pc[0] = [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert pc[0] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    pc[0] = {"a": 5, "b": 6}
    assert pc[0] == [{"a": 5, "b": 6}] * 2
    lk = mk("lk", MapType.ARRAY, 4, 8, 1, value_type_id=3, btf=btf, lock_offset=0)
    poke(lk.lookup(u32(0)), u32(1) + u32(42))
    assert lk[0] == {"lock": 0, "v": 42}          # format_value sees the lock zeroed


# --- freeze and access flags ---------------------------------------------------------------------


def test_freeze_blocks_user_writes_only():
    m = mk("ro", MapType.ARRAY, 4, 4, 2)
    m[0] = 1
    m.freeze()
    assert errno_of(m.__setitem__, 0, 2) == errno.EPERM
    assert errno_of(m.clear) == errno.EPERM
    assert m[0] == 1
    assert m.update(u32(0), u32(3), BPF_ANY) == 0   # program side unaffected
    assert m[0] == 3
    h = mk("h", MapType.HASH, 4, 4, 2)
    h[1] = 1
    h.freeze()
    assert errno_of(h.__delitem__, 1) == errno.EPERM


def test_rdonly_and_wronly_user_access():
    r = mk("r", MapType.HASH, 4, 4, 2, BPF_F_RDONLY)
    assert errno_of(r.__setitem__, 1, 1) == errno.EPERM
    assert r.update(u32(1), u32(1), BPF_ANY) == 0
    assert r[1] == 1
    w = mk("w", MapType.HASH, 4, 4, 2, BPF_F_WRONLY)
    w[1] = 1
    assert errno_of(w.__getitem__, 1) == errno.EPERM
    assert errno_of(w.keys) == errno.EPERM

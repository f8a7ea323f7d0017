"""BPF maps in native memory (bpfjit.runtime.maps).

Expected values are worked out by hand from the kernel's semantics (kernel/bpf/arraymap.c,
hashtab.c, queue_stack_maps.c, ringbuf.c, libbpf's ringbuf consumer) and docs/semantics.md#maps,
#spin-locks and #helpers, never copied from the implementation's output. Where bpfjit deliberately differs (exact LRU,
in-place hash updates) the tests follow the documented bpfjit rule.
"""
from __future__ import annotations

import ctypes
import errno
import gc
import struct
import threading
import time

import pytest

from bpfjit.errors import BPFError, MapError
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import (
    BPF_ANY, BPF_EXIST, BPF_F_INNER_MAP, BPF_F_LOCK, BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC,
    BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_NOEXIST, HEADER, HEADER_SIZE, ArrayMap, ArrayOfMaps,
    HashMap, HashOfMaps, LruHashMap, LruPercpuHashMap, Map, MapSpec, PercpuArrayMap,
    PercpuHashMap, ProgArray, QueueMap, RingBuf, StackMap, create_map, find_region,
    map_from_handle, ringbuf_from_record,
)

PAGE = 4096
BUSY = 1 << 31
DISCARD = 1 << 30
RB_NO_WAKEUP, RB_FORCE_WAKEUP = 1, 2


def mk(name="m", t=MapType.HASH, k=4, v=8, n=4, flags=0, **kw) -> Map:
    extra = {key: kw.pop(key) for key in ("btf", "ncpus", "lock_offset") if key in kw}
    return create_map(MapSpec(name, t, k, v, n, flags, **kw), **extra)


def u32(i: int) -> bytes:
    return i.to_bytes(4, "little")


def u64(i: int) -> bytes:
    return i.to_bytes(8, "little")


def mem(addr: int, n: int) -> bytes:
    return ctypes.string_at(addr, n)


def poke(addr: int, data: bytes) -> None:
    ctypes.memmove(addr, data, len(data))


def errno_of(fn, *args, **kwargs) -> int:
    with pytest.raises(MapError) as info:
        fn(*args, **kwargs)
    return info.value.errno


def covered(m: Map, addr: int, size: int, writable: bool = True) -> bool:
    return any(r.contains(addr, size) and (r.writable or not writable) for r in m.regions())


# --- creation --------------------------------------------------------------------------------


@pytest.mark.parametrize("t, k, v, n, cls", [
    (MapType.HASH, 4, 8, 4, HashMap),
    (MapType.ARRAY, 4, 8, 4, ArrayMap),
    (MapType.PROG_ARRAY, 4, 4, 4, ProgArray),
    (MapType.PERCPU_HASH, 4, 8, 4, PercpuHashMap),
    (MapType.PERCPU_ARRAY, 4, 8, 4, PercpuArrayMap),
    (MapType.LRU_HASH, 4, 8, 4, LruHashMap),
    (MapType.LRU_PERCPU_HASH, 4, 8, 4, LruPercpuHashMap),
    (MapType.QUEUE, 0, 8, 4, QueueMap),
    (MapType.STACK, 0, 8, 4, StackMap),
    (MapType.RINGBUF, 0, 0, PAGE, RingBuf),
])
def test_create_map_picks_the_class(t, k, v, n, cls):
    m = mk("x", t, k, v, n)
    assert type(m) is cls
    assert m.map_type == t and m.name == "x"


def test_create_map_in_map_classes():
    inner = MapSpec("in", MapType.ARRAY, 4, 4, 1)
    assert type(create_map(MapSpec("aom", MapType.ARRAY_OF_MAPS, 4, 4, 2, inner=inner))) \
        is ArrayOfMaps
    assert type(create_map(MapSpec("hom", MapType.HASH_OF_MAPS, 4, 4, 2, inner=inner))) \
        is HashOfMaps


def test_unsupported_type_names_map_and_type():
    with pytest.raises(MapError) as info:
        mk("perfy", MapType.PERF_EVENT_ARRAY, 4, 4, 4)
    assert "perfy" in str(info.value) and "PERF_EVENT_ARRAY" in str(info.value)
    assert info.value.errno == errno.EOPNOTSUPP
    assert isinstance(info.value, BPFError)
    with pytest.raises(MapError) as info:
        mk("weird", 999, 4, 4, 4)
    assert "weird" in str(info.value) and "999" in str(info.value)
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize("t, k, v, n, flags, err", [
    (MapType.ARRAY, 8, 4, 4, 0, errno.EINVAL),            # array key must be u32
    (MapType.ARRAY, 4, 0, 4, 0, errno.EINVAL),            # no value
    (MapType.ARRAY, 4, 4, 0, 0, errno.EINVAL),            # no entries
    (MapType.ARRAY, 4, (4 << 20) + 1, 1, 0, errno.E2BIG),  # > KMALLOC_MAX_SIZE
    (MapType.PERCPU_ARRAY, 4, 32 * 1024 + 1, 1, 0, errno.E2BIG),  # > PCPU_MIN_UNIT_SIZE
    (MapType.PERCPU_ARRAY, 4, 4, 1, BPF_F_MMAPABLE, errno.EINVAL),
    (MapType.ARRAY, 4, 4, 1, BPF_F_RDONLY | BPF_F_WRONLY, errno.EINVAL),
    (MapType.ARRAY, 4, 4, 1, BPF_F_NO_PREALLOC, errno.EINVAL),  # not an array flag
    (MapType.HASH, 0, 4, 4, 0, errno.EINVAL),
    (MapType.HASH, 4, 0, 4, 0, errno.EINVAL),
    (MapType.HASH, 4, 4, 0, 0, errno.EINVAL),
    (MapType.HASH, 513, 4, 4, 0, errno.E2BIG),            # key larger than the BPF stack
    (MapType.HASH, 4, 4, 4, BPF_F_MMAPABLE, errno.EINVAL),
    (MapType.HASH, 4, 4, 4, BPF_F_NO_COMMON_LRU, errno.EINVAL),  # only for LRU
    (MapType.LRU_HASH, 4, 4, 4, BPF_F_NO_PREALLOC, errno.EOPNOTSUPP),
    (MapType.QUEUE, 4, 4, 4, 0, errno.EINVAL),            # queue has no key
    (MapType.STACK, 0, 0, 4, 0, errno.EINVAL),
    (MapType.STACK, 0, 4, 0, 0, errno.EINVAL),
    (MapType.QUEUE, 0, 4, 4, BPF_F_NO_PREALLOC, errno.EINVAL),
    (MapType.RINGBUF, 0, 0, 3 * PAGE, 0, errno.EINVAL),   # not a power of 2
    (MapType.RINGBUF, 0, 0, 2048, 0, errno.EINVAL),       # power of 2, not page-aligned
    (MapType.RINGBUF, 0, 0, 0, 0, errno.EINVAL),
    (MapType.RINGBUF, 4, 0, PAGE, 0, errno.EINVAL),       # ring buffers have no keys
    (MapType.RINGBUF, 0, 8, PAGE, 0, errno.EINVAL),
    (MapType.RINGBUF, 0, 0, PAGE, BPF_F_RDONLY, errno.EINVAL),
    (MapType.PROG_ARRAY, 4, 8, 4, 0, errno.EINVAL),       # value is a u32 fd
    (MapType.PROG_ARRAY, 4, 4, 4, BPF_F_MMAPABLE, errno.EINVAL),
])
def test_invalid_specs(t, k, v, n, flags, err):
    with pytest.raises(MapError) as info:
        mk("bad_map", t, k, v, n, flags)
    assert info.value.errno == err
    assert "bad_map" in str(info.value)


def test_valid_ringbuf_sizes():
    assert mk("rb", MapType.RINGBUF, 0, 0, PAGE).query(1) == PAGE
    assert mk("rb", MapType.RINGBUF, 0, 0, 4 * PAGE).query(1) == 4 * PAGE


def test_map_in_map_needs_a_valid_template():
    with pytest.raises(MapError) as info:
        create_map(MapSpec("outer", MapType.ARRAY_OF_MAPS, 4, 4, 2))
    assert info.value.errno == errno.EINVAL and "outer" in str(info.value)
    for bad_inner in (MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        with pytest.raises(MapError) as info:
            create_map(MapSpec("outer", MapType.HASH_OF_MAPS, 4, 4, 2,
                               inner=MapSpec("i", bad_inner, 4, 4, 1)))
        assert info.value.errno == errno.EOPNOTSUPP
    with pytest.raises(MapError) as info:  # map-in-map values are u32 fds
        create_map(MapSpec("outer", MapType.ARRAY_OF_MAPS, 4, 8, 2,
                           inner=MapSpec("i", MapType.ARRAY, 4, 4, 1)))
    assert info.value.errno == errno.EINVAL


def test_spin_lock_placement_rules():
    assert mk("ok", MapType.HASH, 4, 8, 2, lock_offset=4).lock_offset == 4
    assert mk("ok", MapType.ARRAY, 4, 8, 2, lock_offset=0).lock_offset == 0
    # kernel allow-list (docs/semantics.md#spin-locks): not in LRU, per-cpu, queue maps
    for t in (MapType.LRU_HASH, MapType.PERCPU_ARRAY, MapType.PERCPU_HASH):
        assert errno_of(mk, "l", t, 4, 8, 2, lock_offset=0) == errno.EOPNOTSUPP
    assert errno_of(mk, "l", MapType.ARRAY, 4, 8, 2, lock_offset=6) == errno.EINVAL   # unaligned
    assert errno_of(mk, "l", MapType.ARRAY, 4, 8, 2, lock_offset=8) == errno.EINVAL   # outside
    assert errno_of(mk, "l", MapType.ARRAY, 4, 8, 1, BPF_F_RDONLY_PROG,
                    lock_offset=0) == errno.EACCES


def test_ncpus_must_be_positive():
    assert errno_of(mk, "p", MapType.PERCPU_ARRAY, 4, 4, 1, ncpus=0) == errno.EINVAL


def test_huge_map_is_a_clean_error():
    # 4 KiB values * 2^20 entries = 4 GiB: refused before allocating
    with pytest.raises(MapError) as info:
        mk("huge", MapType.ARRAY, 4, 4096, 1 << 20)
    assert info.value.errno == errno.ENOMEM and "huge" in str(info.value)


# --- header, handle, registry, regions ---------------------------------------------------------


def test_header_layout_array():
    m = mk("arr", MapType.ARRAY, 4, 12, 3, BPF_F_MMAPABLE)
    fields = HEADER.unpack(mem(m.handle, HEADER_SIZE))
    (mtype, ks, vs, me, flags, stride, vbase, ncpus, mid, cpu_stride, key_base, magic) = fields
    assert (mtype, ks, vs, me, flags) == (2, 4, 12, 3, BPF_F_MMAPABLE)
    assert stride == 16 and m.elem_stride == 16          # round_up(12, 8)
    assert vbase == m.value_base and vbase % 8 == 0
    assert ncpus == 1 and mid == m.id
    assert cpu_stride == 3 * 16
    assert key_base == m.key_base
    assert magic == b"BPFJMAP\0"


def test_handles_unique_stable_and_registered():
    maps = [mk(f"m{i}", MapType.HASH if i % 2 else MapType.ARRAY, 4, 8, 2) for i in range(50)]
    handles = [m.handle for m in maps]
    assert len(set(handles)) == 50
    for m in maps:
        assert map_from_handle(m.handle) is m
        m_handle = m.handle
        if isinstance(m, HashMap):
            m[1] = 2
            del m[1]
        assert m.handle == m_handle
        assert m.regions()[0].start == m.handle and not m.regions()[0].writable
    assert map_from_handle(0) is None
    assert map_from_handle(maps[0].handle + 8) is None


def test_registry_does_not_keep_maps_alive():
    m = mk("tmp", MapType.ARRAY, 4, 8, 1)
    h = m.handle
    assert map_from_handle(h) is m
    del m
    gc.collect()
    assert map_from_handle(h) is None


def test_value_regions_respect_rdonly_prog():
    m = mk("ro", MapType.ARRAY, 4, 8, 2, BPF_F_RDONLY_PROG)
    a = m.lookup(u32(1))
    assert covered(m, a, 8, writable=False) and not covered(m, a, 8, writable=True)
    assert not m.read_only_for_program   # not frozen yet (docs/semantics.md#global-data)
    m[0] = 7                            # the loader writes the image, then freezes
    m.freeze()
    assert m.read_only_for_program
    w = mk("rw", MapType.ARRAY, 4, 8, 2)
    assert covered(w, w.lookup(u32(1)), 8, writable=True)


def test_find_region_across_live_maps():
    m = mk("fr", MapType.ARRAY, 4, 8, 4)
    a = m.lookup(u32(3))
    r = find_region(a, 8)
    assert r is not None and r.writable and r.name == "map fr values"
    assert find_region(m.handle, 8).name == "map fr header"
    assert find_region(a, 8 + 8 + 64 * 1024 * 1024) is None


# --- array -------------------------------------------------------------------------------------


def test_array_addresses_are_kernel_layout():
    m = mk("arr", MapType.ARRAY, 4, 12, 3)
    base = m.value_base
    assert [m.lookup(u32(i)) for i in range(3)] == [base, base + 16, base + 32]
    assert m.lookup(u32(3)) == 0
    assert m.lookup(u32(0xFFFFFFFF)) == 0
    assert m.value_address(2) == base + 32
    for i in range(3):
        assert covered(m, m.lookup(u32(i)), 12)


def test_array_python_api():
    m = mk("arr", MapType.ARRAY, 4, 4, 3)
    assert len(m) == 3
    assert m.keys() == [0, 1, 2]
    assert m.values() == [0, 0, 0]                  # preallocated, zeroed
    assert 2 in m and 3 not in m and b"\0\0\0\0" in m
    m[1] = 0x11223344
    assert mem(m.lookup(u32(1)), 4) == bytes([0x44, 0x33, 0x22, 0x11])
    m[b"\2\0\0\0"] = b"\xff\0\0\0"
    assert m[2] == 255
    m[0] = -1                                      # two's complement at value_size
    assert m[0] == 0xFFFFFFFF
    assert m.items() == [(0, 0xFFFFFFFF), (1, 0x11223344), (2, 255)]
    assert m.dump() == m.items()
    with pytest.raises(KeyError):
        m[3]
    assert m.get(3, "dflt") == "dflt"
    m.clear()
    assert m.values() == [0, 0, 0]


def test_array_native_writes_visible_to_python():
    m = mk("arr", MapType.ARRAY, 4, 8, 2)
    poke(m.lookup(u32(1)), u64(0x0102030405060708))
    assert m[1] == 0x0102030405060708
    m2 = mk("big", MapType.ARRAY, 4, 12, 2)
    poke(m2.lookup(u32(0)), b"abcdefghijkl")
    assert m2[0] == b"abcdefghijkl"                # size 12: bytes


def test_array_update_flags_kernel_side():
    m = mk("arr", MapType.ARRAY, 4, 4, 2)
    assert m.update(u32(0), u32(5), BPF_ANY) == 0
    assert m.update(u32(0), u32(6), BPF_EXIST) == 0           # every element exists
    assert m.update(u32(1), u32(7), BPF_NOEXIST) == -errno.EEXIST
    assert m.update(u32(2), u32(7), BPF_ANY) == -errno.E2BIG   # out of range
    assert m.update(u32(2), u32(7), BPF_NOEXIST) == -errno.E2BIG  # range checked first
    assert m.update(u32(0), u32(7), 3) == -errno.EINVAL          # unknown flags
    assert m.update(u32(0), u32(7), BPF_F_LOCK) == -errno.EINVAL  # no spin lock in the value
    assert m.delete(u32(0)) == -errno.EINVAL
    assert m[0] == 6 and m[1] == 0


def test_array_update_flags_python_side():
    m = mk("arr", MapType.ARRAY, 4, 4, 2)
    assert errno_of(m.update_elem, 0, 1, BPF_NOEXIST) == errno.EEXIST
    assert errno_of(m.update_elem, 5, 1) == errno.E2BIG
    assert errno_of(m.__setitem__, 2, 1) == errno.E2BIG
    assert errno_of(m.delete_elem, 0) == errno.EINVAL
    assert errno_of(m.__delitem__, 0) == errno.EINVAL
    m.update_elem(1, 9, BPF_EXIST)
    assert m.lookup_elem(1) == 9
    assert errno_of(m.lookup_elem, 7) == errno.ENOENT


def test_key_and_value_size_errors_name_the_map():
    m = mk("counts", MapType.ARRAY, 4, 4, 2)
    with pytest.raises(MapError) as info:
        m[b"\0\0\0"]
    assert str(info.value) == "key is 3 bytes, map counts expects 4"
    assert info.value.errno == errno.EINVAL
    with pytest.raises(MapError) as info:
        m[0] = b"12345"
    assert str(info.value) == "value is 5 bytes, map counts expects 4"
    with pytest.raises(MapError) as info:
        m[0] = 1 << 32
    assert "counts" in str(info.value) and info.value.errno == errno.EINVAL
    with pytest.raises(MapError) as info:
        m[0] = {"a": 1}                              # no BTF: cannot encode
    assert "counts" in str(info.value)
    with pytest.raises(MapError):
        m[1.5] = 1


def test_array_elements_for_each():
    m = mk("arr", MapType.ARRAY, 4, 4, 3)
    els = m.elements()
    assert [mem(k, 4) for k, _ in els] == [u32(0), u32(1), u32(2)]
    assert [v for _, v in els] == [m.lookup(u32(i)) for i in range(3)]
    for k, v in els:
        assert covered(m, k, 4, writable=False) and covered(m, v, 4)


def test_array_value_addresses_never_move():
    m = mk("arr", MapType.ARRAY, 4, 8, 4)
    before = [m.lookup(u32(i)) for i in range(4)]
    for i in range(4):
        m[i] = i * 3
        m.update(u32(i), u64(i), BPF_ANY)
    m.clear()
    assert [m.lookup(u32(i)) for i in range(4)] == before


def test_percpu_array():
    m = mk("pc", MapType.PERCPU_ARRAY, 4, 4, 3, ncpus=4)
    assert m.ncpus == 4
    assert m.elem_stride == 8 and m.cpu_stride == 3 * 8
    m[0] = [1, 2, 3, 4]
    assert m[0] == [1, 2, 3, 4]
    m[1] = 7                                          # one value: every cpu
    assert m[1] == [7, 7, 7, 7]
    # program side: this cpu's slot only
    assert m.update(u32(1), u32(9), BPF_ANY, cpu=1) == 0
    assert m[1] == [7, 9, 7, 7]
    a = m.lookup(u32(1), cpu=2)
    assert a == m.value_base + 2 * m.cpu_stride + 1 * 8
    assert mem(a, 4) == u32(7)
    assert m.lookup_percpu(u32(0), 3) == m.value_base + 3 * 24
    assert mem(m.lookup_percpu(u32(0), 3), 4) == u32(4)
    assert m.lookup_percpu(u32(0), 4) == 0            # no such cpu
    assert m.lookup_percpu(u32(3), 0) == 0            # no such index
    assert m.items()[2] == (2, [0, 0, 0, 0])
    with pytest.raises(MapError):
        m[2] = [1, 2, 3]                              # neither one value nor one per cpu
    for cpu in range(4):
        for i in range(3):
            assert covered(m, m.lookup(u32(i), cpu), 4)
    header = HEADER.unpack(mem(m.handle, HEADER_SIZE))
    assert header[7] == 4 and header[9] == 24         # ncpus, cpu_stride


def test_lookup_percpu_on_plain_maps_is_null():
    assert mk("a", MapType.ARRAY, 4, 4, 1).lookup_percpu(u32(0), 0) == 0
    h = mk("h", MapType.HASH, 4, 4, 1)
    h[1] = 1
    assert h.lookup_percpu(u32(1), 0) == 0


# --- hash --------------------------------------------------------------------------------------


def test_hash_kernel_side_flags_and_errnos():
    m = mk("h", MapType.HASH, 4, 4, 2)
    assert m.lookup(u32(1)) == 0
    assert m.update(u32(1), u32(10), BPF_EXIST) == -errno.ENOENT
    assert m.update(u32(1), u32(10), BPF_NOEXIST) == 0
    assert m.update(u32(1), u32(11), BPF_NOEXIST) == -errno.EEXIST
    assert m.update(u32(1), u32(12), BPF_EXIST) == 0
    assert m.update(u32(2), u32(20), BPF_ANY) == 0
    # full: a new key does not fit, but existing keys still update
    assert m.update(u32(3), u32(30), BPF_ANY) == -errno.E2BIG
    assert m.update(u32(3), u32(30), BPF_NOEXIST) == -errno.E2BIG
    assert m.update(u32(3), u32(30), BPF_EXIST) == -errno.ENOENT  # flags checked before room
    assert m.update(u32(1), u32(13), BPF_NOEXIST) == -errno.EEXIST
    assert m.update(u32(1), u32(13), BPF_ANY) == 0
    assert m.update(u32(1), u32(14), 3) == -errno.EINVAL
    assert m.update(u32(1), u32(14), BPF_F_LOCK) == -errno.EINVAL  # no spin lock
    assert mem(m.lookup(u32(1)), 4) == u32(13)
    assert m.delete(u32(9)) == -errno.ENOENT
    assert m.delete(u32(1)) == 0
    assert m.lookup(u32(1)) == 0
    assert m.delete(u32(1)) == -errno.ENOENT
    assert m.update(u32(3), u32(30), BPF_ANY) == 0   # room again
    assert dict(m.items()) == {2: 20, 3: 30}


def test_hash_python_api():
    m = mk("h", MapType.HASH, 4, 8, 3)
    assert len(m) == 0 and m.keys() == []
    m[5] = 50
    m[b"\x07\0\0\0"] = u64(70)
    m[6] = 60
    assert len(m) == 3
    assert m.keys() == [5, 7, 6]                      # insertion order
    assert m.items() == [(5, 50), (7, 70), (6, 60)]
    assert m[7] == 70 and 7 in m and 8 not in m
    with pytest.raises(KeyError):
        m[8]
    with pytest.raises(KeyError):
        del m[8]
    assert errno_of(m.delete_elem, 8) == errno.ENOENT
    assert errno_of(m.lookup_elem, 8) == errno.ENOENT
    assert errno_of(m.__setitem__, 8, 1) == errno.E2BIG     # full
    with pytest.raises(MapError) as info:
        m[8] = 1
    assert "h" in str(info.value) and "full" in str(info.value)
    assert errno_of(m.update_elem, 5, 1, BPF_NOEXIST) == errno.EEXIST
    assert errno_of(m.update_elem, 9, 1, BPF_EXIST) == errno.ENOENT
    del m[7]
    assert m.keys() == [5, 6] and len(m) == 2
    m.clear()
    assert len(m) == 0
    for i in range(3):
        m[i] = i
    assert sorted(m.keys()) == [0, 1, 2]
    assert sorted(iter(m)) == [0, 1, 2]


def test_hash_odd_sizes_read_back_as_bytes():
    m = mk("h6", MapType.HASH, 6, 3, 2)
    m[b"abcdef"] = b"xyz"
    assert m.items() == [(b"abcdef", b"xyz")]
    assert m.key_stride == 8 and m.elem_stride == 8
    a = m.lookup(b"abcdef")
    assert mem(a, 3) == b"xyz" and covered(m, a, 3)


def test_hash_value_address_stable_across_updates():
    m = mk("h", MapType.HASH, 4, 8, 4)
    m[1] = 100
    a = m.lookup(u32(1))
    m[1] = 101
    assert m.update(u32(1), u64(102), BPF_EXIST) == 0
    assert m.lookup(u32(1)) == a
    assert mem(a, 8) == u64(102)
    poke(a, u64(103))                                  # a program writing through the pointer
    assert m[1] == 103


def test_hash_deleted_slot_is_reused_and_stays_valid_memory():
    m = mk("h", MapType.HASH, 4, 8, 2)
    m[1] = 1
    m[2] = 2
    a1, a2 = m.lookup(u32(1)), m.lookup(u32(2))
    assert a1 != a2
    del m[1]
    assert covered(m, a1, 8)                           # memory stays, may be reused
    m[3] = 3
    assert m.lookup(u32(3)) == a1                      # the only free slot
    assert mem(a1, 8) == u64(3)
    assert m.lookup(u32(2)) == a2


def test_hash_elements_and_regions():
    m = mk("h", MapType.HASH, 4, 4, 8)
    for i in range(5):
        m[i * 10] = i
    els = m.elements()
    assert sorted(mem(k, 4) for k, _ in els) == sorted(u32(i * 10) for i in range(5))
    for k, v in els:
        key = mem(k, 4)
        assert v == m.lookup(key)
        assert covered(m, k, 4, writable=False) and covered(m, v, 4)


def test_hash_header_points_at_pools():
    m = mk("h", MapType.HASH, 12, 20, 5)
    f = HEADER.unpack(mem(m.handle, HEADER_SIZE))
    assert f[:5] == (1, 12, 20, 5, 0)
    assert f[5] == 24 and f[6] == m.value_base          # stride round_up(20, 8)
    assert f[10] == m.key_base


def test_hash_concurrent_inserts():
    m = mk("h", MapType.HASH, 4, 8, 400)

    def work(base: int) -> None:
        for i in range(100):
            m[base + i] = base + i

    threads = [threading.Thread(target=work, args=(t * 1000,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(m) == 400
    addrs = {m.lookup(u32(t * 1000 + i)) for t in range(4) for i in range(100)}
    assert len(addrs) == 400 and 0 not in addrs
    assert all(m[t * 1000 + i] == t * 1000 + i for t in range(4) for i in range(100))


def test_percpu_hash():
    m = mk("ph", MapType.PERCPU_HASH, 4, 4, 4, ncpus=2)
    m[1] = [1, 2]
    assert m[1] == [1, 2]
    m[2] = 5
    assert m[2] == [5, 5]
    # a program creating an element sets its cpu's slot and zeroes the others (pcpu_init_value)
    assert m.update(u32(3), u32(7), BPF_ANY, cpu=1) == 0
    assert m[3] == [0, 7]
    assert m.update(u32(3), u32(9), BPF_EXIST, cpu=0) == 0
    assert m[3] == [9, 7]
    assert mem(m.lookup(u32(3), cpu=1), 4) == u32(7)
    assert mem(m.lookup_percpu(u32(3), 0), 4) == u32(9)
    assert m.lookup_percpu(u32(3), 2) == 0
    assert m.lookup(u32(3), cpu=1) - m.lookup(u32(3), cpu=0) == 8
    assert m.update(u32(3), u32(1), BPF_F_LOCK) == -errno.EINVAL
    assert dict(m.items()) == {1: [1, 2], 2: [5, 5], 3: [9, 7]}
    for key in (1, 2, 3):
        for cpu in range(2):
            assert covered(m, m.lookup(u32(key), cpu), 4)


# --- LRU ---------------------------------------------------------------------------------------


def test_lru_evicts_least_recently_used():
    m = mk("lru", MapType.LRU_HASH, 4, 4, 3)
    for k in (1, 2, 3):                        # recency, oldest first: 1 2 3
        assert m.update(u32(k), u32(k * 10), BPF_ANY) == 0
    assert m.lookup(u32(1)) != 0               # a program lookup is a use: 2 3 1
    a2 = m.lookup(u32(2))                      # ... and so is this one: 3 1 2
    assert m.update(u32(4), u32(40), BPF_ANY) == 0   # full: evicts 3 -> 1 2 4
    assert sorted(m.keys()) == [1, 2, 4]
    assert m[2] == 20                          # Python reads are not uses: still 1 2 4
    m[5] = 50                                  # evicts 1 -> 2 4 5
    assert sorted(m.keys()) == [2, 4, 5]
    m[2] = 21                                  # a Python write is a use: 4 5 2
    m[6] = 60                                  # evicts 4 -> 5 2 6
    assert sorted(m.keys()) == [2, 5, 6]
    assert m.lookup(u32(2)) == a2              # updated in place


def test_lru_evicted_slot_is_reused():
    m = mk("lru", MapType.LRU_HASH, 4, 8, 2)
    m[1] = 1
    m[2] = 2
    a1 = m.lookup(u32(1))
    m.lookup(u32(2))                            # order: 1 2 (2 used last)
    m[3] = 3                                    # evicts 1
    assert 1 not in m
    assert m.lookup(u32(3)) == a1


def test_lru_flags():
    m = mk("lru", MapType.LRU_HASH, 4, 4, 2)
    assert m.update(u32(1), u32(1), BPF_EXIST) == -errno.ENOENT
    assert m.update(u32(1), u32(1), BPF_NOEXIST) == 0
    assert m.update(u32(1), u32(2), BPF_NOEXIST) == -errno.EEXIST
    assert m.update(u32(1), u32(2), BPF_F_LOCK) == -errno.EINVAL
    m[2] = 2
    # updating an existing key of a full LRU map evicts nothing
    assert m.update(u32(1), u32(5), BPF_ANY) == 0
    assert sorted(m.items()) == [(1, 5), (2, 2)]
    assert m.delete(u32(2)) == 0 and m.delete(u32(2)) == -errno.ENOENT


def test_lru_percpu():
    m = mk("lp", MapType.LRU_PERCPU_HASH, 4, 8, 2, ncpus=3)
    m[1] = [1, 2, 3]
    m[2] = 4
    m.lookup(u32(1))                            # order: 2 1
    assert m.update(u32(3), u64(9), BPF_ANY, cpu=2) == 0   # evicts 2
    assert dict(m.items()) == {1: [1, 2, 3], 3: [0, 0, 9]}


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


# --- queue and stack -----------------------------------------------------------------------------


def _pop(m, how="pop"):
    out = ctypes.create_string_buffer(b"\xff" * m.value_size, m.value_size)
    err = getattr(m, how)(ctypes.addressof(out))
    return err, out.raw


def test_queue_fifo_and_overwrite():
    q = mk("q", MapType.QUEUE, 0, 4, 3)
    for v in (1, 2, 3):
        assert q.push(u32(v), BPF_ANY) == 0
    assert len(q) == 3
    assert q.push(u32(4), BPF_ANY) == -errno.E2BIG
    assert q.push(u32(4), BPF_EXIST) == 0          # drops the oldest (1)
    assert q.values() == [2, 3, 4]
    assert _pop(q, "peek") == (0, u32(2))
    assert _pop(q) == (0, u32(2))
    assert _pop(q) == (0, u32(3))
    assert _pop(q) == (0, u32(4))
    assert _pop(q) == (-errno.ENOENT, b"\0\0\0\0")  # empty: output zeroed
    assert _pop(q, "peek") == (-errno.ENOENT, b"\0\0\0\0")
    assert len(q) == 0


def test_stack_lifo_and_overwrite():
    s = mk("s", MapType.STACK, 0, 4, 3)
    for v in (1, 2, 3):
        assert s.push(u32(v), 0) == 0
    assert _pop(s) == (0, u32(3))
    assert s.push(u32(4), 0) == 0
    assert s.push(u32(5), 0) == -errno.E2BIG       # holds 1 2 4
    assert s.push(u32(5), BPF_EXIST) == 0          # drops the oldest (1): 2 4 5
    assert s.values() == [5, 4, 2]                 # pop order
    assert _pop(s, "peek") == (0, u32(5))
    assert [_pop(s)[1] for _ in range(3)] == [u32(5), u32(4), u32(2)]
    assert _pop(s) == (-errno.ENOENT, b"\0\0\0\0")


def test_queue_stack_flags_and_other_ops():
    for t in (MapType.QUEUE, MapType.STACK):
        m = mk("qs", t, 0, 8, 2)
        assert m.push(u64(1), BPF_NOEXIST) == -errno.EINVAL
        assert m.push(u64(1), 3) == -errno.EINVAL
        assert m.push(u64(1), 4) == -errno.EINVAL
        assert m.lookup(b"") == 0
        assert m.update(b"", u64(1), 0) == -errno.EINVAL
        assert m.delete(b"") == -errno.EINVAL
        assert errno_of(m.keys) == errno.EOPNOTSUPP
        assert errno_of(m.__getitem__, 0) == errno.EOPNOTSUPP
        assert m.regions()[0].start == m.handle and len(m.regions()) == 1


def test_queue_wraps_around_its_ring():
    q = mk("q", MapType.QUEUE, 0, 3, 4)            # odd value size: not rounded
    expected = []
    n = 0
    for round_ in range(10):                     # 3 in, 2 out while there is room
        for _ in range(3 if len(expected) <= 1 else 2):
            assert q.push(bytes([n, n + 1, n + 2])) == 0
            expected.append(bytes([n, n + 1, n + 2]))
            n += 1
        assert len(q) == len(expected)
        for _ in range(2):
            assert _pop(q) == (0, expected.pop(0))
    assert n > 2 * 5                              # went round the 5-slot ring twice
    assert [_pop(q)[1] for _ in range(len(expected))] == expected
    assert len(q) == 0


def test_queue_python_api():
    q = mk("q", MapType.QUEUE, 0, 2, 2)
    q.push_elem(1)
    q.push_elem(b"\x02\x00")
    assert errno_of(q.push_elem, 3) == errno.E2BIG
    q.push_elem(3, BPF_EXIST)
    assert list(q) == [2, 3] and q.dump() == [(None, 2), (None, 3)]
    assert q.peek_elem() == 2 and q.pop_elem() == 2 and q.pop_elem() == 3
    with pytest.raises(MapError) as info:
        q.pop_elem()
    assert info.value.errno == errno.ENOENT and "q" in str(info.value)
    assert errno_of(q.peek_elem) == errno.ENOENT
    assert errno_of(q.push_elem, 1, BPF_NOEXIST) == errno.EINVAL
    with pytest.raises(MapError):
        q.push_elem(b"\0\0\0")
    s = mk("s", MapType.STACK, 0, 2, 3)
    for v in (1, 2, 3):
        s.push_elem(v)
    s.clear()
    assert len(s) == 0 and s.values() == []


# --- ring buffer ---------------------------------------------------------------------------------


def rec_hdr(rb: RingBuf, pos: int) -> tuple[int, int]:
    return struct.unpack("<II", mem(rb.data_base + (pos & rb.mask), 8))


def collect(rb: RingBuf, **kw) -> tuple[int, list[bytes]]:
    got: list[bytes] = []
    n = rb.poll(got.append, **kw)
    return n, got


def test_ringbuf_reserve_layout_and_positions():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    assert rb.query(0) == 0 and rb.query(1) == PAGE and rb.query(2) == 0 and rb.query(3) == 0
    assert rb.query(99) == 0
    a = rb.reserve(10)
    assert a == rb.data_base + 8                 # after the 8-byte header
    assert rec_hdr(rb, 0) == (10 | BUSY, 0)
    assert rb.query(3) == 24                     # round_up(10 + 8, 8)
    assert rb.query(0) == 24
    b = rb.reserve(5)
    assert b == rb.data_base + 24 + 8
    assert rb.query(3) == 40                     # + round_up(5 + 8, 8)
    header = HEADER.unpack(mem(rb.handle, HEADER_SIZE))
    assert header[6] == rb.data_base and header[9] == 0 and header[10] == 40
    assert ringbuf_from_record(a) is rb and ringbuf_from_record(b) is rb
    assert ringbuf_from_record(rb.handle) is None
    assert covered(rb, a, 10) and covered(rb, b, 5)
    rb.discard(a)
    rb.discard(b)


def test_ringbuf_commit_order_and_discard():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    a = rb.reserve(4)
    b = rb.reserve(4)
    poke(a, b"AAAA")
    poke(b, b"BBBB")
    assert rb.submit(b) == 0
    assert rec_hdr(rb, 16) == (4, 0)             # BUSY cleared
    assert collect(rb) == (0, [])                # a still reserved: nothing passes it
    assert rb.query(2) == 0
    assert rb.submit(a) == 0
    assert collect(rb) == (2, [b"AAAA", b"BBBB"])
    assert rb.query(2) == rb.query(3) == 32 and rb.query(0) == 0
    c = rb.reserve(3)
    poke(c, b"CCC")
    d = rb.reserve(2)
    poke(d, b"DD")
    assert rb.discard(c) == 0
    assert rec_hdr(rb, 32) == (3 | DISCARD, 0)
    rb.submit(d)
    assert collect(rb) == (1, [b"DD"])           # discarded record skipped, still consumed
    assert rb.query(2) == rb.query(3) == 32 + 16 + 16
    assert rb.submit(d) == -errno.EINVAL         # already committed: left alone
    assert rec_hdr(rb, 48) == (2, 0)


def test_ringbuf_commit_wants_the_start_of_a_reserved_record():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    a = rb.reserve(16)
    assert rb.submit(a + 8) == -errno.EINVAL      # inside the record: refused, nothing changed
    assert rb.discard(a - 8) == -errno.EINVAL     # its header
    assert ringbuf_from_record(a + 8) is None and ringbuf_from_record(a) is rb
    assert rec_hdr(rb, 0) == (16 | BUSY, 0)
    assert rb.discard(a) == 0
    assert ringbuf_from_record(a) is None         # committed: no longer a record to commit
    assert rb.discard(a) == rb.submit(a) == -errno.EINVAL
    assert rec_hdr(rb, 0) == (16 | DISCARD, 0)


def test_ringbuf_capacity_rules():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    assert rb.reserve(PAGE) == 0                  # record larger than the ring
    assert rb.reserve(PAGE - 8) == 0             # len 4096: at most size - 1 bytes in flight
    assert rb.reserve(1, flags=1) == 0           # reserve takes no flags
    a = rb.reserve(PAGE - 16)                    # len 4088 fits
    assert a != 0
    assert rb.reserve(0) == 0                    # 4088 + 8 = 4096 > 4095
    rb.submit(a)
    assert rb.output(b"x") == -errno.EAGAIN
    assert collect(rb)[0] == 1
    assert rb.output(b"x", 4) == -errno.EINVAL
    assert rb.output(b"x", RB_NO_WAKEUP) == 0
    assert rb.output(b"y", RB_FORCE_WAKEUP) == 0
    assert collect(rb) == (2, [b"x", b"y"])


def test_ringbuf_wraparound_is_contiguous():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    recs = [bytes([i]) * 1000 for i in range(1, 6)]
    for r in recs[:4]:                            # each takes round_up(1008, 8) = 1008
        assert rb.output(r) == 0
    assert rb.query(3) == 4032
    assert rb.output(recs[4]) == -errno.EAGAIN   # 5040 - 0 > 4095
    assert collect(rb) == (4, recs[:4])
    assert rb.query(2) == 4032
    # the header sits at 4032; the data runs 4040..5040, i.e. wraps to offset 944
    addr = rb.reserve(1000)
    assert addr == rb.data_base + 4040
    poke(addr, recs[4])
    assert mem(rb.data_base, 944) == recs[4][56:]  # the second mapping aliases the first
    rb.submit(addr)
    assert collect(rb) == (1, [recs[4]])
    assert rb.query(2) == rb.query(3) == 5040    # positions are not masked
    assert covered(rb, addr, 1000)
    assert rb.output(b"z" * 8) == 0
    assert rec_hdr(rb, 5040) == (8, 0)           # header at offset 5040 & 4095 = 944
    assert collect(rb) == (1, [b"z" * 8])


def test_ringbuf_pg_off_is_page_index():
    rb = mk("rb", MapType.RINGBUF, 0, 0, 2 * PAGE)
    assert rb.output(b"\0" * (PAGE - 8)) == 0    # len 4096: next record at offset 4096
    assert rb.output(b"1") == 0
    assert rec_hdr(rb, 0) == (PAGE - 8, 0)
    assert rec_hdr(rb, PAGE) == (1, 1)


def test_ringbuf_poll_callback_contract():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    for i in range(5):
        rb.output(bytes([i]) * (i + 1))
    seen = []

    def stop_at_second(sample):
        seen.append(sample)
        return -7 if len(seen) == 2 else 0

    assert rb.poll(stop_at_second) == -7
    assert seen == [b"\0", b"\1\1"]
    n, got = collect(rb, max_records=2)
    assert (n, got) == (2, [b"\2" * 3, b"\3" * 4])
    assert rb.dump() == [(rb.query(2), b"\4" * 5)]   # dump does not consume
    assert collect(rb) == (1, [b"\4" * 5])
    assert rb.dump() == []
    assert collect(rb) == (0, [])


def test_ringbuf_poll_waits_for_submit():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    addr = rb.reserve(3)

    def later():
        time.sleep(0.05)
        poke(addr, b"abc")
        rb.submit(addr)

    t = threading.Thread(target=later)
    t.start()
    start = time.monotonic()
    assert collect(rb, timeout=5.0) == (1, [b"abc"])
    assert time.monotonic() - start < 4.0
    t.join()
    assert collect(rb, timeout=0.01) == (0, [])


def test_ringbuf_has_no_dict_api():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    assert errno_of(rb.__getitem__, 0) == errno.EOPNOTSUPP
    assert errno_of(rb.__setitem__, 0, 0) == errno.EOPNOTSUPP
    assert errno_of(rb.keys) == errno.EOPNOTSUPP
    assert rb.lookup(b"") == 0
    assert rb.update(b"", b"", 0) == -errno.EOPNOTSUPP
    assert rb.delete(b"") == -errno.EOPNOTSUPP
    assert bool(rb)


# --- program array -------------------------------------------------------------------------------


class FakeProg:
    def __init__(self, name):
        self.name = name


def test_prog_array():
    pa = mk("jmp", MapType.PROG_ARRAY, 4, 4, 4)
    p0, p1 = FakeProg("p0"), FakeProg("p1")
    assert pa.program(0) is None and len(pa) == 0
    pa.set_program(0, p0)
    assert pa.program(0) is p0
    assert pa.program(4) is None and pa.program(-1) is None
    assert errno_of(pa.set_program, 4, p1) == errno.E2BIG
    pa[1] = p1
    assert pa[1] is p1 and pa.keys() == [0, 1] and len(pa) == 2 and 1 in pa and 2 not in pa
    assert pa.items() == [(0, p0), (1, p1)]
    with pytest.raises(KeyError):
        pa[2]
    del pa[0]
    assert pa.program(0) is None
    with pytest.raises(KeyError):
        del pa[0]
    assert errno_of(pa.delete_elem, 0) == errno.ENOENT
    assert errno_of(pa.delete_elem, 9) == errno.E2BIG
    assert errno_of(pa.update_elem, 2, p0, BPF_NOEXIST) == errno.EINVAL   # fd arrays: ANY only
    assert errno_of(pa.update_elem, 4, p0) == errno.E2BIG
    assert errno_of(pa.__setitem__, 2, 5) == errno.EINVAL
    pa[1] = None
    assert pa.program(1) is None
    assert pa.lookup(u32(0)) == 0                  # programs only tail-call through it
    pa.set_program(3, p0)
    pa.clear()
    assert len(pa) == 0


# --- maps of maps --------------------------------------------------------------------------------


def test_array_of_maps():
    tmpl = MapSpec("inner", MapType.ARRAY, 4, 8, 2)
    outer = create_map(MapSpec("outer", MapType.ARRAY_OF_MAPS, 4, 4, 3, inner=tmpl))
    i1 = create_map(MapSpec("i1", MapType.ARRAY, 4, 8, 2))
    i2 = create_map(MapSpec("i2", MapType.ARRAY, 4, 8, 2))
    assert outer.lookup(u32(0)) == 0
    outer[0] = i1
    outer[1] = i2.handle                           # a handle works like the kernel's fd
    assert outer.lookup(u32(0)) == i1.handle       # the inner map itself, not a slot address
    assert map_from_handle(outer.lookup(u32(1))) is i2
    assert outer.lookup(u32(2)) == 0 and outer.lookup(u32(3)) == 0
    assert mem(outer.value_base, 24) == u64(i1.handle) + u64(i2.handle) + u64(0)
    assert outer[0] is i1 and outer.keys() == [0, 1] and len(outer) == 2
    assert outer.dump() == [(0, "i1"), (1, "i2")]
    i1[1] = 5
    inner_addr = map_from_handle(outer.lookup(u32(0))).lookup(u32(1))
    assert mem(inner_addr, 8) == u64(5)
    assert covered(outer, inner_addr, 8)           # regions include the inner maps'
    assert covered(outer, outer.value_base, 24, writable=False)
    assert not covered(outer, outer.value_base, 8, writable=True)
    del outer[0]
    assert outer.lookup(u32(0)) == 0 and 0 not in outer
    # the template must match (bpf_map_meta_equal)
    wrong = create_map(MapSpec("w", MapType.ARRAY, 4, 4, 2))
    assert errno_of(outer.__setitem__, 2, wrong) == errno.EINVAL
    bigger = create_map(MapSpec("b", MapType.ARRAY, 4, 8, 5))
    assert errno_of(outer.__setitem__, 2, bigger) == errno.EINVAL
    assert errno_of(outer.__setitem__, 2, 0xDEAD0) == errno.EBADF
    assert errno_of(outer.__setitem__, 2, "map") == errno.EINVAL
    assert errno_of(outer.update_elem, 2, i1, BPF_NOEXIST) == errno.EINVAL
    assert errno_of(outer.__setitem__, 3, i1) == errno.E2BIG
    assert outer.update(u32(0), u64(i1.handle), 0) == -errno.EOPNOTSUPP


def test_inner_map_flag_allows_other_sizes():
    tmpl = MapSpec("inner", MapType.HASH, 4, 4, 2, BPF_F_INNER_MAP)
    with pytest.raises(MapError):   # INNER_MAP is not a hash flag: the template itself is wrong
        create_map(tmpl)
    tmpl = MapSpec("inner", MapType.ARRAY, 4, 4, 2, BPF_F_INNER_MAP)
    outer = create_map(MapSpec("o", MapType.ARRAY_OF_MAPS, 4, 4, 1, inner=tmpl))
    outer[0] = create_map(MapSpec("big", MapType.ARRAY, 4, 4, 100, BPF_F_INNER_MAP))
    assert outer[0].max_entries == 100


def test_hash_of_maps():
    tmpl = MapSpec("inner", MapType.HASH, 4, 4, 8)
    outer = create_map(MapSpec("hom", MapType.HASH_OF_MAPS, 8, 4, 2, inner=tmpl))
    a = create_map(MapSpec("a", MapType.HASH, 4, 4, 8))
    b = create_map(MapSpec("b", MapType.HASH, 4, 4, 8))
    c = create_map(MapSpec("c", MapType.HASH, 4, 4, 8))
    outer[b"key-a\0\0\0"] = a
    outer.update_elem(2, b, BPF_NOEXIST)
    assert outer.lookup(b"key-a\0\0\0") == a.handle
    assert outer.lookup(u64(2)) == b.handle
    assert outer.lookup(u64(3)) == 0
    assert outer[2] is b and len(outer) == 2
    assert errno_of(outer.update_elem, 2, c, BPF_NOEXIST) == errno.EEXIST
    assert errno_of(outer.update_elem, 3, c, BPF_EXIST) == errno.ENOENT
    assert errno_of(outer.__setitem__, 3, c) == errno.E2BIG
    outer[2] = c                                   # replace
    assert outer.lookup(u64(2)) == c.handle and outer[2] is c
    del outer[2]
    assert outer.lookup(u64(2)) == 0
    with pytest.raises(KeyError):
        outer[2]
    outer[3] = c
    a[1] = 1
    assert covered(outer, a.lookup(u32(1)), 4)
    assert sorted(name for _, name in outer.dump()) == ["a", "c"]
    assert errno_of(outer.__setitem__, 4, create_map(MapSpec("x", MapType.ARRAY, 4, 4, 8))) \
        == errno.EINVAL
    outer.clear()
    assert len(outer) == 0 and outer.lookup(b"key-a\0\0\0") == 0


# --- every value address is inside a region ------------------------------------------------------


@pytest.mark.parametrize("t, ncpus", [
    (MapType.ARRAY, 1), (MapType.PERCPU_ARRAY, 3), (MapType.HASH, 1), (MapType.PERCPU_HASH, 3),
    (MapType.LRU_HASH, 1), (MapType.LRU_PERCPU_HASH, 2),
])
def test_regions_cover_every_value(t, ncpus):
    m = mk("cov", t, 4, 20, 16, ncpus=ncpus)
    for i in range(16):
        assert m.update(u32(i), bytes(20), BPF_ANY, cpu=i % ncpus) == 0
    for i in range(16):
        for cpu in range(ncpus):
            a = m.lookup(u32(i), cpu)
            assert a != 0 and a % 8 == 0
            assert covered(m, a, 20)
            r = find_region(a, 20)
            assert r is not None and r.name == "map cov values"
    assert covered(m, m.handle, HEADER_SIZE, writable=False)

"""BPF maps in native memory (bpfjit.runtime.maps): creation and its errors, the map header,
handles, the registry and the memory regions a program may touch.

Expected values are worked out by hand from the kernel's semantics (kernel/bpf/arraymap.c,
hashtab.c, queue_stack_maps.c, ringbuf.c, libbpf's ringbuf consumer) and docs/semantics.md#maps,
#spin-locks and #helpers, never copied from the implementation's output. Where bpfjit deliberately
differs (exact LRU, in-place hash updates) the tests follow the documented bpfjit rule.
"""
from __future__ import annotations

import errno
import gc

import pytest

from bpfjit.errors import BPFError, MapError
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import (
    BPF_ANY, BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_F_RDONLY, BPF_F_RDONLY_PROG,
    BPF_F_WRONLY, HEADER, HEADER_SIZE, ArrayMap, ArrayOfMaps, HashMap, HashOfMaps, LruHashMap,
    LruPercpuHashMap, MapSpec, PercpuArrayMap, PercpuHashMap, ProgArray, QueueMap, RingBuf, StackMap,
    create_map, find_region, map_from_handle,
)

from map_cases import PAGE, covered, errno_of, mem, mk, u32


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
        mk("cgroups", MapType.CGROUP_ARRAY, 4, 4, 4)
    assert "cgroups" in str(info.value) and "CGROUP_ARRAY" in str(info.value)
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


def test_encode_entry_gives_the_bytes_an_update_hands_the_kernel():
    array = create_map(MapSpec("a", MapType.ARRAY, 4, 8, 4))
    assert array.encode_entry(2, 7) == ((2).to_bytes(4, "little"), (7).to_bytes(8, "little"))
    per_cpu = create_map(MapSpec("p", MapType.PERCPU_ARRAY, 4, 8, 4), ncpus=2)
    with pytest.raises(MapError, match="one per CPU"):
        per_cpu.encode_entry(0, [1, 2])

"""BPF maps in native memory (bpfjit.runtime.maps): array and per-CPU array maps.

Expected values are worked out by hand from the kernel's semantics (kernel/bpf/arraymap.c,
hashtab.c, queue_stack_maps.c, ringbuf.c, libbpf's ringbuf consumer) and docs/semantics.md#maps,
#spin-locks and #helpers, never copied from the implementation's output. Where bpfjit deliberately
differs (exact LRU, in-place hash updates) the tests follow the documented bpfjit rule.
"""
from __future__ import annotations

import errno

import pytest

from bpfjit.errors import MapError
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, HEADER, HEADER_SIZE

from map_cases import covered, errno_of, mem, mk, poke, u32, u64


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

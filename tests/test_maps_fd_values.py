"""BPF maps in native memory (bpfjit.runtime.maps): maps whose values name other objects: program
arrays and maps of maps.

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
from bpfjit.runtime.maps import BPF_EXIST, BPF_F_INNER_MAP, BPF_NOEXIST, MapSpec, create_map, map_from_handle

from map_cases import covered, errno_of, mem, mk, u32, u64


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

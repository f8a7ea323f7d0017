"""Shared helpers of the map tests (tests/test_maps_*.py): map creation, key and value packing, raw
memory access and region checks.
"""
from __future__ import annotations

import ctypes

import pytest

from bpfjit.errors import MapError
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import Map, MapSpec, create_map

PAGE = 4096


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

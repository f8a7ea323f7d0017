"""Array maps: BPF_MAP_TYPE_ARRAY and BPF_MAP_TYPE_PERCPU_ARRAY."""
from __future__ import annotations

import array
import ctypes
import errno as E
from typing import Any

from bpfjit.errors import MapError

from ..map_types import MapType
from ..memory import Region
from .base import Map
from .uapi import (ARRAY_CREATE_FLAG_MASK, BPF_ANY, BPF_EXIST, BPF_F_INNER_MAP, BPF_F_LOCK, BPF_F_MMAPABLE,
                   BPF_F_RDONLY_PROG, BPF_NOEXIST, KMALLOC_MAX_SIZE, PCPU_MIN_UNIT_SIZE, round_up)


class ArrayMap(Map):
    """BPF_MAP_TYPE_ARRAY: ``max_entries`` preallocated values, value ``i`` at
    ``value_base + i * elem_stride`` with ``elem_stride = round_up(value_size, 8)`` (as the
    kernel lays them out, so the JIT can inline lookups as address arithmetic). Every index
    always exists; delete is -EINVAL."""

    type_name = "array"
    indexed = True

    def _validate(self) -> None:
        if self.value_size == 0:
            raise self._err("value_size must be at least 1", E.EINVAL)
        self._check_flags(ARRAY_CREATE_FLAG_MASK)
        if self.map_type != MapType.ARRAY and self.map_flags & (BPF_F_MMAPABLE | BPF_F_INNER_MAP):
            raise self._err("BPF_F_MMAPABLE and BPF_F_INNER_MAP are only for plain arrays",
                            E.EINVAL)
        if self.value_size > KMALLOC_MAX_SIZE:
            raise self._err(f"value_size {self.value_size} is larger than {KMALLOC_MAX_SIZE}",
                            E.E2BIG)
        if self.percpu and round_up(self.value_size, 8) > PCPU_MIN_UNIT_SIZE:
            raise self._err(f"per-cpu value_size {self.value_size} is larger than "
                            f"{PCPU_MIN_UNIT_SIZE}", E.E2BIG)

    def _allocate(self) -> None:
        self.elem_stride = round_up(self.value_size, 8)
        self.cpu_stride = self.elem_stride * self.max_entries
        self._values = self._alloc(self.cpu_stride * self._nslots, "the values", self)
        self.value_base = self._values.address
        keys = self._alloc(4 * self.max_entries, "the key table", self)
        ctypes.memmove(keys.address, array.array("I", range(self.max_entries)).tobytes(),
                       4 * self.max_entries)
        self._keys = keys
        self.key_base = keys.address

    def _storage_regions(self) -> list[Region]:
        writable = not self.map_flags & BPF_F_RDONLY_PROG
        return [Region(self.value_base, self.cpu_stride * self._nslots, writable,
                       f"map {self.name} values"),
                Region(self.key_base, 4 * self.max_entries, False, f"map {self.name} keys")]

    def _value_pool(self) -> tuple[int, int, int]:
        return self.value_base, self.cpu_stride * self._nslots, self.elem_stride

    def value_address(self, index: int, cpu: int = 0) -> int:
        """Address of value ``index`` (on ``cpu`` for per-cpu arrays)."""
        if not 0 <= index < self.max_entries or not 0 <= cpu < self._nslots:
            raise self._err(f"index {index} / cpu {cpu} out of range", E.E2BIG)
        return self.value_base + cpu * self.cpu_stride + index * self.elem_stride

    @staticmethod
    def _index(key: bytes) -> int:
        return int.from_bytes(key[:4], "little")

    # kernel side

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        index = self._index(key)
        if index >= self.max_entries:
            return 0
        if self.percpu:
            if not 0 <= cpu < self._nslots:
                return 0
            return self.value_base + cpu * self.cpu_stride + index * self.elem_stride
        return self.value_base + index * self.elem_stride

    def lookup_percpu(self, key: bytes, cpu: int) -> int:
        return self.lookup(key, cpu) if self.percpu else 0

    def _check_update(self, index: int, flags: int) -> int:
        if flags & ~BPF_F_LOCK > BPF_EXIST:
            return -E.EINVAL
        if index >= self.max_entries:
            return -E.E2BIG
        if flags & BPF_NOEXIST:
            return -E.EEXIST
        if flags & BPF_F_LOCK and self.lock_offset is None:
            return -E.EINVAL
        return 0

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        index = self._index(key)
        err = self._check_update(index, flags)
        if err:
            return err
        if not 0 <= cpu < self._nslots:
            cpu = 0
        self._write_value(self.value_base + cpu * self.cpu_stride + index * self.elem_stride,
                          self._fit(value), False)
        return 0

    def delete(self, key: bytes) -> int:
        return -E.EINVAL

    def elements(self, cpu: int = 0) -> list[tuple[int, int]]:
        cpu = cpu if 0 <= cpu < self._nslots else 0
        base = self.value_base + cpu * self.cpu_stride
        return [(self.key_base + 4 * i, base + i * self.elem_stride)
                for i in range(self.max_entries)]

    # python side

    def _raw_keys(self) -> list[bytes]:
        return [i.to_bytes(4, "little") for i in range(self.max_entries)]

    def _raw_read(self, key: bytes) -> bytes | list[bytes] | None:
        index = self._index(key)
        if index >= self.max_entries:
            return None
        if self.percpu:
            return [self._read_value(self.value_base + c * self.cpu_stride
                                     + index * self.elem_stride) for c in range(self._nslots)]
        return self._read_value(self.value_base + index * self.elem_stride)

    def _raw_write(self, key: bytes, data: bytes | list[bytes], flags: int) -> int:
        index = self._index(key)
        err = self._check_update(index, flags)
        if err:
            return err
        if isinstance(data, list):
            for c, d in enumerate(data):
                self._write_value(self.value_base + c * self.cpu_stride
                                  + index * self.elem_stride, d, False)
        else:
            self._write_value(self.value_base + index * self.elem_stride, data, False)
        return 0

    def _raw_delete(self, key: bytes) -> int:
        return -E.EINVAL

    def _raw_clear(self) -> None:
        if self.lock_offset is None and self.kptrs is None:
            ctypes.memset(self.value_base, 0, self.cpu_stride * self._nslots)
            return
        for c in range(self._nslots):
            for i in range(self.max_entries):
                self._zero_value(self.value_base + c * self.cpu_stride + i * self.elem_stride)

    def __len__(self) -> int:
        return self.max_entries

    def __contains__(self, key: Any) -> bool:
        try:
            return self._index(self._encode_key(key)) < self.max_entries
        except MapError:
            return False


class PercpuArrayMap(ArrayMap):
    """BPF_MAP_TYPE_PERCPU_ARRAY: one value slot per cpu; cpu ``c``'s value ``i`` is at
    ``value_base + c * cpu_stride + i * elem_stride``. Python reads give a list per key."""

    type_name = "percpu_array"
    percpu = True

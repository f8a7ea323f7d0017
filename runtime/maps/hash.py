"""Hash maps: BPF_MAP_TYPE_HASH, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH."""
from __future__ import annotations

import ctypes
import errno as E
from typing import Callable

from ..memory import Region
from .base import Map
from .hash_table import HashTable
from .uapi import (BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG,
                   BPF_NOEXIST, HTAB_CREATE_FLAG_MASK, KMALLOC_MAX_SIZE, MAX_BPF_STACK, PCPU_MIN_UNIT_SIZE,
                   round_up)


CACHE_LINE = 64


class HashMap(Map):
    """BPF_MAP_TYPE_HASH: a preallocated pool of ``max_entries`` elements. Keys live in a key
    pool (``key_base + slot * key_stride``), values in a value pool (``value_base + slot *
    elem_stride``; per-cpu: ``value_base + (slot * ncpus + cpu) * elem_stride``). A value's
    address never changes while its key is present; a deleted slot is reused later."""

    type_name = "hash"
    lru = False

    def _validate(self) -> None:
        if self.key_size == 0 or self.value_size == 0 or self.max_entries == 0:
            raise self._err("key_size, value_size and max_entries must all be at least 1",
                            E.EINVAL)
        self._check_flags(HTAB_CREATE_FLAG_MASK)
        if self.map_flags & BPF_F_NO_COMMON_LRU and not self.lru:
            raise self._err("BPF_F_NO_COMMON_LRU is only for LRU maps", E.EINVAL)
        if self.lru and self.map_flags & BPF_F_NO_PREALLOC:
            raise self._err("LRU maps are always preallocated (BPF_F_NO_PREALLOC)",
                            E.EOPNOTSUPP)
        if self.key_size > MAX_BPF_STACK:
            raise self._err(f"key_size {self.key_size} is larger than the BPF stack "
                            f"({MAX_BPF_STACK})", E.E2BIG)
        if self.value_size >= KMALLOC_MAX_SIZE - MAX_BPF_STACK - 48:
            raise self._err(f"value_size {self.value_size} is too large", E.E2BIG)
        if self.percpu and round_up(self.value_size, 8) > PCPU_MIN_UNIT_SIZE:
            raise self._err(f"per-cpu value_size {self.value_size} is larger than "
                            f"{PCPU_MIN_UNIT_SIZE}", E.E2BIG)

    def _allocate(self) -> None:
        self.key_stride = round_up(self.key_size, 8)
        vsize = self._storage_value_size or self.value_size
        # The kernel takes each element from a per-CPU free list, so CPUs updating their own
        # elements do not write one cache line; in a dense pool neighbouring values would share
        # lines, and threads counting their own flows fought over them (two threads made half
        # the runs of one). Each value, and each CPU's copy of it, starts a line of its own:
        # about the kernel's own cost per element, whose header alone is 48 bytes.
        self.elem_stride = round_up(vsize, CACHE_LINE)
        self._keys = self._alloc(self.key_stride * self.max_entries, "the key pool", self)
        self._values = self._alloc(self.elem_stride * self._nslots * self.max_entries + CACHE_LINE,
                                   "the value pool", self)
        self.key_base = self._keys.address
        self.value_base = round_up(self._values.address, CACHE_LINE)
        # Every piece of bookkeeping is native, shared with the native helpers (hash_table.py).
        self.chains = HashTable(self.native, self.max_entries, self.key_base, self.key_stride, self.key_size)

    def _storage_regions(self) -> list[Region]:
        writable = not self.map_flags & BPF_F_RDONLY_PROG
        return [Region(self.value_base, self.elem_stride * self._nslots * self.max_entries,
                       writable, f"map {self.name} values"),
                Region(self.key_base, self.key_stride * self.max_entries, False,
                       f"map {self.name} keys")]

    def _value_pool(self) -> tuple[int, int, int]:
        return self.value_base, self.elem_stride * self._nslots * self.max_entries, self.elem_stride

    def _value_addr(self, slot: int, cpu: int = 0) -> int:
        return self.value_base + (slot * self._nslots + cpu) * self.elem_stride

    def _slot(self, key: bytes) -> int | None:
        with self._lock:
            return self.chains.find(key)

    # kernel side

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        if type(key) is not bytes:
            key = bytes(key)
        with self._lock:
            slot = self.chains.find(key)
            if slot is None:
                return 0
            if self.lru:
                self.chains.touch(slot)
        if self.percpu:
            if not 0 <= cpu < self._nslots:
                return 0
            return self._value_addr(slot, cpu)
        return self._value_addr(slot)

    def lookup_percpu(self, key: bytes, cpu: int) -> int:
        return self.lookup(key, cpu) if self.percpu else 0

    def _upsert(self, key: bytes, flags: int, write: Callable[[int, bool], None]) -> int:
        base = flags & ~BPF_F_LOCK
        if base > BPF_EXIST:
            return -E.EINVAL
        if flags & BPF_F_LOCK and self.lock_offset is None:
            return -E.EINVAL
        with self._lock:
            table = self.chains
            slot = table.find(key)
            if slot is not None:
                if base == BPF_NOEXIST:
                    return -E.EEXIST
                if self.lru:
                    table.touch(slot)
                write(slot, False)
                return 0
            if base == BPF_EXIST:
                return -E.ENOENT
            slot = table.take_free()
            if slot is None:
                if not self.lru or not table.oldest:
                    return -E.E2BIG
                slot = table.oldest - 1  # the least recently used element makes room
                table.unlink(table.key_at(slot), slot)
            ctypes.memmove(self.key_base + slot * self.key_stride, key, self.key_size)
            write(slot, True)
            # Published last: readers never see a half-written element.
            table.link(key, slot)
            return 0

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        if type(key) is not bytes:
            key = bytes(key)
        value = self._fit(value)
        if self.percpu:
            if not 0 <= cpu < self._nslots:
                cpu = 0

            def write(slot: int, new: bool) -> None:
                # Like the kernel's pcpu_init_value: a new element gets the value on this cpu and
                # zeros on every other cpu; an existing one changes on this cpu only.
                for c in range(self._nslots) if new else (cpu,):
                    self._write_value(self._value_addr(slot, c),
                                      value if c == cpu else bytes(self.value_size), new)
        else:
            def write(slot: int, new: bool) -> None:
                self._write_value(self._value_addr(slot), value, new)
        return self._upsert(key, flags, write)

    def delete(self, key: bytes) -> int:
        if type(key) is not bytes:
            key = bytes(key)
        with self._lock:
            return 0 if self._drop(key) else -E.ENOENT

    def _drop(self, key: bytes) -> bool:
        """Remove key (the caller holds the lock); False if it was not there."""
        slot = self.chains.find(key)
        if slot is None:
            return False
        self.chains.unlink(key, slot)
        self._retire(slot)
        self.chains.release(slot)
        return True

    def _retire(self, slot: int) -> None:
        """A deleted element's kptr fields: their objects released, the referenced ones left
        pointing at the tombstone until the slot is reused (runtime/kptrs.py)."""
        if self.kptrs is not None:
            for cpu in range(self._nslots):
                self.kptrs.empty(self._value_addr(slot, cpu), tombstone=True)

    def _reset(self) -> None:
        """Remove every element (the caller holds the lock)."""
        for slot in self.chains.slots() if self.kptrs is not None else ():
            self._retire(slot)
        self.chains.clear()

    def elements(self, cpu: int = 0) -> list[tuple[int, int]]:
        cpu = cpu if 0 <= cpu < self._nslots else 0
        with self._lock:
            slots = self.chains.slots()
        return [(self.key_base + s * self.key_stride, self._value_addr(s, cpu)) for s in slots]

    # python side

    def _raw_keys(self) -> list[bytes]:
        with self._lock:
            return [self.chains.key_at(slot) for slot in self.chains.slots()]

    def _raw_read(self, key: bytes) -> bytes | list[bytes] | None:
        slot = self._slot(key)
        if slot is None:
            return None
        if self.percpu:
            return [self._read_value(self._value_addr(slot, c)) for c in range(self._nslots)]
        return self._read_value(self._value_addr(slot))

    def _raw_write(self, key: bytes, data: bytes | list[bytes], flags: int) -> int:
        def write(slot: int, new: bool) -> None:
            if isinstance(data, list):
                for c, d in enumerate(data):
                    self._write_value(self._value_addr(slot, c), d, new)
            else:
                self._write_value(self._value_addr(slot), data, new)
        return self._upsert(key, flags, write)

    def _raw_delete(self, key: bytes) -> int:
        return self.delete(key)

    def _raw_clear(self) -> None:
        with self._lock:
            self._reset()

    def __len__(self) -> int:
        return len(self.chains)


class PercpuHashMap(HashMap):
    """BPF_MAP_TYPE_PERCPU_HASH: a hash whose elements hold one value per cpu."""
    type_name = "percpu_hash"
    percpu = True


class LruHashMap(HashMap):
    """BPF_MAP_TYPE_LRU_HASH: a full map evicts its least recently used element on insert."""
    type_name = "lru_hash"
    lru = True


class LruPercpuHashMap(LruHashMap):
    """BPF_MAP_TYPE_LRU_PERCPU_HASH."""
    type_name = "lru_percpu_hash"
    percpu = True

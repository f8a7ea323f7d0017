"""BPF_MAP_TYPE_BLOOM_FILTER, with the creation checks, bit-array size and hashing of
kernel/bpf/bloom_filter.c.

A bloom filter has values and no keys: ``bpf_map_push_elem`` adds a value (sets one bit per hash
function), ``bpf_map_peek_elem`` asks whether a value may have been added (0: maybe, -ENOENT:
certainly not). ``map_extra`` gives the number of hash functions (1-15; 0 means 5). The bit array
has ``max_entries * hashes / ln 2`` bits (computed as the kernel does: times 7, over 5), rounded
up to a power of two and at least 64. Value ``v``'s bits are Bob Jenkins' lookup3 hash (the
kernel's ``jhash``; its ``jhash2``, for values of whole u32s, gives the same) of ``v`` with seed
``seed + i`` for each function ``i``; the seed is random, or 0 with ``BPF_F_ZERO_SEED``, so only
then do false positives repeat the kernel's exactly. docs/semantics.md#bloom-filters.

Python side: ``push_elem(value)``, ``peek_elem(value)`` (MapError ENOENT when absent) and
``value in bloom``; lookups by key, updates with a key, deletes and iteration are refused, as the
kernel refuses them.
"""
from __future__ import annotations

import ctypes
import errno as E
import random
from typing import Any, Iterator

from .base import Map
from .uapi import BPF_ANY, BPF_F_ACCESS_MASK, BPF_F_NUMA_NODE, BPF_F_ZERO_SEED

BLOOM_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | BPF_F_ACCESS_MASK
DEFAULT_HASHES = 5
MAX_BITS = 1 << 31
JHASH_INITVAL = 0xDEADBEEF
_M32 = 0xFFFF_FFFF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _M32; a ^= _rol(c, 4); c = (c + b) & _M32  # noqa: E702
    b = (b - a) & _M32; b ^= _rol(a, 6); a = (a + c) & _M32  # noqa: E702
    c = (c - b) & _M32; c ^= _rol(b, 8); b = (b + a) & _M32  # noqa: E702
    a = (a - c) & _M32; a ^= _rol(c, 16); c = (c + b) & _M32  # noqa: E702
    b = (b - a) & _M32; b ^= _rol(a, 19); a = (a + c) & _M32  # noqa: E702
    c = (c - b) & _M32; c ^= _rol(b, 4); b = (b + a) & _M32  # noqa: E702
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol(b, 14)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol(c, 11)) & _M32  # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & _M32  # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & _M32  # noqa: E702
    return c


def jhash(data: bytes, seed: int) -> int:
    """lookup3 over `data`: the kernel's jhash, which for data of whole u32s is also its jhash2
    (the same start, blocks and zero-padded tail)."""
    a = b = c = (JHASH_INITVAL + len(data) + seed) & _M32
    k = data
    while len(k) > 12:
        x, y, z = (int.from_bytes(k[i:i + 4], "little") for i in (0, 4, 8))
        a, b, c = _mix((a + x) & _M32, (b + y) & _M32, (c + z) & _M32)
        k = k[12:]
    if not k:
        return c
    k = k.ljust(12, b"\0")
    x, y, z = (int.from_bytes(k[i:i + 4], "little") for i in (0, 4, 8))
    return _final((a + x) & _M32, (b + y) & _M32, (c + z) & _M32)


class BloomFilter(Map):
    """BPF_MAP_TYPE_BLOOM_FILTER (see the module docstring)."""

    type_name = "bloom_filter"

    def __init__(self, spec, btf=None, ncpus: int = 1, lock_offset: int | None = None, map_extra: int = 0):
        self.map_extra = map_extra
        super().__init__(spec, btf, ncpus, lock_offset)

    def _validate(self) -> None:
        if self.key_size != 0 or self.value_size == 0 or self.max_entries == 0:
            raise self._err("a bloom filter needs key_size 0, and value_size and max_entries of at least 1", E.EINVAL)
        self._check_flags(BLOOM_CREATE_FLAG_MASK)
        if self.map_extra & ~0xF:
            raise self._err(f"map_extra {self.map_extra:#x}: the number of hash functions is 0-15", E.EINVAL)
        self.hashes = self.map_extra & 0xF or DEFAULT_HASHES
        bits = self.max_entries * self.hashes // 5 * 7 if self.max_entries * self.hashes < 1 << 32 else MAX_BITS
        self.nbits = 64 if bits <= 64 else min(1 << (bits - 1).bit_length(), MAX_BITS)
        self.seed = 0 if self.map_flags & BPF_F_ZERO_SEED else random.getrandbits(32)

    def _allocate(self) -> None:
        self._bits = bytearray(self.nbits // 8)

    def _positions(self, value: bytes) -> list[int]:
        return [jhash(value, (self.seed + i) & _M32) & (self.nbits - 1) for i in range(self.hashes)]

    def _add(self, value: bytes) -> None:
        with self._lock:
            for bit in self._positions(value):
                self._bits[bit >> 3] |= 1 << (bit & 7)

    def _has(self, value: bytes) -> bool:
        with self._lock:
            return all(self._bits[bit >> 3] >> (bit & 7) & 1 for bit in self._positions(value))

    # kernel side

    def push(self, value: bytes, flags: int = 0) -> int:
        if flags != BPF_ANY:
            return -E.EINVAL
        self._add(self._fit(value))
        return 0

    def peek(self, out_address: int) -> int:
        """The value to test is at the address (the helper's "value" argument)."""
        return 0 if self._has(ctypes.string_at(out_address, self.value_size)) else -E.ENOENT

    # Python side

    def push_elem(self, value: Any, flags: int = BPF_ANY) -> None:
        """Add a value (the kernel's update with a NULL key)."""
        self._check_user_write()
        data = self._encode_one_value(value)
        if flags != BPF_ANY:
            raise self._err(f"push of {value!r}: flags must be BPF_ANY", E.EINVAL)
        self._add(data)

    def peek_elem(self, value: Any) -> None:
        """Nothing when the value may have been added; MapError ENOENT when it certainly was not
        (the kernel's lookup with a NULL key)."""
        self._check_user_read()
        if not self._has(self._encode_one_value(value)):
            raise self._err(f"peek of {value!r}: not in the filter", E.ENOENT)

    def __contains__(self, value: Any) -> bool:
        try:
            self.peek_elem(value)
        except Exception:
            return False
        return True

    def _no_keys(self, what: str) -> Exception:
        return self._err(f"{what} is not supported: a bloom filter has no keys (push_elem, peek_elem, in)",
                         E.EOPNOTSUPP)

    def update_elem(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        if key is not None:
            raise self._no_keys("update with a key")
        self.push_elem(value, flags)

    def lookup_elem(self, key: Any, flags: int = 0) -> Any:
        raise self._no_keys("lookup by key")

    def __getitem__(self, key: Any) -> Any:
        raise self._no_keys("lookup by key")

    def _raw_keys(self) -> list[bytes]:
        raise self._no_keys("iteration")

    def __iter__(self) -> Iterator[Any]:
        raise self._no_keys("iteration")

    def __len__(self) -> int:
        raise self._no_keys("len()")

    def _raw_delete(self, key: bytes) -> int:
        return -E.EOPNOTSUPP

    def _raw_clear(self) -> None:
        with self._lock:
            self._bits[:] = bytes(len(self._bits))

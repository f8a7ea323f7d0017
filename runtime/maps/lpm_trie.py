"""BPF_MAP_TYPE_LPM_TRIE: longest-prefix match over ``struct bpf_lpm_trie_key`` keys, with the
creation, update, delete and iteration rules of kernel/bpf/lpm_trie.c.

A key is a u32 ``prefixlen`` (host order) and ``key_size - 4`` bytes of data, read most
significant bit first (an IPv4 address in network order, for ``key_size`` 8). A lookup, from a
program or from Python, finds the value of the longest stored prefix that covers the key's first
``prefixlen`` bits; an update or a delete names a prefix exactly. The bits of a key past its
prefix do not matter to matching, but the map keeps the data last written under that prefix and
gives it back when iterating, as the kernel does. Iteration is the kernel's ``get_next_key``
order: a trie's post-order, more specific prefixes before those that cover them, and at a
prefix's first differing bit 0 before 1.

The Python side also takes ``ipaddress`` networks as keys (and addresses, as full-length
prefixes) when the data is 4 or 16 bytes, returns keys as networks, and finds an address's
longest match with :meth:`LpmTrie.lookup_address`. docs/semantics.md#lpm-trie.

Storage: values in a preallocated native pool (a program's lookup returns a pointer into it,
stable while the prefix is stored); the prefixes in a dict per prefix length, searched from the
longest length down.
"""
from __future__ import annotations

import errno as E
import ipaddress
from typing import Any

from ..memory import Region
from .base import Map
from .uapi import (BPF_ANY, BPF_EXIST, BPF_F_ACCESS_MASK, BPF_F_NO_PREALLOC, BPF_F_NUMA_NODE, BPF_F_RDONLY_PROG,
                   BPF_NOEXIST, KMALLOC_MAX_SIZE, round_up)

LPM_CREATE_FLAG_MASK = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
LPM_DATA_SIZE_MIN, LPM_DATA_SIZE_MAX = 1, 256
LPM_NODE_SIZE = 24  # sizeof(struct lpm_trie_node) on x86-64: two child pointers, prefixlen, flags
LPM_VALUE_SIZE_MAX = KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX - LPM_NODE_SIZE



class LpmTrie(Map):
    """BPF_MAP_TYPE_LPM_TRIE (see the module docstring)."""

    type_name = "lpm_trie"

    def _validate(self) -> None:
        if self.max_entries == 0:
            raise self._err("max_entries must be at least 1", E.EINVAL)
        if not self.map_flags & BPF_F_NO_PREALLOC:
            raise self._err("LPM tries must be created with BPF_F_NO_PREALLOC", E.EINVAL)
        self._check_flags(LPM_CREATE_FLAG_MASK)
        if not 4 + LPM_DATA_SIZE_MIN <= self.key_size <= 4 + LPM_DATA_SIZE_MAX:
            raise self._err(f"key_size must be {4 + LPM_DATA_SIZE_MIN} to {4 + LPM_DATA_SIZE_MAX} (a u32 prefix "
                            f"length and 1 to {LPM_DATA_SIZE_MAX} bytes of data), got {self.key_size}", E.EINVAL)
        if not 1 <= self.value_size <= LPM_VALUE_SIZE_MAX:
            raise self._err(f"value_size must be 1 to {LPM_VALUE_SIZE_MAX}, got {self.value_size}", E.EINVAL)
        self.data_size = self.key_size - 4
        self.max_prefixlen = 8 * self.data_size

    def _allocate(self) -> None:
        self.elem_stride = round_up(self.value_size, 8)
        self._values = self._alloc(self.elem_stride * self.max_entries, "the value pool", self)
        self.value_base = self._values.address
        self._free = list(range(self.max_entries - 1, -1, -1))  # value slots, the lowest taken first
        # prefix length -> {the prefix's bits as an int: (value slot, the key's data as last written)}
        self._by_length: dict[int, dict[int, tuple[int, bytes]]] = {}
        self._lengths: list[int] = []  # the lengths in _by_length, longest first

    def _storage_regions(self) -> list[Region]:
        writable = not self.map_flags & BPF_F_RDONLY_PROG
        return [Region(self.value_base, self.elem_stride * self.max_entries, writable, f"map {self.name} values")]

    # -- keys --

    def _split(self, key: bytes) -> tuple[int, int]:
        """(prefixlen, the data's first prefixlen bits as an int) of a raw key; prefixlen may
        exceed max_prefixlen (callers decide)."""
        prefixlen = int.from_bytes(key[:4], "little")
        data = int.from_bytes(key[4:4 + self.data_size], "big")
        bits = min(prefixlen, self.max_prefixlen)
        return prefixlen, data >> (self.max_prefixlen - bits)

    def _find(self, key: bytes) -> tuple[int, int, bytes] | None:
        """(prefix length, value slot, stored data) of the longest prefix covering the key (the
        caller holds the lock)."""
        limit = min(int.from_bytes(key[:4], "little"), self.max_prefixlen)
        data = int.from_bytes(key[4:4 + self.data_size], "big")
        for length in self._lengths:
            if length <= limit:
                found = self._by_length[length].get(data >> (self.max_prefixlen - length))
                if found is not None:
                    return length, *found
        return None

    def _value_at(self, slot: int) -> int:
        return self.value_base + slot * self.elem_stride

    # -- kernel side --

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        with self._lock:
            found = self._find(bytes(key))
        return self._value_at(found[1]) if found is not None else 0

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return self._store(bytes(key), self._fit(value), flags)

    def delete(self, key: bytes) -> int:
        prefixlen, bits = self._split(bytes(key))
        if prefixlen > self.max_prefixlen:
            return -E.EINVAL
        with self._lock:
            entries = self._by_length.get(prefixlen)
            found = entries.pop(bits, None) if entries is not None else None
            if found is None:
                return -E.ENOENT
            if not entries:
                del self._by_length[prefixlen]
                self._lengths.remove(prefixlen)
            self._free.append(found[0])
        return 0

    def _store(self, key: bytes, value: bytes, flags: int) -> int:
        """An exact-prefix update: replaces the value (and the stored data) of a stored prefix."""
        if flags > BPF_EXIST:
            return -E.EINVAL
        prefixlen, bits = self._split(key)
        if prefixlen > self.max_prefixlen:
            return -E.EINVAL
        data = key[4:4 + self.data_size]
        with self._lock:
            entries = self._by_length.get(prefixlen, {})
            found = entries.get(bits)
            if found is not None and flags == BPF_NOEXIST:
                return -E.EEXIST
            if found is None and flags == BPF_EXIST:
                return -E.ENOENT
            if found is None and not self._free:
                return -E.ENOSPC
            slot = found[0] if found is not None else self._free.pop()
            self._write_value(self._value_at(slot), value, found is None)
            if not entries:
                self._by_length[prefixlen] = entries
                self._lengths = sorted(self._by_length, reverse=True)
            entries[bits] = (slot, data)
        return 0

    # -- Python side --

    def _encode_key(self, key: Any) -> bytes:
        if isinstance(key, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            key = ipaddress.ip_network(key)
        if isinstance(key, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            if key.max_prefixlen != self.max_prefixlen:
                raise self._err(f"key {key} has {key.max_prefixlen}-bit addresses, the map's data is "
                                f"{self.max_prefixlen} bits", E.EINVAL)
            return key.prefixlen.to_bytes(4, "little") + key.network_address.packed
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], int):
            prefixlen, data = key
            if isinstance(data, int):
                data = data.to_bytes(self.data_size, "big")
            return self._encode(prefixlen.to_bytes(4, "little") + bytes(data), self.key_size, 0, "key")
        return super()._encode_key(key)

    def _decode_key(self, data: bytes) -> Any:
        if self.data_size in (4, 16):
            prefixlen = int.from_bytes(data[:4], "little")
            return ipaddress.ip_network((data[4:], prefixlen), strict=False)
        return super()._decode_key(data)

    def _raw_keys(self) -> list[bytes]:
        with self._lock:
            stored = [(length, bits, data) for length, entries in self._by_length.items()
                      for bits, (_, data) in entries.items()]
        stored.sort(key=lambda entry: self._post_order(entry[0], entry[1]))
        return [length.to_bytes(4, "little") + data for length, _, data in stored]

    @staticmethod
    def _post_order(length: int, bits: int) -> str:
        """The sort key of the kernel's get_next_key order: the prefix's bits, then a mark that
        sorts after both bits, so a prefix follows every prefix it covers."""
        return (format(bits, f"0{length}b") if length else "") + "2"

    def _raw_read(self, key: bytes) -> bytes | None:
        with self._lock:
            found = self._find(key)
            return self._read_value(self._value_at(found[1])) if found is not None else None

    def _raw_write(self, key: bytes, data: bytes | list[bytes], flags: int) -> int:
        assert isinstance(data, bytes)
        return self._store(key, data, flags)

    def _raw_delete(self, key: bytes) -> int:
        return self.delete(key)

    def _raw_clear(self) -> None:
        with self._lock:
            self._by_length.clear()
            self._lengths = []
            self._free = list(range(self.max_entries - 1, -1, -1))

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._by_length.values())

    def lookup_address(self, address: Any) -> Any:
        """The value of the longest stored prefix that covers ``address`` (an ``ipaddress``
        address, or its string); KeyError when none does."""
        found = self.match(address)
        if found is None:
            raise KeyError(address)
        return found[1]

    def match(self, address: Any) -> tuple[Any, Any] | None:
        """(the longest stored prefix covering ``address``, its value), or None."""
        if isinstance(address, str):
            address = ipaddress.ip_address(address)
        key = self._encode_key(address if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address))
                               else (self.max_prefixlen, address))
        self._check_user_read()
        with self._lock:
            found = self._find(key)
            if found is None:
                return None
            length, slot, data = found
            value = self._read_value(self._value_at(slot))
        return self._decode_key(length.to_bytes(4, "little") + data), self._decode_value(value)

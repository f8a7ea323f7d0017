"""A hash map's chains in native memory, so that jitted code looks keys up without calling Python.

The map's Python dict (key -> slot) stays the authority for everything done from Python, under
the map's lock; this index mirrors it in two u32 arrays that a jitted ``bpf_map_lookup_elem``
walks without a lock (jit/lower.py), as the kernel's lookups walk their RCU lists:

* ``heads[bucket]``: slot + 1 of the first element of the bucket's chain, or its end marker;
* ``links[slot]``: slot + 1 of the next element in the same chain, or the chain's end marker.

End markers are ``NULLS | bucket``, as in the kernel's hlist_nulls lists: a deleted slot may be
reused, and so moved to another chain, while a lookup stands on it; a lookup that ends on another
bucket's marker knows it strayed and starts again. Writers store in publication order (key,
value, link, then head); x86 keeps stores in order, and lookups load the chain words with acquire
ordering so LLVM keeps them in order too.

The hash reads the key in little-endian chunks of 8, then 4, 2 and 1 bytes (``key_chunks``),
which is how the lowering reads it: one load per chunk, no loop.
"""
from __future__ import annotations

import array
import ctypes

from .memory import Buffer

NULLS = 1 << 31
MULTIPLIER = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: spreads consecutive keys over buckets
MASK64 = (1 << 64) - 1


def key_chunks(key_size: int) -> list[tuple[int, int]]:
    """(offset, size) of the loads that read a key of key_size bytes: 8-byte ones, then the tail."""
    chunks, offset = [], 0
    for size in (8, 4, 2, 1):
        while key_size - offset >= size:
            chunks.append((offset, size))
            offset += size
    return chunks


def bucket_count(max_entries: int) -> int:
    """A power of two of at least max_entries buckets: chains stay about one element long."""
    return 1 << max(0, max_entries - 1).bit_length()


def key_hash(key: bytes) -> int:
    """The 64-bit hash of a key; its low bits pick the bucket."""
    h = 0
    for offset, size in key_chunks(len(key)):
        h = ((h ^ int.from_bytes(key[offset:offset + size], "little")) * MULTIPLIER) & MASK64
    return h ^ (h >> 32)


class HashIndex:
    """The native chains of one hash map with ``max_entries`` slots. Callers hold the map's lock."""

    def __init__(self, max_entries: int):
        self.nbuckets = bucket_count(max_entries)
        self._heads = Buffer(4 * self.nbuckets)
        self._links = Buffer(4 * max(max_entries, 1))
        self.heads_address = self._heads.address
        self.links_address = self._links.address
        self.heads = (ctypes.c_uint32 * self.nbuckets).from_address(self.heads_address)
        self.links = (ctypes.c_uint32 * max(max_entries, 1)).from_address(self.links_address)
        self.clear()

    def bucket(self, key: bytes) -> int:
        return key_hash(key) & (self.nbuckets - 1)

    def clear(self) -> None:
        markers = array.array("I", range(NULLS, NULLS + self.nbuckets))
        ctypes.memmove(self.heads_address, markers.tobytes(), 4 * self.nbuckets)

    def insert(self, key: bytes, slot: int) -> None:
        """Publish slot (whose key and value are already written) at the head of its chain."""
        bucket = self.bucket(key)
        self.links[slot] = self.heads[bucket]
        self.heads[bucket] = slot + 1

    def remove(self, key: bytes, slot: int) -> None:
        """Unlink slot from its chain; its own link stays, for lookups standing on it."""
        bucket = self.bucket(key)
        if self.heads[bucket] == slot + 1:
            self.heads[bucket] = self.links[slot]
            return
        at = self.heads[bucket]
        while at < NULLS:
            if self.links[at - 1] == slot + 1:
                self.links[at - 1] = self.links[slot]
                return
            at = self.links[at - 1]
        raise AssertionError(f"slot {slot} is not in bucket {bucket}'s chain")

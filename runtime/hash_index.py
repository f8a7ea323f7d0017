"""The hash of a hash map's keys and the markers of its chains: what the Python methods, the native
helpers (jit/native_maps.py) and the inlined lookups (jit/lower.py) agree on.

The hash reads the key in little-endian chunks of 8, then 4, 2 and 1 bytes (``key_chunks``),
which is how the lowering reads it: one load per chunk, no loop. A chain ends in ``NULLS |
bucket`` (runtime/maps/hash_table.py says why).
"""
from __future__ import annotations

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

"""A hash map's element bookkeeping, all of it in native memory: the Python methods and the native
helpers (jit/native_maps.py) work on the same words, under the same map lock.

* ``heads[bucket]``: slot + 1 of the first element of the bucket's chain, or its end marker;
* ``links[slot]``: slot + 1 of the next element in the same chain, or the chain's end marker;
* the **free stack** (``free[0 .. nfree)``): the slot on top is the next one an insert takes;
  it starts as ``max_entries - 1 .. 0`` (so slot 0 is used first) and a deleted slot goes on top;
* the **order list** (``order[2 * slot]`` previous, ``order[2 * slot + 1]`` next, slot + 1, 0 at
  the ends; oldest and newest in the map's header): insertion order, which is the order Python
  lists the keys in; an LRU map also moves an element to the newest end when it is used, and
  evicts the oldest one when it is full.

A jitted ``bpf_map_lookup_elem`` on a plain hash map walks the chains without the lock
(jit/lower.py), as the kernel's lookups walk their RCU lists. End markers are ``NULLS | bucket``,
as in the kernel's hlist_nulls lists: a deleted slot may be reused, and so moved to another
chain, while a lookup stands on it; a lookup that ends on another bucket's marker knows it
strayed and starts again. Writers store in publication order (key, value, link, then head); x86
keeps stores in order, and lookups load the chain words with acquire ordering so LLVM keeps them
in order too.
"""
from __future__ import annotations

import array
import ctypes

from ..hash_index import NULLS, bucket_count, key_hash
from ..memory import Buffer
from .native import (EXT_FREE, EXT_HEADS, EXT_KEY_STRIDE, EXT_LINKS, EXT_NBUCKETS, EXT_NEWEST, EXT_NFREE,
                     EXT_OLDEST, EXT_ORDER)


class _Word:
    """A u32 field of the map header's native half."""

    def __init__(self, offset: int):
        self.offset = offset

    def __get__(self, table: "HashTable", owner: type) -> int:
        return ctypes.c_uint32.from_address(table.ext + self.offset).value

    def __set__(self, table: "HashTable", value: int) -> None:
        ctypes.c_uint32.from_address(table.ext + self.offset).value = value


class HashTable:
    """The native bookkeeping of one hash map with ``max_entries`` slots whose keys live at
    ``key_base + slot * key_stride``; its scalar fields live in the map header's native half at
    ``ext`` (runtime/maps/native.py). Callers hold the map lock."""

    nfree = _Word(EXT_NFREE)
    oldest = _Word(EXT_OLDEST)
    newest = _Word(EXT_NEWEST)

    def __init__(self, ext: int, max_entries: int, key_base: int, key_stride: int, key_size: int):
        self.ext = ext
        self.max_entries = max_entries
        self.key_base, self.key_stride, self.key_size = key_base, key_stride, key_size
        self.nbuckets = bucket_count(max_entries)
        n = max(max_entries, 1)
        self._memory = [Buffer(4 * self.nbuckets), Buffer(4 * n), Buffer(4 * n), Buffer(8 * n)]
        self.heads_address, self.links_address, free, order = (b.address for b in self._memory)
        self.heads = (ctypes.c_uint32 * self.nbuckets).from_address(self.heads_address)
        self.links = (ctypes.c_uint32 * n).from_address(self.links_address)
        self.free = (ctypes.c_uint32 * n).from_address(free)
        self.order = (ctypes.c_uint32 * (2 * n)).from_address(order)
        for offset, value in ((EXT_NBUCKETS, self.nbuckets), (EXT_KEY_STRIDE, key_stride)):
            ctypes.c_uint32.from_address(ext + offset).value = value
        for offset, value in ((EXT_HEADS, self.heads_address), (EXT_LINKS, self.links_address),
                              (EXT_FREE, free), (EXT_ORDER, order)):
            ctypes.c_uint64.from_address(ext + offset).value = value
        self.clear()

    def bucket(self, key: bytes) -> int:
        return key_hash(key) & (self.nbuckets - 1)

    def key_at(self, slot: int) -> bytes:
        return ctypes.string_at(self.key_base + slot * self.key_stride, self.key_size)

    def clear(self) -> None:
        """No elements: every bucket ends at once, every slot free, slot 0 on top."""
        markers = array.array("I", range(NULLS, NULLS + self.nbuckets))
        ctypes.memmove(self.heads_address, markers.tobytes(), 4 * self.nbuckets)
        free = array.array("I", range(self.max_entries - 1, -1, -1))
        ctypes.memmove(ctypes.addressof(self.free), free.tobytes(), 4 * self.max_entries)
        self.nfree = self.max_entries
        self.oldest = self.newest = 0

    def __len__(self) -> int:
        return self.max_entries - self.nfree

    def find(self, key: bytes) -> int | None:
        """The slot holding key, or None."""
        at = self.heads[self.bucket(key)]
        while at < NULLS:
            if self.key_at(at - 1) == key:
                return at - 1
            at = self.links[at - 1]
        return None

    def take_free(self) -> int | None:
        """Pop the free slot on top of the stack (None when the map is full)."""
        if not self.nfree:
            return None
        self.nfree -= 1
        return self.free[self.nfree]

    def release(self, slot: int) -> None:
        """Push slot on top of the free stack: the next insert reuses it."""
        self.free[self.nfree] = slot
        self.nfree += 1

    def link(self, key: bytes, slot: int) -> None:
        """Publish slot (whose key and value are already written) at the head of its chain and at
        the newest end of the order list."""
        bucket = self.bucket(key)
        self.links[slot] = self.heads[bucket]
        self.heads[bucket] = slot + 1
        self._append(slot)

    def unlink(self, key: bytes, slot: int) -> None:
        """Take slot out of its chain and the order list; its own link stays, for lookups standing
        on it."""
        bucket = self.bucket(key)
        self._detach(slot)
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

    def touch(self, slot: int) -> None:
        """Move slot to the newest end of the order list (an LRU map's use)."""
        if self.newest != slot + 1:
            self._detach(slot)
            self._append(slot)

    def slots(self) -> list[int]:
        """Every element's slot, oldest first."""
        out, at = [], self.oldest
        while at:
            out.append(at - 1)
            at = self.order[2 * at - 1]
        return out

    def _append(self, slot: int) -> None:
        newest = self.newest
        self.order[2 * slot], self.order[2 * slot + 1] = newest, 0
        if newest:
            self.order[2 * newest - 1] = slot + 1
        else:
            self.oldest = slot + 1
        self.newest = slot + 1

    def _detach(self, slot: int) -> None:
        prev, following = self.order[2 * slot], self.order[2 * slot + 1]
        if prev:
            self.order[2 * prev - 1] = following
        else:
            self.oldest = following
        if following:
            self.order[2 * following - 2] = prev
        else:
            self.newest = prev

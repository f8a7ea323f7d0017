"""BPF maps in native memory with stable addresses: one class per map type, one module per family
(``base``: header, registry and the dict-like API; ``array``, ``hash``, ``queue``, ``ringbuf``,
``fd_array``; ``kernel_objects``: maps of kernel objects bpfjit does not have, always empty:
``sockets``, ``sk_storage``, ``stack_trace``; ``create``: the type -> class table; ``uapi``: the
kernel's constants).

The interpreter, the JIT and Python code all work on the same bytes: a value's address never
changes while its map lives (storage is allocated once, at creation, and never reallocated), so
the JIT can bake addresses into machine code and a program may keep a value pointer across calls.

Two API layers, on every map:

* **Kernel side** (what helpers call, on raw bytes and native addresses, returning ints the way
  the kernel's map ops do): ``lookup(key, cpu=0) -> address | 0``, ``update(key, value, flags,
  cpu=0) -> 0 | -errno``, ``delete(key) -> 0 | -errno``, ``lookup_percpu(key, cpu)``,
  ``push/pop/peek`` (queue, stack), ``reserve/submit/discard/output/query`` (ring buffer),
  ``elements(cpu=0)`` (key and value addresses, for ``bpf_for_each_map_elem``).
* **Python side** (dict-like, raising :class:`~bpfjit.errors.MapError` with an errno, or
  ``KeyError`` for a missing key): ``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``, ``keys()``,
  ``values()``, ``items()``, ``len(m)``, ``get``, ``update_elem``, ``lookup_elem``,
  ``delete_elem``, ``clear``, ``dump``, ``freeze``.

Every map has a ``handle``: the address of a 64-byte native header (layout in :data:`HEADER`).
That is the value ``ld_imm64 src=1`` (BPF_PSEUDO_MAP_FD) loads into a register, and
:func:`map_from_handle` turns it back into the map, so a helper finds its map from r1.

Deliberate differences from Linux (documented, tested):

* Hash updates of an existing key write the value **in place** (the kernel swaps in a fresh
  preallocated element), so a value address stays valid and keeps naming its key until the key
  is deleted; a deleted element's slot is reused by a later insert.
* LRU maps are exact LRU over one list (kernel: approximate, per-CPU free lists, may evict before
  the map is full). A program-side ``lookup``/``update`` and a Python-side write count as a use;
  Python-side reads do not (like the kernel's syscall lookups, which do not set the ref bit).
  Updating an existing key never evicts another one.
* ``BPF_F_LOCK`` copies the value around the lock word but does not take the lock. The lock word
  itself is never written by an update (the kernel's ``copy_map_value`` skips it too) and reads
  show it as zero.

Hash maps keep all their bookkeeping (chains, free slots, insertion/LRU order) in native memory,
under a lock in the header's native half that the Python methods and the native helpers of
jitted programs both take (``native``, ``hash_table``): the two sides change one map, never two
copies of it.
"""
from __future__ import annotations

from ..map_types import MapType
from .array import ArrayMap, PercpuArrayMap
from .base import HEADER, HEADER_SIZE, Map, MapSpec, find_region, live_maps, map_from_handle
from .create import create_map
from .fd_array import ArrayOfMaps, HashOfMaps, ProgArray
from .hash import HashMap, LruHashMap, LruPercpuHashMap, PercpuHashMap
from .queue import QueueMap, StackMap
from .ringbuf import RingBuf, ringbuf_from_record
from .sk_storage import SkStorageMap
from .sockets import ReuseportSockArray, SockHash, SockMap, XskMap
from .stack_trace import StackTraceMap
from .uapi import (BPF_ANY, BPF_EXIST, BPF_F_INNER_MAP, BPF_F_LOCK, BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU,
                   BPF_F_NO_PREALLOC, BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_F_WRONLY_PROG, BPF_NOEXIST,
                   BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP)

__all__ = [
    "MapSpec", "Map", "ArrayMap", "PercpuArrayMap", "HashMap", "PercpuHashMap", "LruHashMap",
    "LruPercpuHashMap", "QueueMap", "StackMap", "RingBuf", "ProgArray", "ArrayOfMaps",
    "HashOfMaps", "SockMap", "SockHash", "XskMap", "ReuseportSockArray", "SkStorageMap", "StackTraceMap",
    "create_map", "map_from_handle", "ringbuf_from_record", "find_region",
    "live_maps", "HEADER", "HEADER_SIZE", "MapType",
    "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST", "BPF_F_LOCK", "BPF_F_INNER_MAP", "BPF_F_MMAPABLE",
    "BPF_F_NO_COMMON_LRU", "BPF_F_NO_PREALLOC", "BPF_F_RDONLY", "BPF_F_RDONLY_PROG", "BPF_F_WRONLY",
    "BPF_F_WRONLY_PROG", "BPF_RB_FORCE_WAKEUP", "BPF_RB_NO_WAKEUP",
]

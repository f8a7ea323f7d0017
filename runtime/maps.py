"""BPF maps in native memory with stable addresses, one class per map type.

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
* ``BPF_F_LOCK`` copies the value around the lock word but does not spin on it: Python code and
  native code share no lock primitive. The lock word itself is never written by an update
  (the kernel's ``copy_map_value`` skips it too) and reads show it as zero.
"""
from __future__ import annotations

import array
import ctypes
import errno as E
import itertools
import mmap
import os
import struct
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from bpfjit.errors import MapError

from .hash_index import HashIndex
from .map_types import MapType, map_type_name
from .memory import Buffer, Region

__all__ = [
    "MapSpec", "Map", "ArrayMap", "PercpuArrayMap", "HashMap", "PercpuHashMap", "LruHashMap",
    "LruPercpuHashMap", "QueueMap", "StackMap", "RingBuf", "ProgArray", "ArrayOfMaps",
    "HashOfMaps", "create_map", "map_from_handle", "ringbuf_from_record", "find_region",
    "live_maps", "HEADER", "HEADER_SIZE",
    "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST", "BPF_F_LOCK",
]

# --- uapi constants ---------------------------------------------------------------------------

# map_update_elem flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# map_flags (BPF_MAP_CREATE)
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12
BPF_F_ACCESS_MASK = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG

# kernel create-flag masks (kernel/bpf/arraymap.c, hashtab.c, queue_stack_maps.c, ringbuf.c)
ARRAY_CREATE_FLAG_MASK = (BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK
                          | BPF_F_PRESERVE_ELEMS | BPF_F_INNER_MAP)
HTAB_CREATE_FLAG_MASK = (BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE
                         | BPF_F_ACCESS_MASK | BPF_F_ZERO_SEED)
QUEUE_STACK_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
RINGBUF_CREATE_FLAG_MASK = BPF_F_NUMA_NODE

# ring buffer
BPF_RB_NO_WAKEUP = 1
BPF_RB_FORCE_WAKEUP = 2
BPF_RB_AVAIL_DATA = 0
BPF_RB_RING_SIZE = 1
BPF_RB_CONS_POS = 2
BPF_RB_PROD_POS = 3
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF // 4

# kernel limits
KMALLOC_MAX_SIZE = 1 << 22          # x86-64 SLUB: 4 MiB
PCPU_MIN_UNIT_SIZE = 32 << 10       # largest per-cpu value (round_up(value_size, 8))
MAX_BPF_STACK = 512                 # hash keys must fit on the BPF stack
PAGE_SIZE = mmap.PAGESIZE
# Our own guard: refuse a single map needing more native memory than this (ENOMEM).
MAX_MAP_BYTES = 1 << 31

# --- the native header ------------------------------------------------------------------------

HEADER_SIZE = 64
#: Layout of the header ``handle`` points at (all little-endian):
#:   0 u32 map_type   4 u32 key_size   8 u32 value_size   12 u32 max_entries   16 u32 map_flags
#:  20 u32 elem_stride (value stride: arrays, hashes, map-in-map handle tables; 0 otherwise)
#:  24 u64 value_base (arrays: value 0 of cpu 0; hashes: the value pool; array-of-maps: handle
#:         table; ring buffer: data area (mapped twice back to back); 0 otherwise)
#:  32 u32 ncpus      36 u32 map id (unique per process, like the kernel's map id)
#:  40 u64 cpu_stride (per-cpu arrays: bytes between one cpu's values and the next cpu's);
#:         ring buffer: consumer position
#:  48 u64 key_base (arrays: table of u32 indexes; hashes: the key pool); ring buffer: producer
#:         position
#:  56 8s  magic b"BPFJMAP\\0"
HEADER = struct.Struct("<IIIIIIQIIQQ8s")
assert HEADER.size == HEADER_SIZE
HEADER_MAGIC = b"BPFJMAP\0"
_OFF_POS0 = 40
_OFF_POS1 = 48

_ids = itertools.count(1)
_registry: "weakref.WeakValueDictionary[int, Map]" = weakref.WeakValueDictionary()
_ringbufs: "weakref.WeakSet[RingBuf]" = weakref.WeakSet()


def map_from_handle(handle: int) -> "Map | None":
    """The live map whose header is at ``handle`` (what ``ld_imm64 src=1`` loaded), or None."""
    return _registry.get(handle)


def live_maps() -> list["Map"]:
    """Every map currently alive in this process."""
    return list(_registry.values())


def ringbuf_from_record(address: int) -> "RingBuf | None":
    """The ring buffer holding the record whose data starts at ``address`` (what
    ``bpf_ringbuf_reserve`` returned) while it is reserved and not yet submitted or discarded,
    for ``bpf_ringbuf_submit``/``discard``, which get no map; None for any other address."""
    for rb in list(_ringbufs):
        if rb._owns_record(address):
            return rb
    return None


def find_region(address: int, size: int) -> Region | None:
    """The region of any live map holding ``[address, address + size)``, or None. A fallback for
    memory the interpreter was not told about up front (inner maps added after load)."""
    for m in list(_registry.values()):
        for region in m._own_regions:
            if region.contains(address, size):
                return region
    return None


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


# --- the spec ---------------------------------------------------------------------------------


@dataclass
class MapSpec:
    """What the loader knows about a map before creating it (BTF map definition or legacy def)."""
    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    key_type_id: int = 0
    value_type_id: int = 0
    inner: "MapSpec | None" = None


# --- the base class ---------------------------------------------------------------------------


class Map:
    """Common state and the Python-side API; subclasses provide storage and the kernel ops."""

    type_name = "map"
    percpu = False
    #: Bytes actually stored per value slot (map-in-map stores 8-byte handles for value_size 4).
    _storage_value_size: int | None = None

    def __init__(self, spec: MapSpec, btf: Any = None, ncpus: int = 1,
                 lock_offset: int | None = None):
        self.spec = spec
        self.name = spec.name
        self.map_type = int(spec.map_type)
        self.key_size = int(spec.key_size)
        self.value_size = int(spec.value_size)
        self.max_entries = int(spec.max_entries)
        self.map_flags = int(spec.map_flags)
        self.key_type_id = spec.key_type_id
        self.value_type_id = spec.value_type_id
        self.btf = btf
        self.lock_offset = lock_offset
        self.frozen = False
        self.id = next(_ids)
        if not isinstance(ncpus, int) or ncpus < 1:
            raise self._err(f"ncpus must be a positive integer, got {ncpus!r}", E.EINVAL)
        self.ncpus = ncpus if self.percpu else 1
        self._nslots = ncpus if self.percpu else 1
        self._lock = threading.Lock()
        # Fields the header publishes; subclasses set them in _allocate().
        self.elem_stride = 0
        self.value_base = 0
        self.cpu_stride = 0
        self.key_base = 0
        for what, value in (("key_size", self.key_size), ("value_size", self.value_size),
                            ("max_entries", self.max_entries), ("map_flags", self.map_flags)):
            if not 0 <= value < 1 << 32:
                raise self._err(f"{what} {value} is not a u32", E.EINVAL)
        if (self.map_flags & BPF_F_RDONLY and self.map_flags & BPF_F_WRONLY) or \
                (self.map_flags & BPF_F_RDONLY_PROG and self.map_flags & BPF_F_WRONLY_PROG):
            raise self._err("map_flags ask for both read-only and write-only access", E.EINVAL)
        self._validate()
        self._check_lock_offset()
        try:
            self._allocate()
        except MemoryError:
            raise self._err("not enough memory for the map's storage", E.ENOMEM) from None
        self._header = Buffer(HEADER_SIZE)
        self.handle = self._header.address
        self._write_header()
        self._own_regions = self._make_regions()
        _registry[self.handle] = self

    # -- creation hooks --

    def _validate(self) -> None:
        raise NotImplementedError

    def _allocate(self) -> None:
        raise NotImplementedError

    def _storage_regions(self) -> list[Region]:
        return []

    def _check_flags(self, mask: int) -> None:
        bad = self.map_flags & ~mask
        if bad:
            raise self._err(f"map_flags {self.map_flags:#x} has bits {bad:#x} this map type does not "
                            "accept", E.EINVAL)

    def _check_lock_offset(self) -> None:
        lo = self.lock_offset
        if lo is None:
            return
        if self.map_type not in (MapType.HASH, MapType.ARRAY):
            raise self._err("struct bpf_spin_lock is only supported in hash and array map values",
                            E.EOPNOTSUPP)
        if self.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
            raise self._err("a value with a struct bpf_spin_lock cannot be BPF_F_RDONLY_PROG or "
                            "BPF_F_WRONLY_PROG", E.EACCES)
        if lo < 0 or lo % 4 or lo + 4 > self.value_size:
            raise self._err(f"spin lock offset {lo} does not fit a 4-aligned u32 in "
                            f"{self.value_size}-byte values", E.EINVAL)

    @staticmethod
    def _alloc(size: int, what: str, owner: "Map") -> Buffer:
        if size > MAX_MAP_BYTES:
            raise owner._err(f"{what} would need {size} bytes (limit {MAX_MAP_BYTES})", E.ENOMEM)
        return Buffer(size)

    def _write_header(self, pos0: int | None = None, pos1: int | None = None) -> None:
        self._header.write(HEADER.pack(
            self.map_type, self.key_size, self.value_size, self.max_entries, self.map_flags,
            self.elem_stride, self.value_base, self._nslots, self.id & 0xFFFFFFFF,
            self.cpu_stride if pos0 is None else pos0, self.key_base if pos1 is None else pos1,
            HEADER_MAGIC))

    def _make_regions(self) -> list[Region]:
        return [Region(self.handle, HEADER_SIZE, False, f"map {self.name} header"),
                *self._storage_regions()]

    def regions(self) -> list[Region]:
        """Native memory a program may touch through this map: the header (read-only) and the
        value storage (writable unless BPF_F_RDONLY_PROG). Map-in-map maps add the regions of the
        inner maps they hold now."""
        return list(self._own_regions)

    # -- misc --

    @property
    def read_only_for_program(self) -> bool:
        """True when the verifier may treat loads from this map as constants (the map is BPF_F_RDONLY_PROG
        and frozen: docs/semantics.md#global-data)."""
        return bool(self.map_flags & BPF_F_RDONLY_PROG) and self.frozen

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: Python-side writes fail with EPERM from now on (program-side writes
        are governed by BPF_F_RDONLY_PROG and the verifier)."""
        self.frozen = True

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r} key_size={self.key_size} "
                f"value_size={self.value_size} max_entries={self.max_entries} "
                f"handle={self.handle:#x}>")

    def __bool__(self) -> bool:
        # A map object is a resource: truthy even when empty (``if m:`` must not mean "non-empty").
        return True

    # -- errors --

    def _err(self, message: str, errno: int) -> MapError:
        return MapError(f"map {self.name} ({self.type_name}): {message}", errno)

    def _unsupported(self, what: str) -> MapError:
        return self._err(f"{what} is not supported on this map type", E.EOPNOTSUPP)

    def _fail(self, err: int, key: Any = None, what: str = "update") -> MapError:
        err = -err
        if err == E.EEXIST:
            msg = f"{what} of key {key!r}: the key already exists (BPF_NOEXIST)"
        elif err == E.ENOENT:
            msg = f"{what} of key {key!r}: no such key"
        elif err == E.E2BIG:
            msg = (f"{what} of key {key!r}: the map is full ({self.max_entries} entries)"
                   if not isinstance(self, (ArrayMap, _FdArray)) else
                   f"{what} of key {key!r}: index out of range (max_entries {self.max_entries})")
        elif err == E.EINVAL:
            msg = f"{what} of key {key!r}: invalid flags or operation"
        elif err == E.EOPNOTSUPP:
            msg = f"{what} is not supported on this map type"
        else:
            msg = f"{what} of key {key!r} failed: {os.strerror(err)}"
        return self._err(msg, err)

    def _check_user_write(self) -> None:
        if self.frozen:
            raise self._err("the map is frozen; user-space writes are not allowed", E.EPERM)
        if self.map_flags & BPF_F_RDONLY:
            raise self._err("the map is BPF_F_RDONLY; user-space writes are not allowed", E.EPERM)

    def _check_user_read(self) -> None:
        if self.map_flags & BPF_F_WRONLY:
            raise self._err("the map is BPF_F_WRONLY; user-space reads are not allowed", E.EPERM)

    # -- encoding --

    def _encode(self, obj: Any, size: int, type_id: int, what: str) -> bytes:
        if isinstance(obj, (bytes, bytearray, memoryview)):
            data = bytes(obj)
            if len(data) != size:
                raise MapError(f"{what} is {len(data)} bytes, map {self.name} expects {size}",
                               E.EINVAL)
            return data
        if isinstance(obj, int):
            value = int(obj)
            if value < 0:
                value += 1 << (8 * size)
            if not 0 <= value < 1 << (8 * size):
                raise MapError(f"{what} {obj} does not fit in {size} bytes of map {self.name}",
                               E.EINVAL)
            return value.to_bytes(size, "little")
        if self.btf is not None and type_id:
            try:
                data = self.btf.encode_value(type_id, obj)
            except MapError:
                raise
            except (Exception) as exc:  # BTFError, TypeError, ValueError, KeyError ...
                raise MapError(f"map {self.name}: cannot encode {what} {obj!r}: {exc}",
                               E.EINVAL) from exc
            data = bytes(data)
            if len(data) != size:
                raise MapError(f"{what} is {len(data)} bytes, map {self.name} expects {size}",
                               E.EINVAL)
            return data
        raise MapError(f"map {self.name}: cannot use a {type(obj).__name__} as a {what}; give "
                       f"bytes or an int" + ("" if type_id else " (the map has no BTF type)"),
                       E.EINVAL)

    def _decode(self, data: bytes, type_id: int) -> Any:
        if self.btf is not None and type_id:
            try:
                return self.btf.format_value(type_id, data)
            except Exception as exc:
                raise MapError(f"map {self.name}: cannot format {data.hex()} with BTF type "
                               f"{type_id}: {exc}", E.EINVAL) from exc
        if len(data) in (1, 2, 4, 8):
            return int.from_bytes(data, "little")
        return data

    def _encode_key(self, key: Any) -> bytes:
        return self._encode(key, self.key_size, self.key_type_id, "key")

    def _decode_key(self, data: bytes) -> Any:
        return self._decode(data, self.key_type_id)

    def _encode_one_value(self, value: Any) -> bytes:
        return self._encode(value, self.value_size, self.value_type_id, "value")

    def _encode_value(self, value: Any) -> bytes | list[bytes]:
        """One value, or for per-cpu maps one value per cpu: a list/tuple of exactly ``ncpus``
        values is per-cpu, anything else is one value written to every cpu."""
        if not self.percpu:
            return self._encode_one_value(value)
        if isinstance(value, (list, tuple)) and len(value) == self.ncpus:
            return [self._encode_one_value(v) for v in value]
        return [self._encode_one_value(value)] * self.ncpus

    def _decode_value(self, data: bytes | list[bytes]) -> Any:
        if isinstance(data, list):
            return [self._decode(d, self.value_type_id) for d in data]
        return self._decode(data, self.value_type_id)

    # -- value memory with the spin-lock word left alone --

    def _write_value(self, address: int, data: bytes, new: bool) -> None:
        lo = self.lock_offset
        if lo is None:
            ctypes.memmove(address, data, len(data))
        elif new:
            ctypes.memmove(address, data[:lo] + b"\0\0\0\0" + data[lo + 4:], len(data))
        else:
            ctypes.memmove(address, data, lo)
            ctypes.memmove(address + lo + 4, data[lo + 4:], len(data) - lo - 4)

    def _read_value(self, address: int) -> bytes:
        data = ctypes.string_at(address, self.value_size)
        lo = self.lock_offset
        if lo is not None:
            data = data[:lo] + b"\0\0\0\0" + data[lo + 4:]
        return data

    def _fit(self, value: bytes) -> bytes:
        """A kernel-side value as exactly value_size bytes (helpers pass value_size already)."""
        value = bytes(value[:self.value_size])
        if len(value) < self.value_size:
            value = value.ljust(self.value_size, b"\0")
        return value

    def _zero_value(self, address: int) -> None:
        self._write_value(address, bytes(self.value_size), False)

    # -- kernel side (defaults: what the kernel does for ops a map type lacks) --

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        """bpf_map_lookup_elem: the value's address, 0 if absent."""
        return 0

    def lookup_percpu(self, key: bytes, cpu: int) -> int:
        """bpf_map_lookup_percpu_elem: the value's address on ``cpu`` (per-cpu maps only)."""
        return 0

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        """bpf_map_update_elem: 0 or -errno."""
        return -E.EOPNOTSUPP

    def delete(self, key: bytes) -> int:
        """bpf_map_delete_elem: 0 or -errno."""
        return -E.EOPNOTSUPP

    def push(self, value: bytes, flags: int = 0) -> int:
        return -E.EOPNOTSUPP

    def pop(self, out_address: int) -> int:
        return -E.EOPNOTSUPP

    def peek(self, out_address: int) -> int:
        return -E.EOPNOTSUPP

    def elements(self, cpu: int = 0) -> list[tuple[int, int]]:
        """(key address, value address) of every element now, for bpf_for_each_map_elem."""
        return []

    # -- Python side: raw hooks the value maps implement --

    def _raw_keys(self) -> list[bytes]:
        raise self._unsupported("iteration")

    def _raw_read(self, key: bytes) -> bytes | list[bytes] | None:
        raise self._unsupported("lookup")

    def _raw_write(self, key: bytes, data: bytes | list[bytes], flags: int) -> int:
        raise self._unsupported("update")

    def _raw_delete(self, key: bytes) -> int:
        raise self._unsupported("delete")

    def _raw_clear(self) -> None:
        raise self._unsupported("clear")

    # -- Python side: the dict-like API --

    def lookup_elem(self, key: Any, flags: int = 0) -> Any:
        """Like ``m[key]`` but raises MapError(ENOENT) for a missing key; ``BPF_F_LOCK`` is
        accepted only when the value has a spin lock (EINVAL otherwise)."""
        self._check_user_read()
        if flags & ~BPF_F_LOCK or (flags & BPF_F_LOCK and self.lock_offset is None):
            raise self._err(f"lookup flags {flags:#x} are invalid here", E.EINVAL)
        kb = self._encode_key(key)
        data = self._raw_read(kb)
        if data is None:
            raise self._fail(-E.ENOENT, key, "lookup")
        return self._decode_value(data)

    def update_elem(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """bpf_map_update_elem from user space; raises MapError(errno) on failure."""
        self._check_user_write()
        kb = self._encode_key(key)
        data = self._encode_value(value)
        err = self._raw_write(kb, data, flags)
        if err:
            raise self._fail(err, key, "update")

    def delete_elem(self, key: Any) -> None:
        """bpf_map_delete_elem from user space; raises MapError(errno) on failure."""
        self._check_user_write()
        kb = self._encode_key(key)
        err = self._raw_delete(kb)
        if err:
            raise self._fail(err, key, "delete")

    def __getitem__(self, key: Any) -> Any:
        self._check_user_read()
        data = self._raw_read(self._encode_key(key))
        if data is None:
            raise KeyError(key)
        return self._decode_value(data)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update_elem(key, value, BPF_ANY)

    def __delitem__(self, key: Any) -> None:
        self._check_user_write()
        kb = self._encode_key(key)
        err = self._raw_delete(kb)
        if err == -E.ENOENT:
            raise KeyError(key)
        if err:
            raise self._fail(err, key, "delete")

    def __contains__(self, key: Any) -> bool:
        try:
            kb = self._encode_key(key)
        except MapError:
            return False
        return self._raw_read(kb) is not None

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> list[Any]:
        self._check_user_read()
        return [self._decode_key(k) for k in self._raw_keys()]

    def values(self) -> list[Any]:
        return [v for _, v in self.items()]

    def items(self) -> list[tuple[Any, Any]]:
        self._check_user_read()
        out = []
        for kb in self._raw_keys():
            data = self._raw_read(kb)
            if data is not None:  # deleted concurrently
                out.append((self._decode_key(kb), self._decode_value(data)))
        return out

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._raw_keys())

    def clear(self) -> None:
        """Delete every element (arrays: zero every value, the lock word excepted)."""
        self._check_user_write()
        self._raw_clear()

    def dump(self) -> list[tuple[Any, Any]]:
        """Everything in the map as (key, value) pairs, for ``bpfjit map dump``."""
        return self.items()


# --- arrays -----------------------------------------------------------------------------------


class ArrayMap(Map):
    """BPF_MAP_TYPE_ARRAY: ``max_entries`` preallocated values, value ``i`` at
    ``value_base + i * elem_stride`` with ``elem_stride = round_up(value_size, 8)`` (as the
    kernel lays them out, so the JIT can inline lookups as address arithmetic). Every index
    always exists; delete is -EINVAL."""

    type_name = "array"

    def _validate(self) -> None:
        if self.max_entries == 0:
            raise self._err("max_entries must be at least 1", E.EINVAL)
        if self.key_size != 4:
            raise self._err(f"array maps need key_size 4, got {self.key_size}", E.EINVAL)
        if self.value_size == 0:
            raise self._err("value_size must be at least 1", E.EINVAL)
        self._check_flags(ARRAY_CREATE_FLAG_MASK)
        if self.map_type != MapType.ARRAY and self.map_flags & (BPF_F_MMAPABLE | BPF_F_INNER_MAP):
            raise self._err("BPF_F_MMAPABLE and BPF_F_INNER_MAP are only for plain arrays",
                            E.EINVAL)
        if self.value_size > KMALLOC_MAX_SIZE:
            raise self._err(f"value_size {self.value_size} is larger than {KMALLOC_MAX_SIZE}",
                            E.E2BIG)
        if self.percpu and _round_up(self.value_size, 8) > PCPU_MIN_UNIT_SIZE:
            raise self._err(f"per-cpu value_size {self.value_size} is larger than "
                            f"{PCPU_MIN_UNIT_SIZE}", E.E2BIG)

    def _allocate(self) -> None:
        self.elem_stride = _round_up(self.value_size, 8)
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
        if self.lock_offset is None:
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


# --- hashes -----------------------------------------------------------------------------------


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
        if self.percpu and _round_up(self.value_size, 8) > PCPU_MIN_UNIT_SIZE:
            raise self._err(f"per-cpu value_size {self.value_size} is larger than "
                            f"{PCPU_MIN_UNIT_SIZE}", E.E2BIG)

    def _allocate(self) -> None:
        self.key_stride = _round_up(self.key_size, 8)
        vsize = self._storage_value_size or self.value_size
        self.elem_stride = _round_up(vsize, 8)
        self._keys = self._alloc(self.key_stride * self.max_entries, "the key pool", self)
        self._values = self._alloc(self.elem_stride * self._nslots * self.max_entries,
                                   "the value pool", self)
        self.key_base = self._keys.address
        self.value_base = self._values.address
        self._index: dict[bytes, int] = OrderedDict() if self.lru else {}
        self.chains = HashIndex(self.max_entries)  # the same index, natively, for jitted lookups
        # Free slots; pop() takes the lowest first, a deleted slot is the next one reused.
        self._free = list(range(self.max_entries - 1, -1, -1))

    def _storage_regions(self) -> list[Region]:
        writable = not self.map_flags & BPF_F_RDONLY_PROG
        return [Region(self.value_base, self.elem_stride * self._nslots * self.max_entries,
                       writable, f"map {self.name} values"),
                Region(self.key_base, self.key_stride * self.max_entries, False,
                       f"map {self.name} keys")]

    def _value_addr(self, slot: int, cpu: int = 0) -> int:
        return self.value_base + (slot * self._nslots + cpu) * self.elem_stride

    def _touch(self, key: bytes) -> None:
        with self._lock:
            if key in self._index:
                self._index.move_to_end(key)  # type: ignore[attr-defined]

    # kernel side

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        if type(key) is not bytes:
            key = bytes(key)
        slot = self._index.get(key)
        if slot is None:
            return 0
        if self.lru:
            self._touch(key)
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
            slot = self._index.get(key)
            if slot is not None:
                if base == BPF_NOEXIST:
                    return -E.EEXIST
                if self.lru:
                    self._index.move_to_end(key)  # type: ignore[attr-defined]
                write(slot, False)
                return 0
            if base == BPF_EXIST:
                return -E.ENOENT
            if self._free:
                slot = self._free.pop()
            elif self.lru:
                old, slot = self._index.popitem(last=False)  # type: ignore[call-arg]
                self.chains.remove(old, slot)
            else:
                return -E.E2BIG
            ctypes.memmove(self.key_base + slot * self.key_stride, key, self.key_size)
            write(slot, True)
            # Published last: readers never see a half-written element.
            self.chains.insert(key, slot)
            self._index[key] = slot
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
        slot = self._index.pop(key, None)
        if slot is None:
            return False
        self.chains.remove(key, slot)
        self._free.append(slot)
        return True

    def _reset(self) -> None:
        """Remove every element (the caller holds the lock)."""
        self._index.clear()
        self.chains.clear()
        self._free = list(range(self.max_entries - 1, -1, -1))

    def elements(self, cpu: int = 0) -> list[tuple[int, int]]:
        cpu = cpu if 0 <= cpu < self._nslots else 0
        with self._lock:
            slots = list(self._index.values())
        return [(self.key_base + s * self.key_stride, self._value_addr(s, cpu)) for s in slots]

    # python side

    def _raw_keys(self) -> list[bytes]:
        with self._lock:
            return list(self._index)

    def _raw_read(self, key: bytes) -> bytes | list[bytes] | None:
        slot = self._index.get(key)
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
        return len(self._index)


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


# --- queue and stack --------------------------------------------------------------------------


class QueueMap(Map):
    """BPF_MAP_TYPE_QUEUE (FIFO). Elements live in a native ring of ``max_entries + 1`` slots,
    like the kernel's. Kernel side: ``push(value, flags)``, ``pop(out_address)``,
    ``peek(out_address)``; Python side: ``push_elem``, ``pop_elem``, ``peek_elem``, ``len``,
    ``values()`` (in pop order), ``clear``."""

    type_name = "queue"
    stack = False

    def _validate(self) -> None:
        if self.key_size != 0:
            raise self._err(f"queue and stack maps have no key (key_size must be 0, got "
                            f"{self.key_size})", E.EINVAL)
        if self.value_size == 0 or self.max_entries == 0:
            raise self._err("value_size and max_entries must be at least 1", E.EINVAL)
        self._check_flags(QUEUE_STACK_CREATE_FLAG_MASK)
        if self.value_size > KMALLOC_MAX_SIZE:
            raise self._err(f"value_size {self.value_size} is too large", E.E2BIG)

    def _allocate(self) -> None:
        self._size = self.max_entries + 1
        self._elems = self._alloc(self._size * self.value_size, "the elements", self)
        self._head = 0  # next slot to write
        self._tail = 0  # oldest element

    def _is_full(self) -> bool:
        head = self._head + 1
        if head >= self._size:
            head = 0
        return head == self._tail

    # kernel side

    def push(self, value: bytes, flags: int = 0) -> int:
        """bpf_map_push_elem: -E2BIG when full unless flags is BPF_EXIST, which drops the oldest
        element to make room; BPF_NOEXIST or unknown flags -> -EINVAL."""
        if flags & BPF_NOEXIST or flags > BPF_EXIST:
            return -E.EINVAL
        with self._lock:
            if self._is_full():
                if not flags & BPF_EXIST:
                    return -E.E2BIG
                self._tail += 1
                if self._tail >= self._size:
                    self._tail = 0
            ctypes.memmove(self._elems.address + self._head * self.value_size,
                           self._fit(value), self.value_size)
            self._head += 1
            if self._head >= self._size:
                self._head = 0
        return 0

    def _get(self, out_address: int, delete: bool) -> int:
        with self._lock:
            if self._head == self._tail:
                ctypes.memset(out_address, 0, self.value_size)
                return -E.ENOENT
            if self.stack:
                index = self._head - 1 if self._head > 0 else self._size - 1
                if delete:
                    self._head = index
            else:
                index = self._tail
                if delete:
                    self._tail = index + 1 if index + 1 < self._size else 0
            ctypes.memmove(out_address, self._elems.address + index * self.value_size,
                           self.value_size)
        return 0

    def pop(self, out_address: int) -> int:
        """bpf_map_pop_elem: copy the next element to ``out_address`` and remove it; -ENOENT (and
        a zeroed output) when empty."""
        return self._get(out_address, True)

    def peek(self, out_address: int) -> int:
        """bpf_map_peek_elem: like pop without removing."""
        return self._get(out_address, False)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return -E.EINVAL

    def delete(self, key: bytes) -> int:
        return -E.EINVAL

    # python side

    def push_elem(self, value: Any, flags: int = 0) -> None:
        self._check_user_write()
        err = self.push(self._encode_one_value(value), flags)
        if err == -E.E2BIG:
            raise self._err(f"push: the map is full ({self.max_entries} entries; BPF_EXIST "
                            "overwrites the oldest)", E.E2BIG)
        if err:
            raise self._err(f"push: invalid flags {flags:#x}", -err)

    def _get_elem(self, delete: bool) -> Any:
        out = ctypes.create_string_buffer(self.value_size)
        err = self._get(ctypes.addressof(out), delete)
        if err:
            raise self._err(f"{'pop' if delete else 'peek'}: the map is empty", -err)
        return self._decode(out.raw, self.value_type_id)

    def pop_elem(self) -> Any:
        """Remove and return the next element (MapError ENOENT when empty)."""
        self._check_user_write()
        return self._get_elem(True)

    def peek_elem(self) -> Any:
        """Return the next element without removing it (MapError ENOENT when empty)."""
        self._check_user_read()
        return self._get_elem(False)

    def _raw_values(self) -> list[bytes]:
        with self._lock:
            out = []
            if self.stack:
                i = self._head
                while i != self._tail:
                    i = i - 1 if i > 0 else self._size - 1
                    out.append(ctypes.string_at(self._elems.address + i * self.value_size,
                                                self.value_size))
            else:
                i = self._tail
                while i != self._head:
                    out.append(ctypes.string_at(self._elems.address + i * self.value_size,
                                                self.value_size))
                    i = i + 1 if i + 1 < self._size else 0
            return out

    def values(self) -> list[Any]:
        """The elements in the order pop would return them."""
        self._check_user_read()
        return [self._decode(v, self.value_type_id) for v in self._raw_values()]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values())

    def __len__(self) -> int:
        with self._lock:
            return (self._head - self._tail) % self._size

    def _raw_clear(self) -> None:
        with self._lock:
            self._head = self._tail = 0

    def keys(self) -> list[Any]:
        raise self._unsupported("keys()")

    def items(self) -> list[tuple[Any, Any]]:
        raise self._unsupported("items()")

    def dump(self) -> list[tuple[Any, Any]]:
        """(None, value) for each element in pop order: queues and stacks have no keys."""
        return [(None, v) for v in self.values()]


class StackMap(QueueMap):
    """BPF_MAP_TYPE_STACK (LIFO); same storage and API as the queue."""
    type_name = "stack"
    stack = True


# --- ring buffer ------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _double_map(size: int) -> int:
    """``size`` bytes of shared memory mapped twice back to back (as the kernel maps a ring
    buffer's data pages), so a record that wraps past the end is still contiguous."""
    fd = os.memfd_create("bpfjit-ringbuf", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        base = _libc.mmap(None, 2 * size, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base in (None, _MAP_FAILED):
            raise MemoryError(os.strerror(ctypes.get_errno()))
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        for half in (base, base + size):
            got = _libc.mmap(half, size, prot, mmap.MAP_SHARED | 0x10, fd, 0)  # MAP_FIXED
            if got != half:
                _libc.munmap(base, 2 * size)
                raise MemoryError(os.strerror(ctypes.get_errno()))
        return base
    finally:
        os.close(fd)


class RingBuf(Map):
    """BPF_MAP_TYPE_RINGBUF: ``max_entries`` bytes of data (a power-of-2 multiple of the page
    size) mapped twice back to back. Records are an 8-byte header ``{u32 len; u32 pg_off}``
    (len carries BUSY 1<<31 while reserved, DISCARD 1<<30 once discarded) followed by the data,
    8-byte aligned, exactly as the kernel lays them out. ``pg_off`` is the page index of the
    header inside the data area.

    Producer (helpers): ``reserve(size, flags=0) -> address | 0``, ``submit(address, flags=0)``,
    ``discard(address, flags=0)``, ``output(data, flags=0) -> 0 | -errno``, ``query(flag)``.
    Consumer (Python): ``poll(callback, max_records=None, timeout=0.0) -> count``."""

    type_name = "ringbuf"

    def _validate(self) -> None:
        if self.key_size or self.value_size:
            raise self._err("ring buffers have no keys or values (key_size and value_size must "
                            "be 0)", E.EINVAL)
        size = self.max_entries
        if size == 0 or size & (size - 1) or size % PAGE_SIZE:
            raise self._err(f"max_entries {size} must be a power of 2 and a multiple of the page "
                            f"size ({PAGE_SIZE})", E.EINVAL)
        self._check_flags(RINGBUF_CREATE_FLAG_MASK)

    def _allocate(self) -> None:
        size = self.max_entries
        if 2 * size > MAX_MAP_BYTES:
            raise self._err(f"a {size}-byte ring buffer is too large", E.ENOMEM)
        base = _double_map(size)
        weakref.finalize(self, _libc.munmap, base, 2 * size)
        self.size = size
        self.mask = size - 1
        self.data_base = base
        self.value_base = base
        self._cons = 0
        self._prod = 0
        self._pending = 0
        # Data addresses of the records reserved and not yet submitted or discarded: what
        # submit/discard accept (an interior pointer or a second commit is refused).
        self._reserved: set[int] = set()
        self._cond = threading.Condition()
        self._consumer_lock = threading.Lock()
        _ringbufs.add(self)

    def _write_header(self, pos0: int | None = None, pos1: int | None = None) -> None:
        super()._write_header(self._cons, self._prod)

    def _storage_regions(self) -> list[Region]:
        return [Region(self.data_base, 2 * self.size, True, f"map {self.name} data")]

    def _hdr_len(self, pos: int) -> int:
        return ctypes.c_uint32.from_address(self.data_base + (pos & self.mask)).value

    def _owns_record(self, address: int) -> bool:
        """Whether address is the start of a record reserved here and not yet committed."""
        return address in self._reserved

    # producer (kernel side)

    def reserve(self, size: int, flags: int = 0) -> int:
        """bpf_ringbuf_reserve: address of ``size`` writable bytes, or 0 when there is no room
        (or flags is not 0)."""
        if flags or size < 0 or size > RINGBUF_MAX_RECORD_SZ:
            return 0
        length = _round_up(size + BPF_RINGBUF_HDR_SZ, 8)
        if length > self.size:
            return 0
        with self._lock:
            cons = self._cons
            pend = self._pending
            prod = self._prod
            while pend < prod:
                hlen = self._hdr_len(pend)
                if hlen & BPF_RINGBUF_BUSY_BIT:
                    break
                pend += _round_up((hlen & ~BPF_RINGBUF_DISCARD_BIT) + BPF_RINGBUF_HDR_SZ, 8)
            self._pending = pend
            new_prod = prod + length
            # The kernel keeps at most size - 1 bytes in flight, counted from the consumer and
            # from the oldest record not yet committed.
            if new_prod - cons > self.mask or new_prod - pend > self.mask:
                return 0
            hdr = self.data_base + (prod & self.mask)
            ctypes.c_uint32.from_address(hdr).value = size | BPF_RINGBUF_BUSY_BIT
            ctypes.c_uint32.from_address(hdr + 4).value = (prod & self.mask) // PAGE_SIZE
            self._prod = new_prod
            ctypes.c_uint64.from_address(self.handle + _OFF_POS1).value = new_prod
            self._reserved.add(hdr + BPF_RINGBUF_HDR_SZ)
        return hdr + BPF_RINGBUF_HDR_SZ

    def _commit(self, address: int, flags: int, discard: bool) -> int:
        with self._lock:
            if address not in self._reserved:
                return -E.EINVAL  # not a record's start, or committed already: leave it alone
            self._reserved.discard(address)
        hdr = address - BPF_RINGBUF_HDR_SZ
        word = ctypes.c_uint32.from_address(hdr)
        new = word.value ^ BPF_RINGBUF_BUSY_BIT
        if discard:
            new |= BPF_RINGBUF_DISCARD_BIT
        word.value = new
        rec_pos = hdr - self.data_base
        if flags & BPF_RB_FORCE_WAKEUP or \
                (not flags & BPF_RB_NO_WAKEUP and (self._cons & self.mask) == rec_pos):
            with self._cond:
                self._cond.notify_all()
        return 0

    def submit(self, address: int, flags: int = 0) -> int:
        """bpf_ringbuf_submit: make the reserved record visible to the consumer; -EINVAL (and
        nothing changed) unless address starts a record reserved and not yet committed."""
        return self._commit(address, flags, False)

    def discard(self, address: int, flags: int = 0) -> int:
        """bpf_ringbuf_discard: release the reserved record; the consumer skips it."""
        return self._commit(address, flags, True)

    def output(self, data: bytes, flags: int = 0) -> int:
        """bpf_ringbuf_output: copy ``data`` into a new record; -EINVAL for unknown flags,
        -EAGAIN when there is no room."""
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            return -E.EINVAL
        data = bytes(data)
        rec = self.reserve(len(data))
        if not rec:
            return -E.EAGAIN
        ctypes.memmove(rec, data, len(data))
        self._commit(rec, flags, False)
        return 0

    def query(self, flag: int) -> int:
        """bpf_ringbuf_query: AVAIL_DATA 0, RING_SIZE 1, CONS_POS 2, PROD_POS 3; 0 otherwise."""
        if flag == BPF_RB_AVAIL_DATA:
            return self._prod - self._cons
        if flag == BPF_RB_RING_SIZE:
            return self.size
        if flag == BPF_RB_CONS_POS:
            return self._cons
        if flag == BPF_RB_PROD_POS:
            return self._prod
        return 0

    # consumer (Python side)

    def _ready(self) -> bool:
        return self._cons < self._prod and not self._hdr_len(self._cons) & BPF_RINGBUF_BUSY_BIT

    def consume(self, callback: Callable[[bytes], Any], max_records: int | None = None) -> int:
        """Hand every committed record, in order, to ``callback(bytes)`` (discarded ones are
        skipped, consumption stops at a record still reserved) and advance the consumer
        position. Returns the number of records handed over; a callback returning a negative
        int stops consumption and that int is returned (libbpf's convention)."""
        count = 0
        with self._consumer_lock:
            cons = self._cons
            while True:
                got_new = False
                prod = self._prod
                while cons < prod:
                    hlen = self._hdr_len(cons)
                    if hlen & BPF_RINGBUF_BUSY_BIT:
                        return count
                    got_new = True
                    length = hlen & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
                    start = cons
                    cons += _round_up(length + BPF_RINGBUF_HDR_SZ, 8)
                    if not hlen & BPF_RINGBUF_DISCARD_BIT:
                        sample = ctypes.string_at(
                            self.data_base + (start & self.mask) + BPF_RINGBUF_HDR_SZ, length)
                        try:
                            result = callback(sample)
                        except BaseException:
                            self._set_cons(cons)
                            raise
                        if isinstance(result, int) and not isinstance(result, bool) and result < 0:
                            self._set_cons(cons)
                            return result
                        count += 1
                    self._set_cons(cons)
                    if max_records is not None and count >= max_records:
                        return count
                if not got_new:
                    return count

    def _set_cons(self, cons: int) -> None:
        self._cons = cons
        ctypes.c_uint64.from_address(self.handle + _OFF_POS0).value = cons

    def poll(self, callback: Callable[[bytes], Any], max_records: int | None = None,
             timeout: float = 0.0) -> int:
        """Like :meth:`consume`; when nothing is ready, wait up to ``timeout`` seconds for a
        submit that wakes consumers (BPF_RB_NO_WAKEUP submits do not)."""
        count = self.consume(callback, max_records)
        if count or timeout <= 0:
            return count
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        return self.consume(callback, max_records)

    @property
    def avail_data(self) -> int:
        return self._prod - self._cons

    def _raw_pending(self) -> list[tuple[int, bytes]]:
        out = []
        pos = self._cons
        prod = self._prod
        while pos < prod:
            hlen = self._hdr_len(pos)
            if hlen & BPF_RINGBUF_BUSY_BIT:
                break
            length = hlen & ~BPF_RINGBUF_DISCARD_BIT
            if not hlen & BPF_RINGBUF_DISCARD_BIT:
                out.append((pos, ctypes.string_at(self.data_base + (pos & self.mask)
                                                  + BPF_RINGBUF_HDR_SZ, length)))
            pos += _round_up(length + BPF_RINGBUF_HDR_SZ, 8)
        return out

    def dump(self) -> list[tuple[Any, Any]]:
        """(position, bytes) of every committed record not consumed yet; consumes nothing."""
        return self._raw_pending()

    def __len__(self) -> int:
        raise self._unsupported("len()")

    def __contains__(self, key: Any) -> bool:
        raise self._unsupported("lookup")


# --- fd arrays: program array, array of maps ----------------------------------------------------


class _FdArray(Map):
    """Common part of PROG_ARRAY and ARRAY_OF_MAPS: ``max_entries`` slots holding Python
    objects; keys are u32 indexes; an empty slot is a missing key."""

    def _validate(self) -> None:
        if self.max_entries == 0:
            raise self._err("max_entries must be at least 1", E.EINVAL)
        if self.key_size != 4:
            raise self._err(f"array maps need key_size 4, got {self.key_size}", E.EINVAL)
        if self.value_size != 4:
            raise self._err(f"value_size must be 4 (a file descriptor), got {self.value_size}",
                            E.EINVAL)
        self._check_flags(ARRAY_CREATE_FLAG_MASK & ~(BPF_F_MMAPABLE | BPF_F_INNER_MAP))

    def _allocate(self) -> None:
        self._slots: list[Any] = [None] * self.max_entries

    def _check_object(self, obj: Any) -> None:
        raise NotImplementedError

    def _store(self, index: int, obj: Any) -> None:
        self._slots[index] = obj

    def _index_of(self, key: Any) -> tuple[bytes, int]:
        kb = self._encode_key(key)
        return kb, int.from_bytes(kb, "little")

    def update_elem(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        self._check_user_write()
        _, index = self._index_of(key)
        if flags != BPF_ANY:
            raise self._err(f"update of key {key!r}: flags must be BPF_ANY", E.EINVAL)
        if index >= self.max_entries:
            raise self._fail(-E.E2BIG, key, "update")
        if value is None:
            with self._lock:
                self._store(index, None)
            return
        self._check_object(value)
        with self._lock:
            self._store(index, value)

    def _delete_index(self, key: Any) -> int:
        _, index = self._index_of(key)
        if index >= self.max_entries:
            return -E.E2BIG
        with self._lock:
            if self._slots[index] is None:
                return -E.ENOENT
            self._store(index, None)
        return 0

    def delete_elem(self, key: Any) -> None:
        self._check_user_write()
        err = self._delete_index(key)
        if err:
            raise self._fail(err, key, "delete")

    def __delitem__(self, key: Any) -> None:
        self._check_user_write()
        err = self._delete_index(key)
        if err in (-E.ENOENT, -E.E2BIG):
            raise KeyError(key)

    def _object(self, key: Any) -> Any:
        _, index = self._index_of(key)
        return self._slots[index] if index < self.max_entries else None

    def __getitem__(self, key: Any) -> Any:
        self._check_user_read()
        obj = self._object(key)
        if obj is None:
            raise KeyError(key)
        return obj

    def lookup_elem(self, key: Any, flags: int = 0) -> Any:
        obj = self.get(key)
        if obj is None:
            raise self._fail(-E.ENOENT, key, "lookup")
        return obj

    def __contains__(self, key: Any) -> bool:
        try:
            return self._object(key) is not None
        except MapError:
            return False

    def keys(self) -> list[Any]:
        return [self._decode_key(i.to_bytes(4, "little"))
                for i, obj in enumerate(self._slots) if obj is not None]

    def items(self) -> list[tuple[Any, Any]]:
        return [(self._decode_key(i.to_bytes(4, "little")), obj)
                for i, obj in enumerate(self._slots) if obj is not None]

    def __len__(self) -> int:
        return sum(obj is not None for obj in self._slots)

    def clear(self) -> None:
        self._check_user_write()
        with self._lock:
            for i in range(self.max_entries):
                self._store(i, None)

    # kernel side: programs only tail-call through / look up these (verifier-enforced)
    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return -E.EOPNOTSUPP

    def delete(self, key: bytes) -> int:
        return -E.EOPNOTSUPP


class ProgArray(_FdArray):
    """BPF_MAP_TYPE_PROG_ARRAY: slots hold program objects, set by the loader (or by Python
    code: ``m[i] = prog``, ``m[i] = None``/``del m[i]`` to clear). ``program(index)`` is what
    bpf_tail_call uses: the program, or None for an empty or out-of-range slot."""

    type_name = "prog_array"

    def _check_object(self, obj: Any) -> None:
        if isinstance(obj, (Map, int, bytes, bytearray)):
            raise self._err(f"slots hold program objects, not {type(obj).__name__}", E.EINVAL)

    def set_program(self, index: int, prog: Any) -> None:
        """Put ``prog`` (None clears) into slot ``index`` (MapError E2BIG out of range). Works on
        frozen maps too: this is the loader's path, not a user-space write."""
        if not 0 <= index < self.max_entries:
            raise self._fail(-E.E2BIG, index, "set_program")
        if prog is not None:
            self._check_object(prog)
        with self._lock:
            self._slots[index] = prog

    def program(self, index: int) -> Any:
        """The program in slot ``index``, or None."""
        if 0 <= index < self.max_entries:
            return self._slots[index]
        return None


class _MapInMap:
    """Shared checks of ARRAY_OF_MAPS / HASH_OF_MAPS (mixin)."""

    spec: MapSpec

    def _validate_inner_template(self) -> None:
        inner = self.spec.inner
        if inner is None:
            raise self._err("a map-in-map needs an inner map template (spec.inner)", E.EINVAL)  # type: ignore[attr-defined]
        if int(inner.map_type) in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS,
                                   MapType.PROG_ARRAY):
            raise self._err(f"inner maps cannot be {map_type_name(inner.map_type)}",  # type: ignore[attr-defined]
                            E.EOPNOTSUPP)
        if int(inner.map_type) not in _CLASSES:
            raise self._err(f"inner map type {map_type_name(inner.map_type)} is not supported",  # type: ignore[attr-defined]
                            E.EOPNOTSUPP)

    def _check_inner(self, obj: Any) -> "Map":
        if isinstance(obj, int) and not isinstance(obj, bool):
            found = map_from_handle(obj)
            if found is None:
                raise self._err(f"{obj:#x} is not the handle of a live map", E.EBADF)  # type: ignore[attr-defined]
            obj = found
        if not isinstance(obj, Map):
            raise self._err(f"values are maps, not {type(obj).__name__}", E.EINVAL)  # type: ignore[attr-defined]
        t = self.spec.inner
        assert t is not None
        same = (obj.map_type == int(t.map_type) and obj.key_size == t.key_size
                and obj.value_size == t.value_size and obj.map_flags == t.map_flags
                and (obj.max_entries == t.max_entries or t.map_flags & BPF_F_INNER_MAP))
        if not same:
            raise self._err(  # type: ignore[attr-defined]
                f"inner map {obj.name} ({map_type_name(obj.map_type)}, key {obj.key_size}, value "
                f"{obj.value_size}, max_entries {obj.max_entries}, flags {obj.map_flags:#x}) does "
                f"not match the template ({map_type_name(t.map_type)}, key {t.key_size}, value "
                f"{t.value_size}, max_entries {t.max_entries}, flags {t.map_flags:#x})", E.EINVAL)
        return obj


class ArrayOfMaps(_MapInMap, _FdArray):
    """BPF_MAP_TYPE_ARRAY_OF_MAPS: slot ``i`` holds an inner Map. Natively a table of u64
    handles at ``value_base + 8 * i`` (0 = empty); the kernel-side ``lookup`` returns the inner
    map's handle itself (as the kernel returns the inner map pointer), 0 when empty."""

    type_name = "array_of_maps"

    def _validate(self) -> None:
        _FdArray._validate(self)
        self._validate_inner_template()

    def _allocate(self) -> None:
        _FdArray._allocate(self)
        self.elem_stride = 8
        self._table = self._alloc(8 * self.max_entries, "the handle table", self)
        self.value_base = self._table.address

    def _storage_regions(self) -> list[Region]:
        return [Region(self.value_base, 8 * self.max_entries, False,
                       f"map {self.name} inner-map handles")]

    def _check_object(self, obj: Any) -> None:
        self._check_inner(obj)

    def _store(self, index: int, obj: Any) -> None:
        if obj is not None:
            obj = self._check_inner(obj)
        self._slots[index] = obj
        ctypes.c_uint64.from_address(self.value_base + 8 * index).value = \
            obj.handle if obj is not None else 0

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        index = int.from_bytes(key[:4], "little")
        if index >= self.max_entries:
            return 0
        return ctypes.c_uint64.from_address(self.value_base + 8 * index).value

    def regions(self) -> list[Region]:
        out = list(self._own_regions)
        for inner in {id(m): m for m in self._slots if m is not None}.values():
            out.extend(inner.regions())
        return out

    def dump(self) -> list[tuple[Any, Any]]:
        return [(k, m.name) for k, m in self.items()]


class HashOfMaps(_MapInMap, HashMap):
    """BPF_MAP_TYPE_HASH_OF_MAPS: a hash whose values are inner Maps; natively each value slot
    holds the inner map's u64 handle and the kernel-side ``lookup`` returns that handle."""

    type_name = "hash_of_maps"
    _storage_value_size = 8

    def _validate(self) -> None:
        HashMap._validate(self)
        if self.value_size != 4:
            raise self._err(f"value_size must be 4 (a file descriptor), got {self.value_size}",
                            E.EINVAL)
        self._validate_inner_template()

    def _allocate(self) -> None:
        HashMap._allocate(self)
        self._inner: dict[bytes, Map] = {}

    def _storage_regions(self) -> list[Region]:
        return [Region(self.key_base, self.key_stride * self.max_entries, False,
                       f"map {self.name} keys")]

    def lookup(self, key: bytes, cpu: int = 0) -> int:
        if type(key) is not bytes:
            key = bytes(key)
        slot = self._index.get(key)
        if slot is None:
            return 0
        return ctypes.c_uint64.from_address(self._value_addr(slot)).value

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return -E.EOPNOTSUPP

    def delete(self, key: bytes) -> int:
        return -E.EOPNOTSUPP

    def elements(self, cpu: int = 0) -> list[tuple[int, int]]:
        return []

    def update_elem(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        self._check_user_write()
        kb = self._encode_key(key)
        inner = self._check_inner(value)

        def write(slot: int, new: bool) -> None:
            ctypes.c_uint64.from_address(self._value_addr(slot)).value = inner.handle
            self._inner[kb] = inner
        err = self._upsert(kb, flags, write)
        if err:
            raise self._fail(err, key, "update")

    def _raw_delete(self, key: bytes) -> int:
        with self._lock:
            if not self._drop(key):
                return -E.ENOENT
            self._inner.pop(key, None)
            return 0

    def _raw_clear(self) -> None:
        with self._lock:
            self._reset()
            self._inner.clear()

    def _raw_read(self, key: bytes) -> Any:
        return self._inner.get(key)

    def _decode_value(self, data: Any) -> Any:
        return data  # the inner Map itself

    def regions(self) -> list[Region]:
        out = list(self._own_regions)
        for inner in {id(m): m for m in list(self._inner.values())}.values():
            out.extend(inner.regions())
        return out

    def dump(self) -> list[tuple[Any, Any]]:
        return [(k, m.name) for k, m in self.items()]


# --- creation ---------------------------------------------------------------------------------

_CLASSES: dict[int, type[Map]] = {
    MapType.HASH: HashMap,
    MapType.ARRAY: ArrayMap,
    MapType.PROG_ARRAY: ProgArray,
    MapType.PERCPU_HASH: PercpuHashMap,
    MapType.PERCPU_ARRAY: PercpuArrayMap,
    MapType.LRU_HASH: LruHashMap,
    MapType.LRU_PERCPU_HASH: LruPercpuHashMap,
    MapType.ARRAY_OF_MAPS: ArrayOfMaps,
    MapType.HASH_OF_MAPS: HashOfMaps,
    MapType.QUEUE: QueueMap,
    MapType.STACK: StackMap,
    MapType.RINGBUF: RingBuf,
}


def create_map(spec: MapSpec, btf: Any = None, ncpus: int = 1,
               lock_offset: int | None = None) -> Map:
    """Create the map ``spec`` describes (MapError naming the map for an unsupported type or
    invalid sizes/flags, with the errno the kernel's BPF_MAP_CREATE would give).

    ``btf`` (optional) provides ``encode_value(type_id, value)`` / ``format_value(type_id,
    data)`` for BTF-shaped Python keys and values; ``ncpus`` is the number of per-cpu slots;
    ``lock_offset`` is the offset of the value's ``struct bpf_spin_lock``, if any."""
    cls = _CLASSES.get(int(spec.map_type))
    if cls is None:
        try:
            MapType(int(spec.map_type))
        except ValueError:
            raise MapError(f"map {spec.name}: unknown map type {spec.map_type}", E.EINVAL) from None
        raise MapError(f"map {spec.name}: map type {map_type_name(spec.map_type)} "
                       f"({int(spec.map_type)}) is not supported", E.EOPNOTSUPP)
    return cls(spec, btf=btf, ncpus=ncpus, lock_offset=lock_offset)

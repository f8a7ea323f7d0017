"""The common part of every map: the native header, the registry of live maps, the spec, and the
:class:`Map` base class with the Python-side (dict-like) API."""
from __future__ import annotations

import ctypes
import errno as E
import itertools
import os
import struct
import weakref
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from bpfjit.errors import MapError

from ..kptrs import KptrFields
from ..map_types import MapType
from ..memory import Buffer, Region
from .native import EXT_LOCK_OFFSET, EXT_MUTEX, EXT_SIZE, MapLock
from .uapi import (BPF_ANY, BPF_F_LOCK, BPF_F_MMAPABLE, BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY,
                   BPF_F_WRONLY_PROG, MAX_MAP_BYTES)

HEADER_SIZE = 64
# The kernel's ENOTSUPP (not in errno: it never reaches user space by that name), which it gives
# to BPF_MAP_FREEZE and mmap of a map whose values hold kptrs.
ENOTSUPP = 524
# Map types whose values may hold kptrs (the kernel's btf_field kptr allow-list, storage maps aside).
KPTR_MAP_TYPES = (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH, MapType.ARRAY,
                  MapType.PERCPU_ARRAY)
#: Layout of the header ``handle`` points at (all little-endian):
#:   0 u32 map_type   4 u32 key_size   8 u32 value_size   12 u32 max_entries   16 u32 map_flags
#:  20 u32 elem_stride (value stride: arrays, hashes, map-in-map handle tables; 0 otherwise)
#:  24 u64 value_base (arrays: value 0 of cpu 0; hashes: the value pool; array-of-maps: handle
#:         table; queues and stacks: the element ring; ring buffer: data area (mapped twice back
#:         to back); 0 otherwise)
#:  32 u32 ncpus      36 u32 map id (unique per process, like the kernel's map id)
#:  40 u64 cpu_stride (per-cpu arrays: bytes between one cpu's values and the next cpu's);
#:         ring buffer: consumer position
#:  48 u64 key_base (arrays: table of u32 indexes; hashes: the key pool); ring buffer: producer
#:         position
#:  56 8s  magic b"BPFJMAP\\0"
#: A perf event array (runtime/maps/perf_event.py) keeps its CPU buffers at value_base,
#: elem_stride apart, with cpu_stride bytes of room each, ncpus of them, and its possible CPUs
#: in key_base.
HEADER = struct.Struct("<IIIIIIQIIQQ8s")
assert HEADER.size == HEADER_SIZE
HEADER_MAGIC = b"BPFJMAP\0"
OFF_CONS_POS = 40
OFF_PROD_POS = 48

_ids = itertools.count(1)
_registry: "weakref.WeakValueDictionary[int, Map]" = weakref.WeakValueDictionary()


def map_from_handle(handle: int) -> "Map | None":
    """The live map whose header is at ``handle`` (what ``ld_imm64 src=1`` loaded), or None."""
    return _registry.get(handle)


def live_maps() -> list["Map"]:
    """Every map currently alive in this process."""
    return list(_registry.values())


def find_region(address: int, size: int) -> Region | None:
    """The region of any live map holding ``[address, address + size)``, or None. A fallback for
    memory the interpreter was not told about up front (inner maps added after load)."""
    for m in list(_registry.values()):
        for region in m._own_regions:
            if region.contains(address, size):
                return region
    return None


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


class ValueCodec(Protocol):
    """How a loader makes a map's values Python data when the BTF codec alone cannot: global
    data, whose function pointers read and write as handles of the object's functions."""

    def decode(self, data: bytes) -> Any:
        """The Python value of one value's bytes."""

    def encode(self, value: Any) -> bytes:
        """The bytes of a Python value (a BPFError naming the field that refuses it)."""


# --- the base class ---------------------------------------------------------------------------


class Map:
    """Common state and the Python-side API; subclasses provide storage and the kernel ops."""

    type_name = "map"
    percpu = False
    #: Keys are indexes into a fixed table (arrays, fd arrays): "full" means "out of range".
    indexed = False
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
        self.kptrs: KptrFields | None = None  # the values' kptr fields (attach_kptrs)
        self._kptr_members: dict[str, int] = {}  # value struct member name -> kptr offset
        self.value_codec: ValueCodec | None = None  # the loader's, for values the BTF codec cannot type
        self.frozen = False
        self.id = next(_ids)
        if not isinstance(ncpus, int) or ncpus < 1:
            raise self._err(f"ncpus must be a positive integer, got {ncpus!r}", E.EINVAL)
        self.ncpus = ncpus if self.percpu else 1
        self._nslots = ncpus if self.percpu else 1
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
        if self.indexed:  # array-like maps: u32 indexes into max_entries slots
            if self.max_entries == 0:
                raise self._err("max_entries must be at least 1", E.EINVAL)
            if self.key_size != 4:
                raise self._err(f"array maps need key_size 4, got {self.key_size}", E.EINVAL)
        self._validate()
        self._check_lock_offset()
        # The header comes first: the map lock and the native bookkeeping live in its native half.
        self._header = Buffer(HEADER_SIZE + EXT_SIZE)
        self.handle = self._header.address
        self.native = self.handle + HEADER_SIZE
        self._lock = MapLock(self.native + EXT_MUTEX)
        ctypes.c_uint32.from_address(self.native + EXT_LOCK_OFFSET).value = \
            0 if lock_offset is None else lock_offset + 1
        try:
            self._allocate()
        except MemoryError:
            raise self._err("not enough memory for the map's storage", E.ENOMEM) from None
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
        if self.map_type not in (MapType.HASH, MapType.ARRAY, MapType.SK_STORAGE):
            raise self._err("struct bpf_spin_lock is only supported in hash, array and sk_storage map values",
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

    def _write_header(self) -> None:
        self._header.write(HEADER.pack(
            self.map_type, self.key_size, self.value_size, self.max_entries, self.map_flags,
            self.elem_stride, self.value_base, self._nslots, self.id & 0xFFFFFFFF,
            self.cpu_stride, self.key_base, HEADER_MAGIC))

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
        are governed by BPF_F_RDONLY_PROG and the verifier). A map holding kptrs cannot be
        frozen (the kernel's ENOTSUPP)."""
        if self.kptrs is not None:
            raise self._err("a map whose values hold kptrs cannot be frozen", ENOTSUPP)
        self.frozen = True

    # -- kptr fields --

    def attach_kptrs(self, fields: KptrFields, members: dict[str, int] | None = None) -> None:
        """Give the map's values kptr fields (found in the value's BTF): their objects are
        released when a value is overwritten or deleted and when the map is freed. members:
        the value struct's members that are kptr fields (name -> offset), which Python reads
        as object handles. The kernel's rules: only some map types, never read-only or
        write-only for programs (EACCES), never mmapable (ENOTSUPP)."""
        if self.map_type not in KPTR_MAP_TYPES:
            raise self._err("kptr fields are only supported in hash, LRU hash, array and their per-cpu "
                            "maps' values", E.EOPNOTSUPP)
        if self.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
            raise self._err("a value with kptrs cannot be BPF_F_RDONLY_PROG or BPF_F_WRONLY_PROG", E.EACCES)
        if self.map_flags & BPF_F_MMAPABLE:
            raise self._err("a value with kptrs cannot be BPF_F_MMAPABLE", ENOTSUPP)
        for slot in fields.slots:
            if slot.offset % 8 or slot.offset + 8 > self.value_size:
                raise self._err(f"kptr at offset {slot.offset} is not an aligned 8-byte field of the "
                                f"{self.value_size}-byte value", E.EINVAL)
        self.kptrs = fields
        self._kptr_members = dict(members or {})
        base, size, stride = self._value_pool()
        fields.free_on_collect(self, base, size, stride, self._values)

    def _value_pool(self) -> tuple[int, int, int]:
        """(start, bytes, stride) of every value slot of the map (the maps that take kptrs)."""
        raise self._unsupported("kptr fields")

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
                   if not self.indexed else
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
        if self.value_codec is not None:
            return self.value_codec.encode(value)
        if self._kptr_members and isinstance(value, dict):
            # The kptr fields are not written from Python (see _write_value): any handle
            # or None given for them stands for NULL.
            value = {k: (0 if k in self._kptr_members else v) for k, v in value.items()}
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
            return [self._decode_one_value(d) for d in data]
        return self._decode_one_value(data)

    def _decode_one_value(self, data: bytes) -> Any:
        """A value as Python sees it: its kptr fields as object handles, or None for NULL."""
        if self.value_codec is not None:
            return self.value_codec.decode(data)
        value = self._decode(data, self.value_type_id)
        if self._kptr_members and isinstance(value, dict):
            for name, offset in self._kptr_members.items():
                value[name] = self.kptrs.handle(int.from_bytes(data[offset:offset + 8], "little"), self.btf)
        return value

    # -- value memory with the spin-lock word and the kptr fields left alone --

    def _write_value(self, address: int, data: bytes, new: bool) -> None:
        """Write a value around the words only the runtime changes: the spin lock (zeroed in
        a new element) and the kptr fields, whose objects are released (an overwritten
        value's, or whatever a reused slot still held) and which become NULL."""
        kept = self.kept_words()
        if not kept:
            ctypes.memmove(address, data, len(data))
            return
        start = 0
        for offset, size in kept:
            if offset > start:
                ctypes.memmove(address + start, data[start:offset], offset - start)
            start = offset + size
        if start < len(data):
            ctypes.memmove(address + start, data[start:], len(data) - start)
        if new and self.lock_offset is not None:
            ctypes.memset(address + self.lock_offset, 0, 4)
        if self.kptrs is not None:
            self.kptrs.empty(address)

    def kept_words(self) -> list[tuple[int, int]]:
        """(offset, size) of the value's words a value write leaves alone, in order."""
        kept = [(offset, 8) for offset in self.kptrs.offsets] if self.kptrs is not None else []
        if self.lock_offset is not None:
            kept.append((self.lock_offset, 4))
        return sorted(kept)

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

    def encode_entry(self, key: Any, value: Any) -> tuple[bytes, bytes]:
        """The bytes a key and a value are handed to bpf_map_update_elem as (what a loader writes
        into another engine's map: the kernel engine's map_updates); MapError for a per-CPU map,
        whose value is one per CPU."""
        data = self._encode_value(value)
        if isinstance(data, list):
            raise self._err("a per-CPU map's value is one per CPU: write it through update_elem", E.EINVAL)
        return self._encode_key(key), data

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


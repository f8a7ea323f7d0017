"""Maps whose values name other objects: BPF_MAP_TYPE_PROG_ARRAY, ARRAY_OF_MAPS and HASH_OF_MAPS."""
from __future__ import annotations

import ctypes
import errno as E
from typing import Any

from bpfjit.errors import MapError

from ..map_types import MapType, map_type_name
from ..memory import Region
from .base import Map, MapSpec, map_from_handle
from .hash import HashMap
from .uapi import ARRAY_CREATE_FLAG_MASK, BPF_ANY, BPF_F_INNER_MAP, BPF_F_MMAPABLE


class _FdArray(Map):
    """Common part of PROG_ARRAY and ARRAY_OF_MAPS: ``max_entries`` slots holding Python
    objects; keys are u32 indexes; an empty slot is a missing key."""

    indexed = True

    def _validate(self) -> None:
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
    bpf_tail_call uses: the program, or None for an empty or out-of-range slot.

    Natively, a table of ``max_entries`` u64 entry points at ``entry_table``: slot ``i``'s is
    the address the JIT's tail calls call (jit/lower.py), :attr:`EMPTY_ENTRY` for an empty slot
    (the call fails natively), or 0 while its program has no such entry yet. An entry is filled
    on first use: a tail call that finds 0 takes the Python helper, which asks the slot's
    program for it (:meth:`publish_entry`). Changing a slot resets its entry. The programs a
    slot held keep their code alive as long as the map lives: a run on another thread may still
    be inside the code (the kernel waits for an RCU grace period; nothing here knows when runs
    are done with it).

    The native interpreter's tail calls (jit/native_interp_ir.py) read a second table of the
    same shape at ``image_table``: slot ``i``'s program image (the address of its header) for
    the interpreter to switch to, with the same EMPTY_ENTRY and 0; bpfjit.program fills it
    (:meth:`publish_image`) for the arrays a program names before it runs interpreted, so the
    interpreted path stays interpreted (a JIT entry would leave it)."""

    type_name = "prog_array"
    EMPTY_ENTRY = 1  # the native entry of an empty slot (no code lives at address 1)
    owner: tuple[str, bool] | None = None  # the kind of its first user (claim)

    def _allocate(self) -> None:
        _FdArray._allocate(self)
        self._entries = self._alloc(8 * self.max_entries, "the native entry table", self)
        self.entry_table = self._entries.address
        self._images = self._alloc(8 * self.max_entries, "the interpreter's image table", self)
        self.image_table = self._images.address
        for table in (self.entry_table, self.image_table):
            (ctypes.c_uint64 * self.max_entries).from_address(table)[:] = [self.EMPTY_ENTRY] * self.max_entries
        self._retired: list[Any] = []

    def _check_object(self, obj: Any) -> None:
        if isinstance(obj, (Map, int, bytes, bytearray)):
            raise self._err(f"slots hold program objects, not {type(obj).__name__}", E.EINVAL)
        kind = getattr(obj, "tail_call_kind", None)
        if kind is not None:
            self.claim(kind, f"program {getattr(obj, 'name', '?')!r}")

    def claim(self, kind: tuple[str, bool], user: str) -> None:
        """The kernel's bpf_prog_map_compatible: the first program that uses the array (names it,
        or is stored in it) gives it its kind (program type, xdp frags flag); a program of
        another kind is refused (MapError, EINVAL), as a tail call may only keep both."""
        with self._lock:
            if self.owner is None:
                self.owner = kind
                return
            owner = self.owner
        if owner != kind:
            raise self._err(f"{user}: prog array {self.name} holds {_kind_text(owner)} programs, not "
                            f"{_kind_text(kind)} ones (a tail call keeps the type and the xdp frags flag)", E.EINVAL)

    def _entry(self, index: int, table: int | None = None) -> ctypes.c_uint64:
        """Slot ``index``'s word in ``table`` (the JIT's entry table unless named)."""
        return ctypes.c_uint64.from_address((self.entry_table if table is None else table) + 8 * index)

    def _store(self, index: int, obj: Any) -> None:
        entries = [self._entry(index, table) for table in (self.entry_table, self.image_table)]
        if any(entry.value not in (0, self.EMPTY_ENTRY) for entry in entries):
            self._retired.append(self._slots[index])
        for entry in entries:
            entry.value = self.EMPTY_ENTRY if obj is None else 0
        self._slots[index] = obj

    def set_program(self, index: int, prog: Any) -> None:
        """Put ``prog`` (None clears) into slot ``index`` (MapError E2BIG out of range). Works on
        frozen maps too: this is the loader's path, not a user-space write."""
        if not 0 <= index < self.max_entries:
            raise self._fail(-E.E2BIG, index, "set_program")
        if prog is not None:
            self._check_object(prog)
        with self._lock:
            self._store(index, prog)

    def program(self, index: int) -> Any:
        """The program in slot ``index``, or None."""
        if 0 <= index < self.max_entries:
            return self._slots[index]
        return None

    def publish_entry(self, index: int) -> None:
        """Fill slot ``index``'s native entry from its program's ``tail_call_entry()``
        (bpfjit.program: compiles the program if need be; None when it cannot be called so). A
        slot changed meanwhile keeps its new state; a filled or empty one is left as it is."""
        self._publish(self.entry_table, index, "tail_call_entry")

    def publish_image(self, index: int) -> None:
        """Fill slot ``index``'s entry in the interpreter's image table from its program's
        ``tail_call_image()`` (bpfjit.program: its bound image; None when the interpreter cannot
        switch to it), as :meth:`publish_entry` fills the JIT's."""
        self._publish(self.image_table, index, "tail_call_image")

    def _publish(self, table: int, index: int, method: str) -> None:
        """Fill slot ``index``'s word in ``table`` with what its program's ``method`` gives,
        unless the word is set or the slot changes meanwhile."""
        if self._entry(index, table).value:
            return
        prog = self.program(index)
        entry = getattr(prog, method, None)
        address = entry() if entry is not None else None
        if not address:
            return
        with self._lock:
            if self._slots[index] is prog:
                self._entry(index, table).value = address


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
        from .create import supported  # create imports this module: a cycle at load time
        if not supported(inner.map_type):
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
        slot = self._slot(key)
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


def _kind_text(kind: tuple[str, bool]) -> str:
    program_type, frags = kind
    return f"{program_type or 'raw'}{' (xdp frags)' if frags else ''}"

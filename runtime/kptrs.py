"""Objects programs own through kptrs: the allocator behind bpf_obj_new, and the kptr fields of
map values (docs/semantics.md#kptrs).

An object is zeroed native memory in one arena (anonymous pages) per loaded object, so that every engine reaches
it at the same address, the interpreter's region checks accept it (the arena is one region) and
the JIT needs no bookkeeping. Each object carries a reference count: bpf_obj_new gives it 1,
bpf_obj_drop and the release of a map value's kptr field take one away, and at 0 the object is
freed (its memory goes back to a free list). The allocator counts live objects and refuses to
release an address it did not hand out, so a double free is an error instead of corruption.

A host object (what a user kfunc that acquires returns, runtime/kfuncs.py) has one object here
while it has references: each acquire of it adds one, so programs see one pointer per host
object, as they see one per kernel object. When its last reference goes, wherever that happens
(a program's release, a map element deleted or overwritten, a map freed), the release function of
its type gives it back to the host, with no lock of this module held: that is the host's code.

A referenced kptr field of a map value owns the object it holds. Every write of such a field
goes through :data:`FIELD_LOCK` (bpf_kptr_xchg, and the map code that empties a value on update,
delete and map free), which makes the exchange atomic against every other writer: the verifier
lets no program store into a referenced kptr field directly.
"""
from __future__ import annotations

import ctypes
import mmap
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from bpfjit.errors import BPFRuntimeError, BTFError

from .btf.types import Kind, Struct
from .memory import Region

# Every write of a referenced kptr field holds this lock (see the module's docstring). Both it and
# each allocator's lock are re-entrant: a map freed by a garbage collection empties its values (a
# finalizer) in whichever thread the collection runs, perhaps one that holds them at that moment.
FIELD_LOCK = threading.RLock()
# Objects are handed out in multiples of this many bytes, each at an address aligned to it.
OBJECT_ALIGN = 16
# Default arena: the most object memory one loaded object may hold at once (pages are touched
# only as objects use them).
DEFAULT_ARENA_BYTES = 4 << 20
# Where a deleted hash element's referenced kptr fields point until the element is reused: a
# program still holding the element (it looked it up before the delete) may exchange an object
# into it, and the exchange then releases that object at once instead of leaking it in a free
# slot. The tombstone is a zeroed block of this many bytes, so an untrusted load of such a field
# reads zeros.
TOMBSTONE_BYTES = 4096


class ObjectError(BPFRuntimeError):
    """An object released that the allocator did not hand out (a double free)."""

    def __init__(self, message: str):
        super().__init__(-1, message)


@dataclass
class LiveObject:
    """One allocated object: where, how big (rounded to OBJECT_ALIGN, and as asked), its BTF
    type id, how many references it has (0 while its release function runs); for a host object,
    the host's value it copies and what to call with its address when its last reference goes."""
    address: int
    size: int
    type_id: int
    asked: int
    refs: int = 1
    host: Any = None
    on_free: Callable[[int], None] | None = None


class ObjectAllocator:
    """Zeroed native objects in one arena, with reference counts and a live count."""

    def __init__(self, arena_bytes: int = DEFAULT_ARENA_BYTES):
        # Anonymous pages: zero until touched, so an object that never makes one costs nothing.
        self._arena = mmap.mmap(-1, TOMBSTONE_BYTES + arena_bytes)
        start = ctypes.addressof(ctypes.c_char.from_buffer(self._arena))
        self.tombstone = start
        self._next = start + TOMBSTONE_BYTES  # bump pointer
        self._end = start + len(self._arena)
        self._free: dict[int, list[int]] = {}  # rounded size -> free addresses
        self._live: dict[int, LiveObject] = {}
        # The objects of the host objects that have references: (id of the host's value, type
        # id) -> address. The object keeps the value, so its id is not reused meanwhile.
        self._hosts: dict[tuple[int, int], int] = {}
        self._lock = threading.RLock()  # re-entrant, as FIELD_LOCK is
        self.allocated = 0  # objects handed out so far
        self.freed = 0  # objects freed so far
        # The arena, as the interpreter checks accesses against it (the tombstone included).
        self.region = Region(start, len(self._arena), True, "kptr objects")

    @property
    def live(self) -> int:
        """Objects allocated and not yet freed."""
        return len(self._live)

    def objects(self) -> list[LiveObject]:
        """The live objects, oldest address first."""
        with self._lock:
            return sorted(self._live.values(), key=lambda o: o.address)

    def allocate(self, size: int, type_id: int) -> int:
        """A new zeroed object of size bytes (one reference), or 0 when the arena is full, as
        bpf_obj_new returns NULL when memory runs out."""
        with self._lock:
            return self._allocate(size, type_id)

    def _allocate(self, size: int, type_id: int) -> int:
        """allocate, with the lock held."""
        rounded = max(OBJECT_ALIGN, -(-size // OBJECT_ALIGN) * OBJECT_ALIGN)
        spare = self._free.get(rounded)
        if spare:
            address = spare.pop()
        elif self._next + rounded <= self._end:
            address, self._next = self._next, self._next + rounded
        else:
            return 0
        ctypes.memset(address, 0, rounded)
        self._live[address] = LiveObject(address, rounded, type_id, size)
        self.allocated += 1
        return address

    def adopt(self, host: Any, type_id: int, encode: Callable[[], bytes],
              on_free: Callable[[int], None] | None) -> int:
        """The object of a host object: the one it has while that has references, with one
        reference more; else a new one with one reference holding encode()'s bytes (an object
        of its type's size), whose last release calls on_free with its address before it is
        freed. 0 when the arena is full."""
        key = (id(host), type_id)
        with self._lock:
            if key in self._hosts:
                return self._share(key)
        data = encode()  # outside the lock: it reads the host's value
        with self._lock:
            if key in self._hosts:  # another thread adopted it meanwhile
                return self._share(key)
            address = self._allocate(len(data), type_id)
            if address:
                ctypes.memmove(address, data, len(data))
                found = self._live[address]
                found.host, found.on_free = host, on_free
                self._hosts[key] = address
            return address

    def _share(self, key: tuple[int, int]) -> int:
        """One more reference to a host object's object (lock held)."""
        address = self._hosts[key]
        self._live[address].refs += 1
        return address

    def acquire(self, address: int) -> None:
        """One more reference to a live object."""
        with self._lock:
            self._object(address, "acquire").refs += 1

    def release(self, address: int) -> None:
        """One reference less; the object is freed when none is left, after its release
        function (a host object's) has seen it."""
        with self._lock:
            found = self._object(address, "release")
            found.refs -= 1
            if found.refs:
                return
            if found.host is not None:
                del self._hosts[(id(found.host), found.type_id)]
            if found.on_free is None:
                self._discard(found)
                return
        try:
            found.on_free(address)  # the host's code: no lock held
        finally:
            with self._lock:
                self._discard(found)

    def release_all(self, addresses: Iterable[int]) -> None:
        """release each address, all of them even when a release function fails (the first
        failure is raised after)."""
        failure: BaseException | None = None
        for address in addresses:
            try:
                self.release(address)
            except BaseException as exc:  # re-raised once the others are released
                failure = failure or exc
        if failure is not None:
            raise failure

    def _discard(self, found: LiveObject) -> None:
        """Free an object whose references are gone (lock held): its memory goes back."""
        del self._live[found.address]
        self._free.setdefault(found.size, []).append(found.address)
        self.freed += 1

    def exchange(self, field_address: int, new: int) -> int:
        """bpf_kptr_xchg: put new into the referenced kptr field at field_address and return
        what it held. A field holding the tombstone belongs to a deleted hash element: new is
        released at once and NULL comes back, as if the delete had come right after."""
        with FIELD_LOCK:
            word = ctypes.c_uint64.from_address(field_address)
            old = word.value
            if old != self.tombstone:
                word.value = new
                return old
        if new:
            self.release(new)
        return 0

    def get(self, address: int) -> LiveObject | None:
        """The live object at address, or None."""
        with self._lock:
            return self._live.get(address)

    def _object(self, address: int, what: str) -> LiveObject:
        found = self._live.get(address)
        if found is None or not found.refs:  # no refs: its release function is running
            raise ObjectError(f"{what} of {address:#x}, which is no live object (a double free?)")
        return found


@dataclass(frozen=True)
class KptrSlot:
    """A kptr field of a map value: where, whether it owns its object (``__kptr``) or not
    (``__kptr_untrusted``), and the BTF type id, name and size of the struct it points to."""
    offset: int
    referenced: bool
    type_id: int
    type_name: str
    size: int


# The type tags of kptr fields: the referenced ones (``__kptr``, before 2023 ``__kptr_ref``) and
# the untrusted one (``__kptr_untrusted``).
REFERENCED_TAGS = ("kptr", "kptr_ref")
UNTRUSTED_TAG = "kptr_untrusted"


def kptr_slots(btf: Any, type_id: int) -> tuple[tuple[KptrSlot, ...], dict[str, int]]:
    """The kptr fields of a map value type, and which of its struct's own members they are
    (name -> offset). A kptr must point to a struct, as the kernel's btf_parse_kptr requires;
    per-cpu kptrs and uptrs are not supported."""
    found = btf.find_special_fields(type_id) if type_id else None
    if found is None or not found.kptrs:
        return (), {}
    slots = []
    for kptr in found.kptrs:
        if kptr.tag not in (*REFERENCED_TAGS, UNTRUSTED_TAG):
            raise BTFError(f"BTF: type id {type_id}: '{kptr.tag}' fields (offset {kptr.offset}) are not supported")
        target = btf.types[kptr.type_id]
        if not isinstance(target, Struct) or target.kind != Kind.STRUCT:
            raise BTFError(f"BTF: type id {type_id}: the kptr at offset {kptr.offset} must point to a struct, "
                           f"not type id {kptr.type_id}")
        slots.append(KptrSlot(kptr.offset, kptr.tag in REFERENCED_TAGS, kptr.type_id, target.name, target.size))
    value = btf.resolved(type_id)
    offsets = {slot.offset for slot in slots}
    members = {m.name: m.byte_offset for m in getattr(value, "members", ())
               if m.name and not m.bitfield_size and m.byte_offset in offsets
               and btf.resolved(m.type).kind == Kind.PTR}
    return tuple(slots), members


class KptrFields:
    """The kptr fields of one map's values and the allocator their objects come from: what
    the map code calls to empty a value's referenced fields when it is overwritten, deleted
    or freed."""

    def __init__(self, slots: Sequence[KptrSlot], allocator: ObjectAllocator):
        self.slots = tuple(slots)
        self.allocator = allocator
        self.referenced = tuple(s.offset for s in self.slots if s.referenced)
        self.offsets = tuple(s.offset for s in self.slots)

    def empty(self, address: int, tombstone: bool = False) -> None:
        """Release the objects the referenced fields of the value at address hold and set the
        fields to NULL (to the tombstone for a deleted hash element); the untrusted fields are
        set to NULL, as they own nothing."""
        fill = self.allocator.tombstone if tombstone else 0
        taken = []
        with FIELD_LOCK:
            for offset in self.offsets:
                word = ctypes.c_uint64.from_address(address + offset)
                if offset in self.referenced and word.value not in (0, self.allocator.tombstone):
                    taken.append(word.value)
                word.value = fill if offset in self.referenced else 0
        self.allocator.release_all(taken)

    def free_on_collect(self, owner: Any, base: int, size: int, stride: int, keep: Any) -> None:
        """Release every object owner's values hold when owner (a map) is garbage-collected:
        the values are `size` bytes from base, one per stride bytes (free hash slots included,
        whose fields are NULL or the tombstone); keep is the memory, kept alive until then."""
        weakref.finalize(owner, _free_all, self, base, size, stride, keep)

    def handle(self, pointer: int, btf: Any) -> "ObjectHandle | None":
        """What Python sees for a kptr field holding pointer (btf: the map's, which types the
        object)."""
        if pointer in (0, self.allocator.tombstone):
            return None
        found = self.allocator.get(pointer)
        return ObjectHandle(pointer, found.type_id if found else 0, self.allocator, btf)


def _free_all(fields: KptrFields, base: int, size: int, stride: int, keep: Any) -> None:
    for address in range(base, base + size - stride + 1, stride):
        fields.empty(address)


@dataclass(frozen=True)
class ObjectHandle:
    """A kptr field's object as Python sees it: its address and BTF type id; read() gives its
    fields while it lives."""
    address: int
    type_id: int
    allocator: ObjectAllocator = field(compare=False, repr=False)
    btf: Any = field(default=None, compare=False, repr=False)

    @property
    def host(self) -> Any:
        """The host's value this object copies (what the user kfunc that acquired it returned),
        while the object exists; None for a program's own objects (bpf_obj_new)."""
        found = self.allocator.get(self.address)
        return found.host if found is not None and found.type_id == self.type_id else None

    @property
    def live(self) -> bool:
        """Whether the object still exists (a program may have dropped it since)."""
        found = self.allocator.get(self.address)
        return found is not None and found.type_id == self.type_id

    def read(self) -> Any:
        """The object's fields now (by its BTF struct), or None once it is freed."""
        found = self.allocator.get(self.address)
        if found is None or found.type_id != self.type_id:
            return None
        data = ctypes.string_at(self.address, found.asked)
        return self.btf.format_value(self.type_id, data) if self.btf is not None else data

    def __repr__(self) -> str:
        return f"<kptr object {self.address:#x} type {self.type_id}{'' if self.live else ' freed'}>"

"""Maps without keys that hold values in order: BPF_MAP_TYPE_QUEUE and BPF_MAP_TYPE_STACK."""
from __future__ import annotations

import ctypes
import errno as E
from typing import Any, Iterator

from .base import Map
from .native import EXT_QUEUE_HEAD, EXT_QUEUE_TAIL, NativeField
from .uapi import BPF_ANY, BPF_EXIST, BPF_NOEXIST, KMALLOC_MAX_SIZE, QUEUE_STACK_CREATE_FLAG_MASK


class QueueMap(Map):
    """BPF_MAP_TYPE_QUEUE (FIFO). Elements live in a native ring of ``max_entries + 1`` slots,
    like the kernel's; its head and tail are words of the header's native half
    (runtime/maps/native.py), changed under the map lock by these methods and by the native
    helpers (jit/native_queue.py) alike. Kernel side: ``push(value, flags)``, ``pop(out_address)``,
    ``peek(out_address)``; Python side: ``push_elem``, ``pop_elem``, ``peek_elem``, ``len``,
    ``values()`` (in pop order), ``clear``."""

    type_name = "queue"
    stack = False
    head = NativeField(EXT_QUEUE_HEAD, ctypes.c_uint32)  # the next slot to write
    tail = NativeField(EXT_QUEUE_TAIL, ctypes.c_uint32)  # the oldest element

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
        self.value_base = self._elems.address

    def _slot(self, index: int) -> int:
        return self.value_base + index * self.value_size

    # kernel side

    def push(self, value: bytes, flags: int = 0) -> int:
        """bpf_map_push_elem: -E2BIG when full unless flags is BPF_EXIST, which drops the oldest
        element to make room; BPF_NOEXIST or unknown flags -> -EINVAL."""
        if flags & BPF_NOEXIST or flags > BPF_EXIST:
            return -E.EINVAL
        with self._lock:
            head = self.head
            following = head + 1 if head + 1 < self._size else 0
            if following == self.tail:
                if not flags & BPF_EXIST:
                    return -E.E2BIG
                self.tail = following + 1 if following + 1 < self._size else 0
            ctypes.memmove(self._slot(head), self._fit(value), self.value_size)
            self.head = following
        return 0

    def _get(self, out_address: int, delete: bool) -> int:
        with self._lock:
            head, tail = self.head, self.tail
            if head == tail:
                ctypes.memset(out_address, 0, self.value_size)
                return -E.ENOENT
            if self.stack:
                index = head - 1 if head > 0 else self._size - 1
                if delete:
                    self.head = index
            else:
                index = tail
                if delete:
                    self.tail = index + 1 if index + 1 < self._size else 0
            ctypes.memmove(out_address, self._slot(index), self.value_size)
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

    def update_elem(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """BPF_MAP_UPDATE_ELEM from user space, which on a queue or stack is a push (the key
        must be None: the kernel takes a NULL key)."""
        self._no_key(key, "update")
        self.push_elem(value, flags)

    def lookup_elem(self, key: Any, flags: int = 0) -> Any:
        """BPF_MAP_LOOKUP_ELEM from user space, which on a queue or stack is a peek."""
        self._no_key(key, "lookup")
        if flags:
            raise self._err(f"lookup flags {flags:#x} are invalid here", E.EINVAL)
        return self.peek_elem()

    def _no_key(self, key: Any, what: str) -> None:
        if key is not None:
            raise self._err(f"{what}: queue and stack maps have no key (pass None)", E.EINVAL)

    def _raw_values(self) -> list[bytes]:
        with self._lock:
            head, tail = self.head, self.tail
            out = []
            if self.stack:
                i = head
                while i != tail:
                    i = i - 1 if i > 0 else self._size - 1
                    out.append(ctypes.string_at(self._slot(i), self.value_size))
            else:
                i = tail
                while i != head:
                    out.append(ctypes.string_at(self._slot(i), self.value_size))
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
            return (self.head - self.tail) % self._size

    def _raw_clear(self) -> None:
        with self._lock:
            self.head = self.tail = 0

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

"""The common part of the maps whose elements are kernel objects bpfjit does not have: sockets
(SOCKMAP, SOCKHASH, XSKMAP, REUSEPORT_SOCKARRAY), socket-local storage (SK_STORAGE) and stack
traces (STACK_TRACE).

bpfjit runs in userspace, where there are no sockets and no kernel stacks to record, so such a
map is always empty: a program may be loaded and verified against it (its creation checks are the
kernel's), a lookup finds nothing, and a Python-side update is refused with a MapError saying why.
The map has a header (its handle) and no storage. docs/semantics.md#socket-maps-and-helpers.
"""
from __future__ import annotations

import errno as E
from typing import Any

from .base import Map
from .uapi import BPF_ANY


class KernelObjectMap(Map):
    """A map that can hold only kernel objects: always empty in userspace.

    Subclasses give ``_validate`` (the kernel's creation checks), ``refusal`` (why a Python-side
    update cannot work) with its errno, and ``_delete_errno`` (what the kernel's delete of a
    missing element returns for a valid key)."""

    refusal = "its elements are kernel objects, which bpfjit (in userspace) does not have"
    refusal_errno = E.EOPNOTSUPP

    def _allocate(self) -> None:
        pass  # nothing to store: the header alone

    def _delete_errno(self, key: bytes) -> int:
        return E.ENOENT

    # -- Python side --

    def update_elem(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        self._check_user_write()
        self._encode_key(key)  # a malformed key is reported as such first
        raise self._err(f"update of key {key!r} refused: {self.refusal}", self.refusal_errno)

    def _raw_keys(self) -> list[bytes]:
        return []

    def _raw_read(self, key: bytes) -> None:
        return None

    def _raw_delete(self, key: bytes) -> int:
        return -self._delete_errno(key)

    def _raw_clear(self) -> None:
        pass

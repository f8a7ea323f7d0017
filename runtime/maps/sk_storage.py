"""BPF_MAP_TYPE_SK_STORAGE: a value per socket, kept by the socket itself (socket-local storage),
with the creation checks of kernel/bpf/bpf_local_storage.c.

Programs reach the values with bpf_sk_storage_get/delete on a socket pointer, never by key;
user space looks them up by a socket fd. bpfjit has no sockets, so the map is always empty:
bpf_sk_storage_get finds (and creates) nothing, and Python-side updates are refused.
"""
from __future__ import annotations

import errno as E

from .kernel_objects import KernelObjectMap
from .uapi import BPF_F_NO_PREALLOC, LOCAL_STORAGE_CREATE_FLAG_MASK, LOCAL_STORAGE_MAX_VALUE_SIZE


class SkStorageMap(KernelObjectMap):
    type_name = "sk_storage"
    refusal = "its keys are socket file descriptors, and bpfjit (in userspace) has no sockets"

    def _validate(self) -> None:
        self._check_flags(LOCAL_STORAGE_CREATE_FLAG_MASK)
        if not self.map_flags & BPF_F_NO_PREALLOC:
            raise self._err("map_flags must have BPF_F_NO_PREALLOC (the storage is allocated per socket)",
                            E.EINVAL)
        if self.max_entries:
            raise self._err(f"max_entries must be 0 (one value per socket), got {self.max_entries}", E.EINVAL)
        if self.key_size != 4:
            raise self._err(f"key_size must be 4 (a socket fd), got {self.key_size}", E.EINVAL)
        if self.value_size == 0:
            raise self._err("value_size must be at least 1", E.EINVAL)
        if not (self.key_type_id and self.value_type_id):
            raise self._err("needs BTF for its key and value types (build with clang -g)", E.EINVAL)
        if self.value_size > LOCAL_STORAGE_MAX_VALUE_SIZE:
            raise self._err(f"value_size {self.value_size} is larger than {LOCAL_STORAGE_MAX_VALUE_SIZE}", E.E2BIG)

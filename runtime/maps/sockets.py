"""Maps of sockets: BPF_MAP_TYPE_SOCKMAP, SOCKHASH, XSKMAP and REUSEPORT_SOCKARRAY, with the
creation checks of net/core/sock_map.c, net/xdp/xskmap.c and kernel/bpf/reuseport_array.c.

In the kernel their values are socket file descriptors (AF_XDP sockets for XSKMAP), written from
user space or by sockops programs; programs look sockets up (a referenced PTR_TO_SOCKET, or an
xdp_sock), redirect to them or select them. bpfjit has no sockets: the maps stay empty, a lookup
from a program finds nothing (NULL), and a Python-side update is refused (KernelObjectMap).
"""
from __future__ import annotations

import errno as E

from .kernel_objects import KernelObjectMap
from .uapi import ARRAY_CREATE_FLAG_MASK, BPF_F_INNER_MAP, BPF_F_MMAPABLE, BPF_F_PRESERVE_ELEMS, MAX_BPF_STACK, \
    SOCK_CREATE_FLAG_MASK

_NO_SOCKETS = "its values are socket file descriptors, and bpfjit (in userspace) has no sockets"


class _SocketMap(KernelObjectMap):
    refusal = _NO_SOCKETS
    #: Value sizes the kernel accepts: a u32 fd, or (SOCKMAP, SOCKHASH, REUSEPORT) a u64 one.
    value_sizes: tuple[int, ...] = (4, 8)
    flag_mask = SOCK_CREATE_FLAG_MASK

    def _validate(self) -> None:
        if self.max_entries == 0:
            raise self._err("max_entries must be at least 1", E.EINVAL)
        if self.value_size not in self.value_sizes:
            sizes = " or ".join(str(size) for size in self.value_sizes)
            raise self._err(f"value_size must be {sizes} (a socket fd), got {self.value_size}", E.EINVAL)
        self._check_flags(self.flag_mask)


class SockMap(_SocketMap):
    """BPF_MAP_TYPE_SOCKMAP: ``max_entries`` socket slots indexed by a u32."""

    type_name = "sockmap"
    indexed = True

    def _delete_errno(self, key: bytes) -> int:
        return E.EINVAL  # sock_map_delete_elem: an empty (or out-of-range) slot


class SockHash(_SocketMap):
    """BPF_MAP_TYPE_SOCKHASH: sockets under keys of any size up to the BPF stack's."""

    type_name = "sockhash"

    def _validate(self) -> None:
        if self.key_size == 0:
            raise self._err("key_size must be at least 1", E.EINVAL)
        super()._validate()
        if self.key_size > MAX_BPF_STACK:
            raise self._err(f"key_size {self.key_size} is larger than the BPF stack ({MAX_BPF_STACK})", E.E2BIG)


class XskMap(_SocketMap):
    """BPF_MAP_TYPE_XSKMAP: AF_XDP sockets by queue index, for bpf_redirect_map from XDP."""

    type_name = "xskmap"
    indexed = True
    value_sizes = (4,)

    def _delete_errno(self, key: bytes) -> int:
        # xsk_map_delete_elem clears the slot whether or not it held a socket.
        return E.EINVAL if int.from_bytes(key, "little") >= self.max_entries else 0


class ReuseportSockArray(_SocketMap):
    """BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: sockets of one SO_REUSEPORT group, for
    bpf_sk_select_reuseport. Created with the array checks (array_map_alloc_check)."""

    type_name = "reuseport_sockarray"
    indexed = True
    flag_mask = ARRAY_CREATE_FLAG_MASK & ~(BPF_F_MMAPABLE | BPF_F_INNER_MAP | BPF_F_PRESERVE_ELEMS)

    def _delete_errno(self, key: bytes) -> int:
        return E.E2BIG if int.from_bytes(key, "little") >= self.max_entries else E.ENOENT

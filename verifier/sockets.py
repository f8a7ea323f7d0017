"""What a program may read through a socket pointer: the uapi views ``struct bpf_sock``,
``struct bpf_tcp_sock`` and ``struct bpf_xdp_sock``, with the rules of the kernel's
``bpf_sock_common_is_valid_access``, ``bpf_sock_is_valid_access``, ``bpf_tcp_sock_is_valid_access``
and ``bpf_xdp_sock_is_valid_access`` (net/core/filter.c). Socket pointers are read-only.
"""
from __future__ import annotations

from .state import RegType

_U32 = 4

# struct bpf_sock: (offset, size) of the fields that may be read in part (any power-of-two size up
# to a u32, at the field's start for the single words); every other word is read whole.
_BPF_SOCK_SIZE = 80
_NARROW_AT = {4, 8, 12, 44, 72, 76}  # family, type, protocol, src_port, state, rx_queue_mapping
_NARROW_RANGES = ((24, 4), (28, 16), (52, 4), (56, 16))  # src_ip4, src_ip6[4], dst_ip4, dst_ip6[4]
_DST_PORT = (48, 2)  # __be16 dst_port, then 2 bytes of padding no load may touch
_FULLSOCK_ONLY = (8, 24)  # type, protocol, mark, priority: not in a request or timewait socket

# struct bpf_tcp_sock: u32 fields up to icsk_retransmits (ends at 112), except two u64 counters.
_BPF_TCP_SOCK_END = 112
_TCP_U64 = {80, 88}  # bytes_received, bytes_acked

# struct bpf_xdp_sock: one u32, queue_id.
_BPF_XDP_SOCK_END = 4


def _narrow_ok(size: int, field_size: int) -> bool:
    return size <= field_size and size & (size - 1) == 0


def _bpf_sock(off: int, size: int) -> bool:
    if not 0 <= off < _BPF_SOCK_SIZE or off % size:
        return False
    if off in _NARROW_AT or any(start <= off < start + length for start, length in _NARROW_RANGES):
        return _narrow_ok(size, _U32)
    port, port_size = _DST_PORT
    if port <= off < port + port_size:
        return _narrow_ok(size, _U32 if size == _U32 else port_size)
    if port + port_size <= off < port + _U32:
        return False
    return size == _U32


def _bpf_sock_common(off: int, size: int) -> bool:
    low, high = _FULLSOCK_ONLY
    return not low <= off < high and _bpf_sock(off, size)


def _bpf_tcp_sock(off: int, size: int) -> bool:
    if not 0 <= off < _BPF_TCP_SOCK_END or off % size:
        return False
    return size == (8 if off in _TCP_U64 else _U32)


def _bpf_xdp_sock(off: int, size: int) -> bool:
    return 0 <= off < _BPF_XDP_SOCK_END and off % size == 0 and size == _U32


_RULES = {RegType.PTR_TO_SOCK_COMMON: _bpf_sock_common, RegType.PTR_TO_SOCKET: _bpf_sock,
          RegType.PTR_TO_TCP_SOCK: _bpf_tcp_sock, RegType.PTR_TO_XDP_SOCK: _bpf_xdp_sock}
SOCKET_TYPES = tuple(_RULES)


def readable(kind: RegType, off: int, size: int) -> bool:
    """Whether a load of `size` bytes at `off` through a socket pointer of this kind is allowed."""
    return _RULES[kind](off, size)

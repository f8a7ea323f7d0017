"""The socket helpers (socket lookups, socket pointer casts, socket-local storage, socket cookies,
flow hashes, FIB lookups), with what they can answer in userspace, where there are no sockets
and no flow dissector, and the routing table is the one the user fills (runtime/fib.py).

Their prototypes are the kernel's, so that the verifier checks a program as Linux does (socket
pointer types, references taken by lookups and dropped by bpf_sk_release). At run time no socket
exists: ``skb->sk`` is NULL, a lookup finds nothing (NULL), so the helpers that take a socket
are never reached by a verified program; those that take the context give what a socket-less
packet gives. See docs/semantics.md#socket-maps-and-helpers.
"""
from __future__ import annotations

import ctypes
import ipaddress
from errno import EAFNOSUPPORT, EINVAL, ENODEV, ENOENT

from . import helper_args, run_context
from .context import SK_BUFF
from .fib import FIB_REFUSALS, fib
from .helpers import errno_result
from .kernel_helpers import HELPER_IDS

# struct bpf_fib_lookup (uapi): 64 bytes; family (u8) at 0, ifindex (u32) at 8.
FIB_LOOKUP_SIZE = 64
FIB_LOOKUP_FLAGS = 0x3F  # BPF_FIB_LOOKUP_DIRECT | OUTPUT | SKIP_NEIGH | TBID | SRC | MARK
AF_INET, AF_INET6 = 2, 10
BPF_FIB_LOOKUP_SKIP_NEIGH = 4
# enum bpf_fib_lookup_ret
BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_NOT_FWDED = 0, 4
BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_FRAG_NEEDED = 7, 8


def no_socket(*_: int) -> int:
    """A lookup or cast that finds no socket: NULL (there are none in userspace)."""
    return 0


def sk_release(sk: int, *_: int) -> int:
    """Drop a socket reference: a verified program holds none (lookups find no socket)."""
    return 0


def sk_storage_delete(handle: int, sk: int, *_: int) -> int:
    """No socket has storage: -ENOENT, as for a socket without any."""
    return errno_result(ENOENT)


def get_socket_cookie(ctx: int, *_: int) -> int:
    """The cookie of the skb's socket, 0 without one (skb->sk is always NULL here)."""
    return 0


def get_hash_recalc(ctx: int, *_: int) -> int:
    """skb->hash as the run's context holds it (what ctx_in set; 0 by default). The kernel
    computes a flow hash, seeded randomly at boot, with its flow dissector; bpfjit has none."""
    region = run_context.current().regions.named("context")
    if region is None or region.start != ctx or region.size != SK_BUFF.native_size:
        return 0  # not an skb program's context
    return ctypes.c_uint32.from_address(ctx + SK_BUFF.field("hash").native_offset).value


def fib_lookup(ctx: int, params: int, size: int, flags: int, *_: int) -> int:
    """bpf_fib_lookup against the host's table as the user filled it (runtime/fib.py), with the
    kernel's argument checks and answers (net/core/filter.c, bpf_ipv4/ipv6_fib_lookup): no route,
    "not forwarded"; a blackhole, unreachable or prohibit route, its own answer; a packet longer
    than the egress device's MTU (tot_len), "fragmentation needed" with the MTU in mtu_result;
    else the egress ifindex, the route's metric, the gateway (as the destination: the next hop),
    and, unless BPF_FIB_LOOKUP_SKIP_NEIGH, the next hop's MAC from the neighbour table, "no
    neighbour" without one. The flags DIRECT, OUTPUT, TBID, SRC and MARK are accepted and change
    nothing: the table has one routing table, no policy rules and no source selection."""
    size &= 0xFFFF_FFFF
    if size < FIB_LOOKUP_SIZE or flags & ~FIB_LOOKUP_FLAGS:
        return errno_result(EINVAL)
    data = bytearray(helper_args.read(params, FIB_LOOKUP_SIZE, 2))
    family = data[0]
    if family not in (AF_INET, AF_INET6):
        return errno_result(EAFNOSUPPORT)
    if int.from_bytes(data[8:12], "little") not in fib.devices:
        return errno_result(ENODEV)
    destination = ipaddress.IPv4Address(bytes(data[32:36])) if family == AF_INET \
        else ipaddress.IPv6Address(bytes(data[32:48]))
    route = fib.route(destination)
    if route is None:
        return BPF_FIB_LKUP_RET_NOT_FWDED
    if route.kind != "unicast":
        return FIB_REFUSALS[route.kind]
    device = fib.devices[route.ifindex]
    answer = BPF_FIB_LKUP_RET_SUCCESS
    tot_len = int.from_bytes(data[6:8], "little")
    if tot_len > device.mtu:
        answer = BPF_FIB_LKUP_RET_FRAG_NEEDED
    else:
        data[8:12] = device.ifindex.to_bytes(4, "little")
        data[12:16] = route.metric.to_bytes(4, "little")
        if route.gateway is not None:  # the next hop: the program forwards to it (ipv4_dst / ipv6_dst)
            data[32:32 + len(route.gateway.packed)] = route.gateway.packed
        if not flags & BPF_FIB_LOOKUP_SKIP_NEIGH:
            neighbour = fib.neighbours.get(route.gateway or destination)
            if neighbour is None:
                answer = BPF_FIB_LKUP_RET_NO_NEIGH
            else:
                data[52:64] = device.mac + neighbour
        if answer == BPF_FIB_LKUP_RET_SUCCESS:
            data[48:52] = bytes(4)  # h_vlan_proto, h_vlan_TCI
    if answer != BPF_FIB_LKUP_RET_NO_NEIGH:
        data[6:8] = (device.mtu & 0xFFFF).to_bytes(2, "little")  # mtu_result: a u16, as the kernel truncates it
    helper_args.write(params, bytes(data), 2)
    return answer


def sk_lookup(ctx: int, tuple_: int, size: int, *_: int) -> int:
    """bpf_sk_lookup_tcp/udp, bpf_skc_lookup_tcp: the tuple is read (it must be the program's
    memory), and no socket matches it."""
    helper_args.check(tuple_, size & 0xFFFF_FFFF, 2)
    return 0


_SOCK_COMMON_CASTS = ("skc_to_tcp6_sock", "skc_to_tcp_sock", "skc_to_tcp_timewait_sock",
                      "skc_to_tcp_request_sock", "skc_to_udp6_sock")

# (helper id, implementation, argument kinds, return kind), as runtime/stdhelpers.py's table.
_LOOKUP_ARGS = ("ctx", "mem", "size", "any", "any")
TABLE = [
    (HELPER_IDS["sk_lookup_tcp"], sk_lookup, _LOOKUP_ARGS, "sock_or_null"),
    (HELPER_IDS["sk_lookup_udp"], sk_lookup, _LOOKUP_ARGS, "sock_or_null"),
    (HELPER_IDS["skc_lookup_tcp"], sk_lookup, _LOOKUP_ARGS, "sock_common_or_null"),
    (HELPER_IDS["sk_release"], sk_release, ("sock_release",), "integer"),
    (HELPER_IDS["sk_fullsock"], no_socket, ("sock_common",), "sock_or_null"),
    (HELPER_IDS["tcp_sock"], no_socket, ("sock_common",), "tcp_sock_or_null"),
    (HELPER_IDS["get_listener_sock"], no_socket, ("sock_common",), "sock_or_null"),
    *((HELPER_IDS[name], no_socket, ("btf_sock_common",), "btf_id_or_null") for name in _SOCK_COMMON_CASTS),
    (HELPER_IDS["sk_storage_get"], no_socket, ("map", "btf_sock_common_or_null", "value_or_null", "any"),
     "map_value_or_null"),
    (HELPER_IDS["sk_storage_delete"], sk_storage_delete, ("map", "btf_sock_common"), "integer"),
    (HELPER_IDS["get_socket_cookie"], get_socket_cookie, ("ctx",), "integer"),
    (HELPER_IDS["get_hash_recalc"], get_hash_recalc, ("ctx",), "integer"),
    (HELPER_IDS["fib_lookup"], fib_lookup, ("ctx", "mem", "size", "any"), "integer"),
]

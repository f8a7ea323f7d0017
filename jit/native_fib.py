"""LLVM IR of the native ``bpf_fib_lookup``: an XDP router's or a tc forwarder's per-packet route
lookup, answered from the native copy of the forwarding table (runtime/fib.py ``Fib.native``).

runtime/sock_helpers.py ``fib_lookup`` stays the reference (the interpreter calls it). This one
answers as it does: the first route in the table's order (longest prefix, then lowest metric)
whose network holds the destination, "not forwarded" with none, a refusing route's own answer,
"fragmentation needed" past the device's MTU, else the egress device, metric, next hop and, unless
BPF_FIB_LOOKUP_SKIP_NEIGH, both MACs or "no neighbour", writing the same fields of the struct
bpf_fib_lookup in the same cases. A call the Python helper refuses (a short struct, unknown
flags, another address family, an ingress device that does not exist) goes to it whole.

The table is a snapshot that runtime/fib.py makes each time the user changes the forwarding
state, with a route's device and gateway MAC resolved in it; the helper reads the snapshot's
address from one word, so a lookup sees one table whole, as a kernel lookup under RCU does. The
scans are linear: the table is what a test puts in, a handful of routes. The function lives in
the helper module of jit/native_maps.py and uses the small functions of jit/native_packet.py
and jit/native_skb.py.
"""
from __future__ import annotations

from bpfjit.isa import MASK32
from bpfjit.runtime import sock_helpers
from bpfjit.runtime.fib import TABLE_DEVICE, TABLE_HEADER, TABLE_NEIGHBOUR, TABLE_ROUTE
from bpfjit.runtime.kernel_helpers import HELPER_IDS

from .native_maps import PYTHON_PREFIX, twins
from .native_packet import field_offsets

FIB_TABLE = "bpfjit_fib_table"  # runtime/fib.py's Fib.native word, bound when the module is linked

PYTHON_FALLBACKS = {HELPER_IDS["fib_lookup"]: sock_helpers.fib_lookup}

_HEADER = field_offsets(TABLE_HEADER, "devices", "routes", "neighbours")
_DEVICE = field_offsets(TABLE_DEVICE, "ifindex", "mtu", "mac")
_ROUTE = field_offsets(TABLE_ROUTE, "version", "answer", "has_gateway", "gateway_known", "ifindex", "metric", "mtu",
                       "network", "mask", "gateway", "device_mac", "gateway_mac")
_NEIGHBOUR = field_offsets(TABLE_NEIGHBOUR, "version", "address", "mac")
# struct bpf_fib_lookup (uapi)
_FAMILY, _TOT_LEN, _IFINDEX, _METRIC, _DESTINATION, _VLAN, _SMAC, _DMAC = 0, 6, 8, 12, 32, 48, 52, 58
_MAC = 6




def _scan(name: str, start: str, count: str, stride: int, match: str) -> str:
    """``@fib_<name>(table %t, %a, %lo, %hi)``: the address of the first entry (`stride` bytes
    each, from the address IR `start` computes, `count` of them) for which the IR `match` sets
    %match from the entry %e, or 0."""
    return f"""
define internal i64 @fib_{name}(i64 %t, i64 %a, i64 %lo, i64 %hi) alwaysinline {{
entry:
  %devices = call i64 @ctx_u64(i64 %t, i64 {_HEADER["devices"]})
  %routes = call i64 @ctx_u64(i64 %t, i64 {_HEADER["routes"]})
  %neighbours = call i64 @ctx_u64(i64 %t, i64 {_HEADER["neighbours"]})
  %device_bytes = mul i64 %devices, {TABLE_DEVICE.size}
  %device_start = add i64 %t, {TABLE_HEADER.size}
  %route_start = add i64 %device_start, %device_bytes
  %route_bytes = mul i64 %routes, {TABLE_ROUTE.size}
  %neighbour_start = add i64 %route_start, %route_bytes
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %skip ]
  %more = icmp ult i64 %i, %{count}
  br i1 %more, label %check, label %none
check:
  %at = mul i64 %i, {stride}
  %e = add i64 %{start}, %at
{match}
  br i1 %match, label %found, label %skip
skip:
  %next = add i64 %i, 1
  br label %loop
found:
  ret i64 %e
none:
  ret i64 0
}}
"""


def _same_address(version: int, address: int) -> str:
    """IR reading an entry's version (%same_version: it is %a) and its 16-byte address at
    `address` (%nlo, %nhi)."""
    return f"""  %v = call i64 @ctx_u8(i64 %e, i64 {version})
  %same_version = icmp eq i64 %v, %a
  %nlo = call i64 @ctx_u64(i64 %e, i64 {address})
  %nhi = call i64 @ctx_u64(i64 %e, i64 {address + 8})"""


_SCANS = _scan("device", "device_start", "devices", TABLE_DEVICE.size, f"""
  %ifindex = call i64 @ctx_u32(i64 %e, i64 {_DEVICE["ifindex"]})
  %match = icmp eq i64 %ifindex, %a""") + _scan("route", "route_start", "routes", TABLE_ROUTE.size, f"""
{_same_address(_ROUTE["version"], _ROUTE["network"])}
  %mlo = call i64 @ctx_u64(i64 %e, i64 {_ROUTE["mask"]})
  %mhi = call i64 @ctx_u64(i64 %e, i64 {_ROUTE["mask"] + 8})
  %dlo = and i64 %lo, %mlo
  %dhi = and i64 %hi, %mhi
  %same_lo = icmp eq i64 %dlo, %nlo
  %same_hi = icmp eq i64 %dhi, %nhi
  %inside = and i1 %same_lo, %same_hi
  %match = and i1 %same_version, %inside""") + _scan("neighbour", "neighbour_start", "neighbours",
                                                      TABLE_NEIGHBOUR.size, f"""
{_same_address(_NEIGHBOUR["version"], _NEIGHBOUR["address"])}
  %same_lo = icmp eq i64 %lo, %nlo
  %same_hi = icmp eq i64 %hi, %nhi
  %same = and i1 %same_lo, %same_hi
  %match = and i1 %same_version, %same""")

_NAME = sock_helpers.fib_lookup.__name__

MODULE_IR = f"""
@{FIB_TABLE} = external global i64
declare i64 @{PYTHON_PREFIX}{_NAME}(i64, i64, i64, i64, i64)
""" + _SCANS + f"""
define i64 @bpfjit_native_{_NAME}(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
entry:
  %size = and i64 %r3, {MASK32}
  %long = icmp uge i64 %size, {sock_helpers.FIB_LOOKUP_SIZE}
  %unknown = and i64 %r4, {~sock_helpers.FIB_LOOKUP_FLAGS}
  %known = icmp eq i64 %unknown, 0
  %family = call i64 @ctx_u8(i64 %r2, i64 {_FAMILY})
  %ipv4 = icmp eq i64 %family, {sock_helpers.AF_INET}
  %ipv6 = icmp eq i64 %family, {sock_helpers.AF_INET6}
  %family_ok = or i1 %ipv4, %ipv6
  %k1 = and i1 %long, %known
  %ok = and i1 %k1, %family_ok
  br i1 %ok, label %table, label %python
table:
  %t = load i64, ptr @{FIB_TABLE}
  %ifindex = call i64 @ctx_u32(i64 %r2, i64 {_IFINDEX})
  %device = call i64 @fib_device(i64 %t, i64 %ifindex, i64 0, i64 0)
  %has_device = icmp ne i64 %device, 0
  br i1 %has_device, label %lookup, label %python
lookup:
  %version = select i1 %ipv4, i64 4, i64 6
  %lo4 = call i64 @ctx_u32(i64 %r2, i64 {_DESTINATION})
  %lo6 = call i64 @ctx_u64(i64 %r2, i64 {_DESTINATION})
  %hi6 = call i64 @ctx_u64(i64 %r2, i64 {_DESTINATION + 8})
  %lo = select i1 %ipv4, i64 %lo4, i64 %lo6
  %hi = select i1 %ipv4, i64 0, i64 %hi6
  %route = call i64 @fib_route(i64 %t, i64 %version, i64 %lo, i64 %hi)
  %routed = icmp ne i64 %route, 0
  br i1 %routed, label %kind, label %not_forwarded
not_forwarded:
  ret i64 {sock_helpers.BPF_FIB_LKUP_RET_NOT_FWDED}
kind:
  %answer = call i64 @ctx_u8(i64 %route, i64 {_ROUTE["answer"]})
  %unicast = icmp eq i64 %answer, 0
  br i1 %unicast, label %size_check, label %refused
refused:
  ret i64 %answer
size_check:
  %mtu = call i64 @ctx_u32(i64 %route, i64 {_ROUTE["mtu"]})
  %tot_len = call i64 @ctx_u16(i64 %r2, i64 {_TOT_LEN})
  %too_long = icmp ugt i64 %tot_len, %mtu
  br i1 %too_long, label %fragment, label %forward
fragment:
  call void @set_ctx_u16(i64 %r2, i64 {_TOT_LEN}, i64 %mtu)
  ret i64 {sock_helpers.BPF_FIB_LKUP_RET_FRAG_NEEDED}
forward:
  %egress = call i64 @ctx_u32(i64 %route, i64 {_ROUTE["ifindex"]})
  call void @set_ctx_u32(i64 %r2, i64 {_IFINDEX}, i64 %egress)
  %metric = call i64 @ctx_u32(i64 %route, i64 {_ROUTE["metric"]})
  call void @set_ctx_u32(i64 %r2, i64 {_METRIC}, i64 %metric)
  %has_gateway_byte = call i64 @ctx_u8(i64 %route, i64 {_ROUTE["has_gateway"]})
  %has_gateway = icmp ne i64 %has_gateway_byte, 0
  br i1 %has_gateway, label %next_hop, label %neighbour
next_hop:
  %address_size = select i1 %ipv4, i64 4, i64 16
  %destination = add i64 %r2, {_DESTINATION}
  %gateway = add i64 %route, {_ROUTE["gateway"]}
  call void @move(i64 %destination, i64 %gateway, i64 %address_size)
  br label %neighbour
neighbour:
  %skip = and i64 %r4, {sock_helpers.BPF_FIB_LOOKUP_SKIP_NEIGH}
  %skips = icmp ne i64 %skip, 0
  br i1 %skips, label %success, label %find
find:
  br i1 %has_gateway, label %gateway_mac, label %on_link
gateway_mac:
  %known_byte = call i64 @ctx_u8(i64 %route, i64 {_ROUTE["gateway_known"]})
  %known_mac = icmp ne i64 %known_byte, 0
  %gateway_mac_at = add i64 %route, {_ROUTE["gateway_mac"]}
  br i1 %known_mac, label %macs, label %no_neighbour
on_link:
  %host = call i64 @fib_neighbour(i64 %t, i64 %version, i64 %lo, i64 %hi)
  %host_known = icmp ne i64 %host, 0
  %host_mac_at = add i64 %host, {_NEIGHBOUR["mac"]}
  br i1 %host_known, label %macs, label %no_neighbour
macs:
  %mac_at = phi i64 [ %gateway_mac_at, %gateway_mac ], [ %host_mac_at, %on_link ]
  %smac = add i64 %r2, {_SMAC}
  %device_mac = add i64 %route, {_ROUTE["device_mac"]}
  call void @move(i64 %smac, i64 %device_mac, i64 {_MAC})
  %dmac = add i64 %r2, {_DMAC}
  call void @move(i64 %dmac, i64 %mac_at, i64 {_MAC})
  br label %success
success:
  %vlan = add i64 %r2, {_VLAN}
  call void @zero(i64 %vlan, i64 4)
  call void @set_ctx_u16(i64 %r2, i64 {_TOT_LEN}, i64 %mtu)
  ret i64 {sock_helpers.BPF_FIB_LKUP_RET_SUCCESS}
no_neighbour:
  ret i64 {sock_helpers.BPF_FIB_LKUP_RET_NO_NEIGH}
python:
  %py = call i64 @{PYTHON_PREFIX}{_NAME}(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5)
  ret i64 %py
}}
"""

FUNCTIONS = twins(*PYTHON_FALLBACKS.items())

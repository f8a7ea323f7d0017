"""The host's forwarding state as ``bpf_fib_lookup`` reads it: devices, routes and neighbours.

The kernel's helper answers from the routing table and the neighbour (ARP/NDP) table of the
machine the program runs on. A userspace run has none of its own, so the user puts in, from
Python, what the program's lookups should find (``bpfjit.fib``, one per process, as the kernel's
tables are per network namespace)::

    bpfjit.fib.add_device(2, mac="02:00:00:00:00:02", mtu=1500)
    bpfjit.fib.add_route("10.0.0.0/8", ifindex=2, via="192.0.2.1")
    bpfjit.fib.add_neighbour("192.0.2.1", mac="02:00:00:00:00:01")

Empty, as it starts (only the loopback device, ifindex 1, exists), every lookup is "not
forwarded" (BPF_FIB_LKUP_RET_NOT_FWDED), as on a host without routes. The answers follow
net/core/filter.c's bpf_ipv4/ipv6_fib_lookup: see runtime/sock_helpers.py.
"""
from __future__ import annotations

import ctypes
import ipaddress
import struct
import threading
from dataclasses import dataclass

from bpfjit.errors import BPFError

from .context import LOOPBACK_IFINDEX
from .memory import Buffer

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# The kinds of route, and the answer of each that refuses the packet (BPF_FIB_LKUP_RET_BLACKHOLE, ...).
FIB_REFUSALS = {"blackhole": 1, "unreachable": 2, "prohibit": 3}
ROUTE_KINDS = ("unicast", *FIB_REFUSALS)

# The native copy of the table that jit/native_fib.py's bpf_fib_lookup reads: the three counts,
# then the devices, the routes (in lookup order, each with what a lookup through it answers:
# its device's MTU and MAC, and its gateway's MAC if a neighbour is known for it) and the
# neighbours. Addresses take 16 bytes, an IPv4 one its first 4; a route's network is kept
# masked, with its mask beside it.
TABLE_HEADER = struct.Struct("<QQQ")  # devices, routes, neighbours
TABLE_DEVICE = struct.Struct("<II6s2x")  # ifindex, mtu, mac
# version, answer (0: unicast, else the refusal), has gateway, gateway's MAC known, ifindex, metric,
# the device's mtu, network, mask, gateway, the device's MAC, the gateway's MAC
TABLE_ROUTE = struct.Struct("<BBBBIII16s16s16s6s6s4x")
TABLE_NEIGHBOUR = struct.Struct("<B7x16s6s2x")  # version, address, mac


@dataclass(frozen=True)
class Device:
    ifindex: int
    mac: bytes
    mtu: int


@dataclass(frozen=True)
class Route:
    network: Network
    ifindex: int
    gateway: Address | None
    metric: int
    kind: str


def _mac(text: str | bytes) -> bytes:
    mac = bytes.fromhex(text.replace(":", "")) if isinstance(text, str) else bytes(text)
    if len(mac) != 6:
        raise BPFError(f"a MAC address has 6 bytes, not {len(mac)}: {text!r}")
    return mac


class Fib:
    """Devices by ifindex, routes (longest prefix first, then lowest metric) and neighbours."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The native table's address (0 before the first), which a native lookup reads once.
        # Every table made stays alive: a lookup running on another thread may still be reading
        # the one before; they are a few hundred bytes and made only when the user edits.
        self.native = ctypes.c_uint64(0)
        self._tables: list[Buffer] = []
        self.clear()

    def clear(self) -> None:
        """Back to a host with only its loopback device: no routes, no neighbours."""
        with self._lock:
            self.devices: dict[int, Device] = {LOOPBACK_IFINDEX: Device(LOOPBACK_IFINDEX, bytes(6), 65536)}
            self.routes: list[Route] = []
            self.neighbours: dict[Address, bytes] = {}
            self._publish()

    def _publish(self) -> None:
        """Make the native table of what the tables now hold (the caller holds the lock)."""
        def address(ip: Address | None) -> bytes:
            return ip.packed.ljust(16, b"\0") if ip is not None else bytes(16)

        routes = []
        for route in self.routes:
            device = self.devices.get(route.ifindex, Device(0, bytes(6), 0))
            gateway_mac = self.neighbours.get(route.gateway) if route.gateway is not None else None
            routes.append(TABLE_ROUTE.pack(
                route.network.version, FIB_REFUSALS.get(route.kind, 0), route.gateway is not None,
                gateway_mac is not None, route.ifindex, route.metric, device.mtu,
                address(route.network.network_address), address(route.network.netmask), address(route.gateway),
                device.mac, gateway_mac or bytes(6)))
        image = b"".join([TABLE_HEADER.pack(len(self.devices), len(routes), len(self.neighbours)),
                          *(TABLE_DEVICE.pack(d.ifindex, d.mtu, d.mac) for d in self.devices.values()), *routes,
                          *(TABLE_NEIGHBOUR.pack(ip.version, address(ip), mac) for ip, mac in self.neighbours.items())])
        table = Buffer(len(image), image)
        self._tables.append(table)
        self.native.value = table.address

    def add_device(self, ifindex: int, mac: str | bytes, mtu: int = 1500) -> None:
        if not isinstance(ifindex, int) or not 0 < ifindex < 1 << 31:
            raise BPFError(f"an ifindex is a positive 31-bit number, not {ifindex!r}")
        if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 0xFFFF:
            raise BPFError(f"device {ifindex}: an MTU is 68 to 65535 bytes, not {mtu!r}")
        with self._lock:
            self.devices[ifindex] = Device(ifindex, _mac(mac), mtu)
            self._publish()

    def add_route(self, prefix: str, ifindex: int | None = None, via: str | None = None, metric: int = 0,
                  kind: str = "unicast") -> None:
        """A route to `prefix` ("10.0.0.0/8", "2001:db8::/32"): out of device `ifindex`, to the
        gateway `via` (None: the destination is on the link); or a blackhole, unreachable or
        prohibit route (kind), which needs neither."""
        try:
            network = ipaddress.ip_network(prefix)
            gateway = ipaddress.ip_address(via) if via is not None else None
        except ValueError as error:
            raise BPFError(f"route {prefix!r}: {error}") from None
        if kind not in ROUTE_KINDS:
            raise BPFError(f"route {prefix!r}: kind is one of {', '.join(ROUTE_KINDS)}, not {kind!r}")
        if not isinstance(metric, int) or isinstance(metric, bool) or not 0 <= metric < 1 << 32:
            raise BPFError(f"route {prefix!r}: a metric is an unsigned 32-bit number, not {metric!r}")
        if kind != "unicast" and (ifindex is not None or gateway is not None):
            raise BPFError(f"route {prefix!r}: a {kind} route has no device or gateway")
        if kind == "unicast" and ifindex not in self.devices:
            raise BPFError(f"route {prefix!r}: no device {ifindex!r} (add_device first; known: "
                           f"{', '.join(map(str, sorted(self.devices)))})")
        if gateway is not None and gateway.version != network.version:
            raise BPFError(f"route {prefix!r}: gateway {via} is not an IPv{network.version} address")
        with self._lock:
            self.routes.append(Route(network, ifindex or 0, gateway, metric, kind))
            self.routes.sort(key=lambda route: (-route.network.prefixlen, route.metric))
            self._publish()

    def add_neighbour(self, address: str, mac: str | bytes) -> None:
        """The link-layer address of a host on a link (what ARP or NDP would have found)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError as error:
            raise BPFError(f"neighbour {address!r}: {error}") from None
        with self._lock:
            self.neighbours[ip] = _mac(mac)
            self._publish()

    def route(self, destination: Address) -> Route | None:
        """The route a packet to `destination` takes: the longest prefix holding it, the lowest
        metric among those of that length."""
        with self._lock:
            return next((route for route in self.routes
                         if route.network.version == destination.version and destination in route.network), None)


fib = Fib()

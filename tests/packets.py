"""The tests' short forms of bpfjit.packets, for tests that name one field and keep the rest.

A test of a parser wants frames cut exactly where it cuts them, so these frames are never padded
to the Ethernet minimum, and UDP goes from port 40000 with no checksum (tests/progs check only
the IPv4 header's). Everything else is bpfjit.packets itself.
"""
from __future__ import annotations

from bpfjit import packets
from bpfjit.packets import ETH_P_IP, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, inet_csum, ipv4

__all__ = ["IPPROTO_ICMP", "IPPROTO_TCP", "IPPROTO_UDP", "ethernet", "frame", "inet_csum", "ipv4", "udp"]


def ethernet(ethertype: int = ETH_P_IP) -> bytes:
    """An Ethernet header alone."""
    return packets.ethernet(ethertype, pad=False)


def frame(*parts: bytes) -> bytes:
    """An unpadded IPv4 Ethernet frame around parts."""
    return packets.ethernet(ETH_P_IP, b"".join(parts), pad=False)


def udp(dport: int, payload: bytes = b"ping", *, length: int | None = None) -> bytes:
    """A UDP datagram to dport, with no checksum."""
    return packets.udp(40000, dport, payload, csum="none", length=length)

"""Packet builders shared by the tests: Ethernet, IPv4 (with a correct or broken checksum), UDP."""
from __future__ import annotations

import struct

from bpfjit.bench.packets import inet_csum  # the RFC 1071 checksum the packet benchmarks use

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17


def ethernet(ethertype: int = 0x0800) -> bytes:
    return bytes.fromhex("020000000002") + bytes.fromhex("020000000001") + struct.pack("!H", ethertype)


def ipv4(proto: int, payload: bytes, *, options: bytes = b"", version: int = 4, ihl: int | None = None,
         good_csum: bool = True) -> bytes:
    ihl = 5 + len(options) // 4 if ihl is None else ihl
    header = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, 20 + len(options) + len(payload),
                         0x1234, 0, 64, proto, 0, bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])) + options
    csum = inet_csum(header)
    if not good_csum:
        csum ^= 0x0100
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def udp(dport: int, payload: bytes = b"ping", *, length: int | None = None) -> bytes:
    length = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", 40000, dport, length, 0) + payload


def frame(*parts: bytes) -> bytes:
    return ethernet() + b"".join(parts)

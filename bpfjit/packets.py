"""Network frames built byte by byte, with correct checksums: inputs for packet programs.

XDP, socket and tc programs are tested and benchmarked on frames; the tests, the bench and users'
own checks all need the same few of them (Ethernet with an optional VLAN tag, IPv4 and IPv6 with
extension headers, UDP, TCP, ICMP and ICMPv6 echo, ARP, a DNS query), so they are built in one
place. Every builder returns bytes in network order and computes its checksums (RFC 1071, over
the pseudo-header where the protocol says so) unless asked for a broken one, so a program that
verifies checksums can be given both. Defaults are documentation addresses (RFC 5737, RFC 3849)
and locally administered MACs: a frame from a client to this host.
"""
from __future__ import annotations

import struct
from typing import Any

ETH_P_IP, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8
IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 0, 1, 6, 17
IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_ICMPV6, IPPROTO_DSTOPTS = 43, 44, 58, 60
ETH_ZLEN = 60  # the shortest Ethernet frame (without FCS): shorter frames are padded with zeros

MAC_DST = bytes.fromhex("020000000002")   # this host
MAC_SRC = bytes.fromhex("020000000001")
HOST4 = bytes([192, 0, 2, 2])             # TEST-NET-1
CLIENT4 = bytes([203, 0, 113, 9])         # TEST-NET-3
HOST6 = bytes.fromhex("20010db8000000000000000000000002")
CLIENT6 = bytes.fromhex("20010db8000100000000000000000009")


def inet_sum(data: bytes) -> int:
    """The RFC 1071 ones-complement sum of data (odd length: a zero byte appended), folded to 16
    bits. A header whose checksum is right sums to 0xFFFF."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def inet_csum(data: bytes) -> int:
    """The Internet checksum of data: the complement of its ones-complement sum."""
    return ~inet_sum(data) & 0xFFFF


def ethernet(ethertype: int, payload: bytes = b"", *, vlan: int | None = None, outer: int = ETH_P_8021Q,
             dst: bytes = MAC_DST, src: bytes = MAC_SRC, pad: bool = True) -> bytes:
    """An Ethernet frame (with one VLAN tag when vlan is given, its TPID `outer`), padded to ETH_ZLEN
    as a NIC would unless pad=False (for a frame cut short on purpose)."""
    tag = b"" if vlan is None else struct.pack("!HH", outer, vlan)
    frame = dst + src + tag + struct.pack("!H", ethertype) + payload
    return frame + bytes(ETH_ZLEN - len(frame)) if pad and len(frame) < ETH_ZLEN else frame


def ipv4(proto: int, payload: bytes, *, src: bytes = CLIENT4, dst: bytes = HOST4, options: bytes = b"",
         frag_off: int = 0, ttl: int = 64, ident: int = 0x1C46, good_csum: bool = True,
         version: int = 4, ihl: int | None = None, total_length: int | None = None) -> bytes:
    """An IPv4 packet; frag_off is the 16-bit field (flags << 13 | offset in 8-byte units).
    version, ihl and total_length override the true values, to build malformed headers."""
    if len(options) % 4:
        raise ValueError(f"IPv4 options are whole 32-bit words, not {len(options)} bytes")
    ihl = 5 + len(options) // 4 if ihl is None else ihl
    length = 20 + len(options) + len(payload) if total_length is None else total_length
    header = struct.pack("!BBHHHBBH4s4s", version << 4 | ihl, 0, length, ident, frag_off, ttl, proto, 0,
                         src, dst) + options
    csum = inet_csum(header) ^ (0 if good_csum else 0x0101)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def ipv6(nexthdr: int, payload: bytes, *, src: bytes = CLIENT6, dst: bytes = HOST6, hop_limit: int = 64,
         flow: int = 0x12345) -> bytes:
    """An IPv6 packet; payload starts with the header nexthdr names (an extension header or L4)."""
    return struct.pack("!IHBB16s16s", 6 << 28 | flow, len(payload), nexthdr, hop_limit, src, dst) + payload


def ipv6_option_header(nexthdr: int, units: int = 0) -> bytes:
    """A hop-by-hop / routing / destination-options header of (units + 1) * 8 bytes (PadN filled)."""
    body = bytes([1, 4 + 8 * units]) + bytes(4 + 8 * units)
    return bytes([nexthdr, units]) + body


def ipv6_fragment_header(nexthdr: int, offset: int = 0, more: bool = False, ident: int = 0xBEEF) -> bytes:
    """An IPv6 fragment header; offset in 8-byte units."""
    return struct.pack("!BBHI", nexthdr, 0, offset << 3 | int(more), ident)


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The IPv4 (4-byte addresses) or IPv6 pseudo-header that UDP, TCP and ICMPv6 checksums cover."""
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def udp(sport: int, dport: int, payload: bytes, *, src: bytes = CLIENT4, dst: bytes = HOST4,
        csum: str = "good", length: int | None = None) -> bytes:
    """A UDP datagram between src and dst (which the checksum covers); csum: "good", "bad" (off
    by one bit) or "none" (0: no checksum); length overrides the true length field."""
    length = 8 + len(payload) if length is None else length
    datagram = struct.pack("!HHHH", sport, dport, length, 0) + payload
    value = 0
    if csum != "none":
        value = inet_csum(pseudo_header(src, dst, IPPROTO_UDP, len(datagram)) + datagram) or 0xFFFF
        if csum == "bad":
            value ^= 0x0400
    return datagram[:6] + struct.pack("!H", value) + datagram[8:]


def tcp(sport: int, dport: int, payload: bytes = b"", *, src: bytes = CLIENT4, dst: bytes = HOST4,
        seq: int = 0x01020304, ack: int = 0, flags: int = 0x18, window: int = 64240) -> bytes:
    """A TCP segment (no options) with a correct checksum; flags 0x02 SYN, 0x10 ACK, 0x18 PSH|ACK."""
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, window, 0, 0) + payload
    value = inet_csum(pseudo_header(src, dst, IPPROTO_TCP, len(segment)) + segment)
    return segment[:16] + struct.pack("!H", value) + segment[18:]


def icmp_echo(request: bool = True, *, v6: bool = False, ident: int = 0x4242, seq: int = 1,
              payload: bytes = b"abcdefgh", src: bytes = CLIENT6, dst: bytes = HOST6) -> bytes:
    """An ICMP (v6=False) or ICMPv6 echo request or reply with a correct checksum (ICMPv6's covers
    the pseudo-header of src and dst)."""
    kind = (128 if request else 129) if v6 else (8 if request else 0)
    message = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    summed = pseudo_header(src, dst, IPPROTO_ICMPV6, len(message)) + message if v6 else message
    return message[:2] + struct.pack("!H", inet_csum(summed)) + message[4:]


def udp4_frame(sport: int, dport: int, payload: bytes, *, src: bytes = CLIENT4, dst: bytes = HOST4,
               csum: str = "good", vlan: int | None = None, **ip_args: Any) -> bytes:
    """Ethernet + IPv4 + UDP; ip_args go to ipv4()."""
    return ethernet(ETH_P_IP, ipv4(IPPROTO_UDP, udp(sport, dport, payload, src=src, dst=dst, csum=csum),
                                   src=src, dst=dst, **ip_args), vlan=vlan)


def tcp4_frame(sport: int, dport: int, payload: bytes = b"", *, src: bytes = CLIENT4, dst: bytes = HOST4,
               vlan: int | None = None, flags: int = 0x18, **ip_args: Any) -> bytes:
    """Ethernet + IPv4 + TCP; ip_args go to ipv4()."""
    return ethernet(ETH_P_IP, ipv4(IPPROTO_TCP, tcp(sport, dport, payload, src=src, dst=dst, flags=flags),
                                   src=src, dst=dst, **ip_args), vlan=vlan)


def udp6_frame(sport: int, dport: int, payload: bytes, *, src: bytes = CLIENT6, dst: bytes = HOST6,
               vlan: int | None = None) -> bytes:
    """Ethernet + IPv6 + UDP."""
    return ethernet(ETH_P_IPV6, ipv6(IPPROTO_UDP, udp(sport, dport, payload, src=src, dst=dst), src=src,
                                     dst=dst), vlan=vlan)


def tcp6_frame(sport: int, dport: int, payload: bytes = b"", *, src: bytes = CLIENT6, dst: bytes = HOST6,
               vlan: int | None = None) -> bytes:
    """Ethernet + IPv6 + TCP."""
    return ethernet(ETH_P_IPV6, ipv6(IPPROTO_TCP, tcp(sport, dport, payload, src=src, dst=dst), src=src,
                                     dst=dst), vlan=vlan)


def arp_frame() -> bytes:
    """A broadcast ARP request from the client for this host's IPv4 address."""
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, MAC_SRC, CLIENT4, bytes(6), HOST4)
    return ethernet(ETH_P_ARP, body, dst=b"\xff" * 6)


def dns_query(name: str = "example.com", ident: int = 0x2A2A) -> bytes:
    """A DNS message asking for the A record of name (recursion desired): a UDP payload."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)

"""bpfjit.packets: the frames the tests and the bench run packet programs on.

Checksums are checked with a ones-complement sum written here another way (modulo 0xFFFF instead
of folding carries), and whole frames against bytes written out by hand from the RFC layouts.
"""
from __future__ import annotations

import pytest

from bpfjit import packets


def ones_sum(data: bytes) -> int:
    """The 16-bit ones-complement sum of data (RFC 1071), as arithmetic modulo 0xFFFF: a
    correctly checksummed header sums to 0xFFFF (ones-complement zero, never 0 for nonzero data)."""
    data += b"\0" * (len(data) % 2)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    return 0 if total == 0 else (total - 1) % 0xFFFF + 1


def test_checksum_of_a_published_ipv4_header():
    # The worked example on Wikipedia's "IPv4 header checksum": its checksum field is 0xB861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert packets.inet_csum(header) == 0xB861
    assert packets.inet_sum(header[:10] + bytes.fromhex("b861") + header[12:]) == 0xFFFF


def test_ipv4_header_checksum_good_and_broken():
    good = packets.ipv4(packets.IPPROTO_UDP, b"payload", options=bytes([1, 1, 1, 0]))
    assert good[0] == 0x46 and int.from_bytes(good[2:4], "big") == 24 + 7
    assert ones_sum(good[:24]) == 0xFFFF and good[24:] == b"payload"
    bad = packets.ipv4(packets.IPPROTO_UDP, b"payload", good_csum=False)
    assert ones_sum(bad[:20]) != 0xFFFF


def test_ipv4_options_must_be_whole_words():
    with pytest.raises(ValueError, match="whole 32-bit words"):
        packets.ipv4(packets.IPPROTO_TCP, b"", options=b"\1\1\1")


@pytest.mark.parametrize("src, dst", [(packets.CLIENT4, packets.HOST4), (packets.CLIENT6, packets.HOST6)])
def test_udp_and_tcp_checksums_cover_the_pseudo_header(src, dst):
    datagram = packets.udp(5353, 53, b"odd", src=src, dst=dst)
    pseudo = packets.pseudo_header(src, dst, packets.IPPROTO_UDP, len(datagram))
    assert ones_sum(pseudo + datagram) == 0xFFFF
    assert ones_sum(pseudo + packets.udp(5353, 53, b"odd", src=src, dst=dst, csum="bad")) != 0xFFFF
    assert packets.udp(5353, 53, b"odd", csum="none")[6:8] == b"\0\0"
    segment = packets.tcp(40000, 443, b"GET /", src=src, dst=dst)
    pseudo = packets.pseudo_header(src, dst, packets.IPPROTO_TCP, len(segment))
    assert ones_sum(pseudo + segment) == 0xFFFF and segment[12] == 5 << 4


def test_icmp_echo_checksums():
    assert ones_sum(packets.icmp_echo()) == 0xFFFF
    v6 = packets.icmp_echo(False, v6=True)
    assert v6[0] == 129
    assert ones_sum(packets.pseudo_header(packets.CLIENT6, packets.HOST6, packets.IPPROTO_ICMPV6, len(v6))
                    + v6) == 0xFFFF


def test_ethernet_pads_to_the_minimum_unless_asked_not_to():
    frame = packets.ethernet(packets.ETH_P_IP, b"\x45", vlan=100)
    assert len(frame) == 60 and frame[12:18] == bytes.fromhex("8100 0064 0800") and frame[19:] == bytes(41)
    assert packets.ethernet(packets.ETH_P_IP, b"\x45", pad=False) == (
        bytes.fromhex("020000000002 020000000001 0800") + b"\x45")


def test_arp_request_bytes():
    # RFC 826 layout: htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request), then padding to 60.
    expected = bytes.fromhex("ffffffffffff 020000000001 0806 0001 0800 06 04 0001"
                             "020000000001 cb007109 000000000000 c0000202") + bytes(18)
    assert packets.arp_frame() == expected


def test_dns_query_bytes():
    expected = bytes.fromhex("2a2a 0100 0001 0000 0000 0000") + b"\x07example\x03com\x00" + bytes.fromhex("00010001")
    assert packets.dns_query() == expected


def test_udp6_frame_layers():
    frame = packets.udp6_frame(1, 2, b"x", vlan=3)
    assert frame[12:18] == bytes.fromhex("8100 0003 86dd")
    ip = frame[18:]
    assert ip[0] >> 4 == 6 and ip[6] == packets.IPPROTO_UDP and int.from_bytes(ip[4:6], "big") == 9
    assert ip[40:44] == bytes.fromhex("0001 0002") and ip[48:] == b"x"

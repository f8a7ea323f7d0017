"""pcapng captures read by bpfjit/pcap.py, and classic captures written by its write_pcap.

The pcapng files are built here byte by byte from the format (draft-ietf-opsawg-pcapng) by a
writer that knows nothing of the reader: every block is its type and total length, a body padded
to 4 bytes, and the total length again. Section Header Block (type 0x0a0d0d0a): byte-order magic
0x1a2b3c4d, version, section length. Interface Description Block (1): link type, reserved, snap
length, options. Enhanced Packet Block (6): interface, timestamp high and low words, captured and
original lengths, data. Simple Packet Block (3): original length, data. Packet Block (2, obsolete):
16-bit interface and drop count, then as an Enhanced Packet Block. Options are code, length, value
padded to 4, and end with code 0. Expected timestamps are worked out by hand, not by formula.
"""
from __future__ import annotations

import io
import pathlib
import re
import struct

import pytest

from bpfjit.pcap import LINKTYPE_ETHERNET, Packet, PcapError, PcapReader, read_pcap, write_pcap

SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
LINKTYPE_RAW = 101
IF_TSRESOL, IF_TSOFFSET = 9, 14
ORDERS = pytest.mark.parametrize("order", ["<", ">"])
FRAME = bytes(range(60))  # an Ethernet frame's worth of bytes, a multiple of 4
ODD = b"\xaa" * 61  # a length that needs padding


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def block(order: str, block_type: int, body: bytes, *, trailing: int | None = None) -> bytes:
    """A block: type, total length, the body padded to 4 bytes, the total length (or `trailing`)."""
    body = pad(body)
    length = 12 + len(body)
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", trailing or length)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + pad(value)


def options(order: str, *given: bytes) -> bytes:
    """Options as an Interface Description Block carries them: each, then opt_endofopt."""
    return b"".join(given) + struct.pack(order + "HH", 0, 0) if given else b""


def shb(order: str, major: int = 1, minor: int = 0) -> bytes:
    return block(order, SHB, struct.pack(order + "IHHq", 0x1A2B3C4D, major, minor, -1))


def idb(order: str, link_type: int = LINKTYPE_ETHERNET, snaplen: int = 0, *opts: bytes) -> bytes:
    return block(order, IDB, struct.pack(order + "HHI", link_type, 0, snaplen) + options(order, *opts))


def tsresol(order: str, value: int) -> bytes:
    return option(order, IF_TSRESOL, bytes([value]))


def tsoffset(order: str, seconds: int) -> bytes:
    return option(order, IF_TSOFFSET, struct.pack(order + "q", seconds))


def epb(order: str, interface: int, ticks: int, data: bytes, wire: int | None = None) -> bytes:
    fields = struct.pack(order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                         len(data) if wire is None else wire)
    return block(order, EPB, fields + data)


def spb(order: str, wire: int, data: bytes) -> bytes:
    return block(order, SPB, struct.pack(order + "I", wire) + data)


def pb(order: str, interface: int, ticks: int, data: bytes, drops: int = 0) -> bytes:
    fields = struct.pack(order + "HHIIII", interface, drops, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
    return block(order, PB, fields + data)


def save(folder: pathlib.Path, *blocks: bytes) -> pathlib.Path:
    path = folder / "c.pcapng"
    path.write_bytes(b"".join(blocks))
    return path


def refusal(path: pathlib.Path) -> str:
    """read_pcap's one-line PcapError about path, which it starts with."""
    with pytest.raises(PcapError) as caught:
        read_pcap(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


# --- reading -------------------------------------------------------------------------------------

@ORDERS
def test_enhanced_packets_in_both_byte_orders(tmp_path, order):
    # 1,700,000,000.000001 s and 1,700,000,001.5 s, in microsecond ticks (the default resolution).
    path = save(tmp_path, shb(order), idb(order, LINKTYPE_ETHERNET, 1500), epb(order, 0, 1_700_000_000_000_001, FRAME),
                epb(order, 0, 1_700_000_001_500_000, ODD, wire=1000))
    capture = read_pcap(path)
    assert (capture.format, capture.link_type, capture.link_name, capture.snaplen) == ("pcapng", 1, "ETHERNET", 1500)
    assert (capture.big_endian, capture.nanosecond) == (order == ">", False)
    assert capture.packets == [Packet(0, FRAME, 60, 1_700_000_000_000_001_000),
                               Packet(1, ODD, 1000, 1_700_000_001_500_000_000)]


@pytest.mark.parametrize(("resolution", "ticks", "ns", "nanosecond"), [
    (9, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789, True),  # 10^-9 s
    (3, 1_700_000_000_250, 1_700_000_000_250_000_000, False),  # milliseconds
    (12, 1_234_567, 1_234, True),  # picoseconds: ns rounded down
    (0x80 | 10, 3 * 1024 + 512, 3_500_000_000, False),  # 2^-10 s: 3.5 s
    (0x80 | 30, 2**30 + 2**29, 1_500_000_000, True),  # 2^-30 s, finer than a microsecond
    (0x80 | 19, 2**19, 1_000_000_000, False),  # 2^-19 s, coarser than a microsecond
])
@ORDERS
def test_timestamp_resolutions(tmp_path, order, resolution, ticks, ns, nanosecond):
    path = save(tmp_path, shb(order), idb(order, 1, 0, tsresol(order, resolution)), epb(order, 0, ticks, FRAME))
    capture = read_pcap(path)
    assert [p.timestamp_ns for p in capture.packets] == [ns] and capture.nanosecond is nanosecond


@ORDERS
def test_timestamp_offset_in_seconds(tmp_path, order):
    path = save(tmp_path, shb(order), idb(order, 1, 0, tsoffset(order, 1_700_000_000), tsresol(order, 9)),
                epb(order, 0, 42, FRAME), idb(order, 1, 0, tsoffset(order, -10)), epb(order, 1, 15_000_001, FRAME))
    assert [p.timestamp_ns for p in read_pcap(path).packets] == [1_700_000_000_000_000_042, 5_000_001_000]


@ORDERS
def test_unknown_options_are_passed_over(tmp_path, order):
    # if_name (2) and if_description (3), with values that need padding, around if_tsresol.
    path = save(tmp_path, shb(order), idb(order, 1, 0, option(order, 2, b"eth0"), tsresol(order, 9),
                                          option(order, 3, b"uplink")), epb(order, 0, 7, FRAME))
    assert read_pcap(path).packets[0].timestamp_ns == 7


@ORDERS
def test_simple_packets_take_the_first_interfaces_snap_length(tmp_path, order):
    path = save(tmp_path, shb(order), idb(order, LINKTYPE_ETHERNET, 64), idb(order, LINKTYPE_ETHERNET, 1500),
                spb(order, 100, bytes(range(64))), spb(order, 10, ODD[:10]))
    assert read_pcap(path).packets == [Packet(0, bytes(range(64)), 100, 0), Packet(1, ODD[:10], 10, 0)]


def test_simple_packets_without_a_snap_length_are_whole(tmp_path):
    path = save(tmp_path, shb("<"), idb("<", LINKTYPE_ETHERNET, 0), spb("<", len(ODD), ODD))
    assert read_pcap(path).packets == [Packet(0, ODD, len(ODD), 0)]


@ORDERS
def test_obsolete_packet_blocks(tmp_path, order):
    path = save(tmp_path, shb(order), idb(order), idb(order), pb(order, 1, 2_000_001, ODD, drops=7),
                epb(order, 0, 3, FRAME))
    assert read_pcap(path).packets == [Packet(0, ODD, len(ODD), 2_000_001_000), Packet(1, FRAME, 60, 3_000)]


def test_sections_each_have_their_byte_order_and_interfaces(tmp_path):
    path = save(tmp_path, shb("<"), idb("<", 1, 128), epb("<", 0, 1, FRAME),
                shb(">"), idb(">", 1, 256, tsresol(">", 9)), epb(">", 0, 1, ODD), epb(">", 0, 2, FRAME))
    capture = read_pcap(path)
    assert (capture.big_endian, capture.snaplen, capture.nanosecond) == (False, 128, True)
    assert [(p.index, p.data, p.timestamp_ns) for p in capture.packets] == [(0, FRAME, 1000), (1, ODD, 1),
                                                                           (2, FRAME, 2)]


def test_a_sections_interfaces_end_with_it(tmp_path):
    path = save(tmp_path, shb("<"), idb("<"), idb("<"), shb("<"), idb("<"), epb("<", 1, 0, FRAME))
    offset = 2 * 28 + 3 * 20  # two Section Header and three Interface Description Blocks, no options
    assert f"block 6 (at byte {offset}): packet 1: interface 1 was never described (the section describes 1)" \
        in refusal(path)


def test_interfaces_of_one_link_type_and_one_described_after_packets(tmp_path):
    path = save(tmp_path, shb("<"), idb("<", 1, 0), epb("<", 0, 5, FRAME),
                idb("<", 1, 0, tsresol("<", 9)), epb("<", 1, 5, ODD), epb("<", 0, 6, ODD))
    capture = read_pcap(path)
    assert capture.link_type == LINKTYPE_ETHERNET and capture.nanosecond
    assert [(p.data, p.timestamp_ns) for p in capture.packets] == [(FRAME, 5000), (ODD, 5), (ODD, 6000)]


def test_interfaces_of_two_link_types_are_refused(tmp_path):
    path = save(tmp_path, shb("<"), idb("<", LINKTYPE_ETHERNET), idb("<", LINKTYPE_RAW), epb("<", 0, 0, FRAME),
                epb("<", 1, 0, FRAME))
    offset = 28 + 2 * 20 + 12 + 20 + 60
    message = refusal(path)
    assert f"block 5 (at byte {offset}): a packet from an interface of link type RAW (101) after packets of link " \
           "type ETHERNET (1)" in message and "one program type per capture" in message


def test_an_interface_of_another_link_type_without_packets_is_no_matter(tmp_path):
    path = save(tmp_path, shb("<"), idb("<", LINKTYPE_ETHERNET), idb("<", LINKTYPE_RAW, 9000), epb("<", 1, 0, FRAME))
    capture = read_pcap(path)
    assert (capture.link_type, capture.snaplen, len(capture.packets)) == (LINKTYPE_RAW, 0, 1)


@ORDERS
def test_blocks_that_hold_no_packet_are_skipped(tmp_path, order):
    name_resolution = block(order, 4, struct.pack(order + "HH", 1, 8) + bytes([10, 0, 0, 1]) + b"host" + bytes(4))
    statistics = block(order, 5, struct.pack(order + "IIII", 0, 1, 2, 0))
    custom = block(order, 0x00000BAD, struct.pack(order + "I", 32473) + b"anything")
    secrets = block(order, 0x0000000A, struct.pack(order + "II", 0x544C534B, 3) + b"key")
    unknown = block(order, 0x12345678, b"")
    path = save(tmp_path, shb(order), name_resolution, idb(order), custom, epb(order, 0, 0, FRAME), statistics,
                secrets, unknown, epb(order, 0, 0, ODD))
    assert [p.data for p in read_pcap(path).packets] == [FRAME, ODD]


def test_no_interface_and_no_packet_is_an_empty_ethernet_capture(tmp_path):
    capture = read_pcap(save(tmp_path, shb(">")))
    assert (capture.link_type, capture.snaplen, capture.packets, capture.big_endian) == (1, 0, [], True)


def test_no_packet_takes_the_first_interfaces_link_type(tmp_path):
    capture = read_pcap(save(tmp_path, shb("<"), idb("<", LINKTYPE_RAW, 2048), idb("<", LINKTYPE_ETHERNET)))
    assert (capture.link_type, capture.snaplen, capture.packets) == (LINKTYPE_RAW, 2048, [])


def test_the_classic_reader_points_pcapng_to_read_pcap(tmp_path):
    with pytest.raises(PcapError, match="a pcapng capture: PcapReader reads classic pcap files, read_pcap reads both"):
        PcapReader(io.BytesIO(shb("<")), "c.pcapng")


# --- malformed files -----------------------------------------------------------------------------

@pytest.mark.parametrize(("block_type", "length", "words"), [
    (0x12345678, 8, "block total length 8 (block type 0x12345678: a multiple of 4 bytes, at least 12)"),
    (0x12345678, 14, "block total length 14 (block type 0x12345678: a multiple of 4 bytes, at least 12)"),
    (EPB, 28, "block total length 28 (Enhanced Packet Block: a multiple of 4 bytes, at least 32)"),
    (SPB, 12, "block total length 12 (Simple Packet Block: a multiple of 4 bytes, at least 16)"),
    (IDB, 16, "block total length 16 (Interface Description Block: a multiple of 4 bytes, at least 20)"),
])
def test_block_lengths_that_cannot_be(tmp_path, block_type, length, words):
    path = save(tmp_path, shb("<"), idb("<"), struct.pack("<II", block_type, length) + bytes(32))
    assert f"block 3 (at byte 48): malformed: {words}" in refusal(path)


def test_a_section_header_too_short(tmp_path):
    path = save(tmp_path, struct.pack("<II", SHB, 24) + struct.pack("<IHH", 0x1A2B3C4D, 1, 0) + bytes(8))
    assert "block 1 (at byte 0): malformed: block total length 24 (Section Header Block: a multiple of 4 bytes, " \
           "at least 28)" in refusal(path)


def test_a_block_header_cut_short(tmp_path):
    path = save(tmp_path, shb("<"), idb("<"), struct.pack("<I", EPB))
    assert "block 3 (at byte 48): truncated: a block header needs 8 bytes, the file ends after 4" in refusal(path)


@ORDERS
def test_a_block_cut_short(tmp_path, order):
    path = save(tmp_path, shb(order), idb(order), epb(order, 0, 0, FRAME)[:-10])
    assert "block 3 (at byte 48): truncated: the block holds 92 bytes, the file ends after 82" in refusal(path)


@ORDERS
def test_a_partial_read_keeps_the_packets_before_the_cut(tmp_path, order):
    path = save(tmp_path, shb(order), idb(order), epb(order, 0, 7, FRAME), epb(order, 0, 8, FRAME)[:-10])
    capture = read_pcap(path, partial=True)
    assert [(packet.data, packet.timestamp_ns) for packet in capture.packets] == [(FRAME, 7_000)]
    assert capture.link_type == LINKTYPE_ETHERNET and "block 4 (at byte 140): truncated: the block holds" \
        in capture.truncated
    with pytest.raises(PcapError, match="malformed"):  # a damaged file, not a cut one, still refuses
        read_pcap(save(tmp_path, shb(order), idb(order), epb(order, 0, 0, FRAME)[:-4] + bytes(4)), partial=True)


@ORDERS
def test_a_trailing_length_unlike_the_leading_one(tmp_path, order):
    fields = struct.pack(order + "IIIII", 0, 0, 0, len(FRAME), len(FRAME))
    path = save(tmp_path, shb(order), idb(order), block(order, EPB, fields + FRAME, trailing=96))
    assert "block 3 (at byte 48): malformed: the block's trailing length 96 differs from its leading length 92" \
        in refusal(path)


@pytest.mark.parametrize("packet", [epb("<", 0, 0, FRAME), spb("<", 60, FRAME), pb("<", 0, 0, FRAME)])
def test_a_packet_before_any_interface(tmp_path, packet):
    assert "block 2 (at byte 28): packet 1: interface 0 was never described (the section describes 0)" \
        in refusal(save(tmp_path, shb("<"), packet))


def test_a_packet_on_an_interface_never_described(tmp_path):
    path = save(tmp_path, shb("<"), idb("<"), epb("<", 0, 0, FRAME), epb("<", 3, 0, FRAME))
    assert "block 4 (at byte 140): packet 2: interface 3 was never described (the section describes 1)" \
        in refusal(path)


@pytest.mark.parametrize(("packet", "words"), [
    (block("<", EPB, struct.pack("<IIIII", 0, 0, 0, 100, 100) + FRAME), "a captured length of 100 bytes, more than "
                                                                        "the block's 60 bytes of packet data"),
    (block("<", PB, struct.pack("<HHIIII", 0, 0, 0, 0, 61, 61) + FRAME), "a captured length of 61 bytes, more than "
                                                                         "the block's 60 bytes of packet data"),
    (spb("<", 100, FRAME), "a captured length of 100 bytes, more than the block's 60 bytes of packet data"),
])
def test_a_captured_length_beyond_the_block(tmp_path, packet, words):
    assert f"block 3 (at byte 48): malformed: {words}" in refusal(save(tmp_path, shb("<"), idb("<"), packet))


def test_an_unknown_byte_order_magic(tmp_path):
    bad = block("<", SHB, struct.pack("<IHHq", 0x11223344, 1, 0, -1))
    path = save(tmp_path, shb("<"), idb("<"), bad)
    assert "block 3 (at byte 48): not a pcapng section: byte-order magic 44332211, neither 1a2b3c4d nor 4d3c2b1a" \
        in refusal(path)


def test_pcapng_type_then_nothing_of_a_section(tmp_path):
    path = save(tmp_path, bytes.fromhex("0a0d0d0a") + bytes(24))
    assert "block 1 (at byte 0): not a pcapng section: byte-order magic 00000000" in refusal(path)


def test_a_section_header_cut_before_its_byte_order(tmp_path):
    path = save(tmp_path, shb("<")[:8])
    assert "block 1 (at byte 0): truncated: a section header needs 12 bytes to say its byte order, the file ends " \
           "after 8" in refusal(path)


def test_another_major_version(tmp_path):
    assert "block 1 (at byte 0): pcapng format version 2.0; bpfjit reads version 1.x" \
        in refusal(save(tmp_path, shb(">", major=2)))


def test_an_option_past_its_block(tmp_path):
    body = struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 2, 100) + b"eth0"
    path = save(tmp_path, shb("<"), block("<", IDB, body))
    assert "block 2 (at byte 28): malformed: option 2 at byte 44 has 100 bytes, it runs past the block's options, " \
           "which end at byte 52" in refusal(path)


@pytest.mark.parametrize(("opt", "words"), [
    (option("<", IF_TSRESOL, b"\x09\x00"), "option if_tsresol at byte 44 has 2 bytes, not 1"),
    (option("<", IF_TSOFFSET, bytes(4)), "option if_tsoffset at byte 44 has 4 bytes, not 8"),
])
def test_a_timestamp_option_of_the_wrong_size(tmp_path, opt, words):
    path = save(tmp_path, shb("<"), idb("<", 1, 0, opt))
    assert f"block 2 (at byte 28): malformed: {words}" in refusal(path)


# --- writing -------------------------------------------------------------------------------------

def test_write_pcap_writes_classic_little_endian_nanoseconds(tmp_path):
    path = tmp_path / "out.pcap"
    packets = [Packet(5, FRAME, 1500, 1_700_000_000_123_456_789), b"\x01\x02\x03", Packet(9, ODD, 10, 0)]
    assert write_pcap(path, packets) == 3
    raw = path.read_bytes()
    assert raw[:4] == bytes.fromhex("4d3cb2a1")  # 0xa1b23c4d, little-endian
    assert struct.unpack("<IHHiIII", raw[:24]) == (0xA1B23C4D, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)
    assert struct.unpack("<IIII", raw[24:40]) == (1_700_000_000, 123_456_789, 60, 1500) and raw[40:100] == FRAME
    assert struct.unpack("<IIII", raw[100:116]) == (0, 0, 3, 3) and raw[116:119] == b"\x01\x02\x03"
    # A wire length below the captured one cannot be: the captured one is written.
    assert struct.unpack("<IIII", raw[119:135]) == (0, 0, 61, 61) and raw[135:] == ODD
    capture = read_pcap(path)
    assert (capture.format, capture.link_type, capture.snaplen, capture.nanosecond, capture.big_endian) == \
        ("pcap", LINKTYPE_ETHERNET, 65535, True, False)
    assert capture.packets == [Packet(0, FRAME, 1500, 1_700_000_000_123_456_789), Packet(1, b"\x01\x02\x03", 3, 0),
                               Packet(2, ODD, 61, 0)]


def test_write_pcap_cuts_to_the_snap_length(tmp_path):
    path = tmp_path / "out.pcap"
    write_pcap(path, (packet for packet in [FRAME, Packet(0, ODD, 200, 1)]), link_type=LINKTYPE_RAW, snaplen=16)
    assert struct.unpack("<IHHiIII", path.read_bytes()[:24])[5:] == (16, LINKTYPE_RAW)
    capture = read_pcap(path)
    assert capture.link_type == LINKTYPE_RAW
    assert capture.packets == [Packet(0, FRAME[:16], 60, 0), Packet(1, ODD[:16], 200, 1)]


def test_write_pcap_of_nothing_is_a_file_header(tmp_path):
    path = tmp_path / "out.pcap"
    assert write_pcap(path, []) == 0 and len(path.read_bytes()) == 24 and read_pcap(path).packets == []


def test_a_pcapng_capture_written_as_pcap_keeps_its_packets(tmp_path):
    source = read_pcap(save(tmp_path, shb(">"), idb(">", LINKTYPE_RAW, 0, tsresol(">", 0x80 | 20)),
                            epb(">", 0, 2**20 * 1_700_000_000 + 2**19, ODD, wire=900), spb(">", 60, FRAME)))
    path = tmp_path / "out.pcap"
    write_pcap(path, source.packets, link_type=source.link_type)
    copy = read_pcap(path)
    assert copy.link_type == LINKTYPE_RAW and copy.packets == source.packets
    assert copy.packets[0] == Packet(0, ODD, 900, 1_700_000_000_500_000_000)


def test_write_pcap_errors_name_the_path(tmp_path):
    with pytest.raises(PcapError) as caught:
        write_pcap(tmp_path, [FRAME])  # a directory
    assert str(caught.value).startswith(f"{tmp_path}: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize(("packet", "words"), [
    (Packet(0, FRAME, 60, -1), "packet 2: a timestamp of -1 ns or a wire length of 60 bytes does not fit"),
    (Packet(0, FRAME, 2**32, 0), "packet 2: a timestamp of 0 ns or a wire length of 4,294,967,296 bytes does not fit"),
    (Packet(0, FRAME, 60, 2**32 * 10**9), "packet 2: a timestamp of 4,294,967,296,000,000,000 ns"),
])
def test_write_pcap_refuses_what_a_record_cannot_hold(tmp_path, packet, words):
    path = tmp_path / "out.pcap"
    with pytest.raises(PcapError, match=f"^{re.escape(f'{path}: {words}')}"):
        write_pcap(path, [FRAME, packet])


def test_write_pcap_refuses_a_link_type_a_header_cannot_hold(tmp_path):
    path = tmp_path / "out.pcap"
    with pytest.raises(PcapError, match=f"^{re.escape(f'{path}: link type -1 or snap length 65535 does not fit')}"):
        write_pcap(path, [FRAME], link_type=-1)

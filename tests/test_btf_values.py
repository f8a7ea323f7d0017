"""BTF value formatting and encoding (bpfjit.runtime.btf) on the types of tests/progs/btf_types.o.

Expected images and values are written by hand from tests/progs/btf_types.c and the C layout rules
(built field by field with struct.pack), never produced by the parser.
"""
from __future__ import annotations

import random
import struct

import pytest

from bpfjit.errors import BTFError
from bpfjit.runtime.btf import Kind

from btf_cases import btf_fixture, obj_fixture  # noqa: F401 - the obj and btf fixtures
from btf_cases import struct_id


# --- values ---------------------------------------------------------------------------------------

def pkt_stats_bytes() -> tuple[bytes, dict]:
    """A pkt_stats image built field by field with struct.pack, and the value it holds."""
    hdr_word0 = 4 | (5 << 4) | (0xAB << 8) | (0x1234 << 16)
    hdr_word1 = (-7 & 0x1F) | (0x5A5A5A5 << 5)
    hdr = struct.pack("<IIHB", hdr_word0, hdr_word1, 8080, 1 | (0x55 << 1)) + b"\0"
    data = struct.pack("<QQ", 10, 1500) + hdr + struct.pack("<hh", -2, 0x1234)
    data += struct.pack("<4I", 1, 2, 3, 0xFFFFFFFF) + struct.pack("<6H", 1, 2, 3, 4, 5, 6)
    data += struct.pack("<f", 0.5) + struct.pack("<d", -2.25) + struct.pack("<i", -3)
    data += b"ab\xffc\0\0" + b"\x01" + struct.pack("<b", -128) + bytes(4)
    data += struct.pack("<q", -(1 << 40)) + struct.pack("<Q", 0xFEDCBA9876543210)
    assert len(data) == 104
    value = {
        "packets": 10, "bytes": 1500,
        "hdr": {"version": 4, "ihl": 5, "tos": 0xAB, "len": 0x1234, "delta": -7,
                "spare": 0x5A5A5A5, "port": 8080, "tiny": 1, "tag": 0x55},
        "w": {"u32": 0x1234FFFE, "s16": [-2, 0x1234], "bytes": [0xFE, 0xFF, 0x34, 0x12],
              "halves": {"lo": 0xFFFE, "hi": 0x1234}},
        "counts": [1, 2, 3, 0xFFFFFFFF], "grid": [[1, 2, 3], [4, 5, 6]],
        "ratio": 0.5, "avg": -2.25, "color": -3, "name": [97, 98, -1, 99, 0, 0],
        "seen": True, "delta": -128, "balance": -(1 << 40), "wide": 0xFEDCBA9876543210,
    }
    return data, value


def test_format_pkt_stats(btf):
    data, value = pkt_stats_bytes()
    assert btf.format_value(struct_id(btf, "pkt_stats"), data) == value


def test_encode_pkt_stats_round_trip(btf):
    tid = struct_id(btf, "pkt_stats")
    data, value = pkt_stats_bytes()
    assert btf.encode_value(tid, value) == data
    assert btf.encode_value(tid, btf.format_value(tid, data)) == data
    assert btf.encode_value(tid, data) == data  # raw bytes of the exact size


def test_random_round_trips(btf):
    """Random images with zeroed padding and 0/1 bools survive format -> encode."""
    rng = random.Random(1234)
    tid = struct_id(btf, "pkt_stats")
    hdr = struct_id(btf, "hdr_bits")
    for _ in range(200):
        v = btf.format_value(hdr, rng.randbytes(12))
        image = btf.encode_value(hdr, v)
        assert image[11] == 0 and btf.format_value(hdr, image) == v
        data = bytearray(rng.randbytes(104))
        data[82] &= 1  # _Bool
        data[84:88] = bytes(4)  # padding
        data[27] = 0  # hdr_bits tail padding
        data[60:64] = struct.pack("<f", rng.random())  # no NaN payload games
        data[64:72] = struct.pack("<d", rng.random())
        assert btf.encode_value(tid, btf.format_value(tid, bytes(data))) == bytes(data)


def test_encode_bitfields_individually(btf):
    hdr = struct_id(btf, "hdr_bits")
    assert btf.encode_value(hdr, {"ihl": 0xF}) == b"\xf0" + bytes(11)
    assert btf.encode_value(hdr, {"delta": -1}) == bytes(4) + b"\x1f" + bytes(7)
    assert btf.encode_value(hdr, {"spare": (1 << 27) - 1}) == \
        bytes(4) + struct.pack("<I", 0xFFFFFFE0) + bytes(4)
    assert btf.encode_value(hdr, {"tag": 0x7F, "tiny": 0}) == bytes(10) + b"\xfe\x00"
    assert btf.encode_value(hdr, {"len": 0xFFFF, "version": 1}) == b"\x01\x00\xff\xff" + bytes(8)
    with pytest.raises(BTFError, match="does not fit in 4 bits"):
        btf.encode_value(hdr, {"ihl": 16})
    with pytest.raises(BTFError, match="does not fit in 5 bits"):
        btf.encode_value(hdr, {"delta": -17})


def test_encode_defaults_and_errors(btf):
    tid = struct_id(btf, "pkt_stats")
    assert btf.encode_value(tid, {}) == bytes(104)
    part = btf.encode_value(tid, {"grid": [[0, 0, 0], [0, 0, 0x0102]], "name": b"xyz\0\0\0"})
    assert part[58:60] == b"\x02\x01" and part[76:82] == b"xyz\0\0\0"
    with pytest.raises(BTFError, match="no member 'nope'"):
        btf.encode_value(tid, {"nope": 1})
    with pytest.raises(BTFError, match="expected 4 elements"):
        btf.encode_value(tid, {"counts": [1, 2, 3]})
    with pytest.raises(BTFError, match="expected 2 elements"):
        btf.encode_value(tid, {"grid": [[1, 2, 3]]})
    with pytest.raises(BTFError, match="5 bytes given, expected 6"):
        btf.encode_value(tid, {"name": b"short"})
    with pytest.raises(BTFError, match="does not fit in 64 bits"):
        btf.encode_value(tid, {"packets": 1 << 64})
    with pytest.raises(BTFError, match="expected an int"):
        btf.encode_value(tid, {"packets": "10"})
    with pytest.raises(BTFError, match="expected a dict"):
        btf.encode_value(tid, [1, 2])
    with pytest.raises(BTFError, match="value of 103 bytes"):
        btf.format_value(tid, bytes(103))
    # both signed and unsigned spellings of a pattern are accepted
    assert btf.encode_value(tid, {"packets": -1})[:8] == b"\xff" * 8
    with pytest.raises(BTFError):
        btf.encode_value(struct_id(btf, "xdp_btf", Kind.FUNC), 0)


def test_encode_scalars_and_pointers(btf):
    color = struct_id(btf, "color", Kind.ENUM)
    assert btf.encode_value(color, -3) == struct.pack("<i", -3)
    assert btf.format_value(color, struct.pack("<i", -3)) == -3
    wide = struct_id(btf, "wide", Kind.ENUM64)
    assert btf.format_value(wide, struct.pack("<Q", 1 << 63)) == 1 << 63
    lv = struct_id(btf, "locked_val")
    image = btf.encode_value(lv, {"owned": 0x1122334455667788, "pair": {"slot": [1, 2]},
                                  "lock": {"val": 1}, "timer": bytes(16)})
    assert image[32:40] == struct.pack("<Q", 0x1122334455667788)
    assert image[56:72] == struct.pack("<QQ", 1, 2) and image[8:12] == struct.pack("<I", 1)
    value = btf.format_value(lv, image)
    assert value["timer"] == {} and value["pair"] == {"slot": [1, 2]}
    assert value["lock"] == {"val": 1}
    assert btf.encode_value(lv, value) == image

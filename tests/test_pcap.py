"""Captured traffic: the pcap reader (bpfjit/pcap.py) and ``bpfjit run OBJECT --pcap FILE``.

Captures are written here by ``write_pcap``, a writer of the classic format
(https://www.tcpdump.org/manpages/pcap-savefile.5.html) that knows nothing of the reader: a
24-byte file header (magic, version 2.4, zone, sigfigs, snaplen, link type) and per packet a
16-byte record header (seconds, micro- or nanoseconds, captured length, wire length).

The runs use the bundled firewall (bpfjit/data/firewall.c) on the bundled packets; its verdicts
and its echo reply are worked out by hand from firewall.c in tests/test_cli_objects.py and here.
"""
from __future__ import annotations

import json
import pathlib
import struct

import pytest
from packets import inet_csum
from test_cli_objects import EXPECTED_VERDICTS, FIREWALL, PACKETS
from test_pcapng import epb, idb, shb

import bpfjit
from bpfjit.cli import main
from bpfjit.pcap import LINKTYPE_ETHERNET, PcapError, PcapTruncated, read_pcap

MICRO, NANO = 0xA1B2C3D4, 0xA1B23C4D
LINKTYPE_RAW = 101
FRAMES = [frame for _, frame in PACKETS]
RUNT = bytes(12)  # shorter than an Ethernet header: the test run refuses it
XDP_ACTIONS = {1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX"}


def write_pcap(path: pathlib.Path, packets: list[bytes], *, order: str = "<", magic: int = MICRO,
               link_type: int = LINKTYPE_ETHERNET, version: tuple[int, int] = (2, 4), snaplen: int = 65535,
               stamps: list[tuple[int, int]] | None = None) -> pathlib.Path:
    """A classic pcap file: each packet captured whole, stamped (seconds, fraction) from `stamps`
    or (1,700,000,000 + i, i)."""
    out = bytearray(struct.pack(order + "IHHiIII", magic, *version, 0, 0, snaplen, link_type))
    for index, packet in enumerate(packets):
        seconds, fraction = stamps[index] if stamps else (1_700_000_000 + index, index)
        out += struct.pack(order + "IIII", seconds, fraction, len(packet), len(packet)) + packet
    path.write_bytes(bytes(out))
    return path


# --- the reader ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("order", "magic", "unit_ns"), [("<", MICRO, 1000), (">", MICRO, 1000),
                                                          ("<", NANO, 1), (">", NANO, 1)])
def test_both_byte_orders_and_timestamp_units(tmp_path, order, magic, unit_ns):
    stamps = [(1_700_000_000, 999_999), (1_700_000_001, 5)]
    path = write_pcap(tmp_path / "c.pcap", [FRAMES[0], FRAMES[4]], order=order, magic=magic, stamps=stamps,
                      snaplen=1500)
    capture = read_pcap(path)
    assert (capture.link_type, capture.snaplen) == (LINKTYPE_ETHERNET, 1500)
    assert (capture.big_endian, capture.nanosecond) == (order == ">", magic == NANO)
    assert [p.data for p in capture.packets] == [FRAMES[0], FRAMES[4]]
    assert [p.index for p in capture.packets] == [0, 1]
    assert [p.wire_length for p in capture.packets] == [len(FRAMES[0]), len(FRAMES[4])]
    assert [p.timestamp_ns for p in capture.packets] == [1_700_000_000 * 10**9 + 999_999 * unit_ns,
                                                         1_700_000_001 * 10**9 + 5 * unit_ns]


def test_a_capture_of_no_packets(tmp_path):
    assert read_pcap(write_pcap(tmp_path / "c.pcap", [])).packets == []


def test_fcs_bits_above_the_link_type_are_not_part_of_it(tmp_path):
    # The file header's link-type word may carry "frames have an FCS of N bytes" in its top bits.
    assert read_pcap(write_pcap(tmp_path / "c.pcap", [], link_type=0x1400_0000 | LINKTYPE_ETHERNET)).link_type == 1


def _refusal(path: pathlib.Path) -> str:
    with pytest.raises(PcapError) as caught:
        read_pcap(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_a_pcapng_capture_is_read(tmp_path):
    capture = read_pcap(pcapng_capture(tmp_path))
    assert (capture.format, capture.link_type) == ("pcapng", LINKTYPE_ETHERNET)
    assert [p.data for p in capture.packets] == [*FRAMES, RUNT]
    assert [p.timestamp_ns for p in capture.packets] == [(1_700_000_000 + i) * 10**9 for i in range(len(FRAMES) + 1)]


@pytest.mark.parametrize(("content", "words"), [
    (b"", "not a pcap capture (an empty file"),
    (b"GIF89a" + bytes(30), "not a pcap capture (magic number 47494638"),
    (struct.pack("<I", MICRO) + bytes(10), "truncated: the file header needs 24 bytes, the file has 14"),
])
def test_not_a_capture(tmp_path, content, words):
    path = tmp_path / "c.pcap"
    path.write_bytes(content)
    assert words in _refusal(path)


def test_another_format_version_is_refused(tmp_path):
    assert "pcap format version 3.0" in _refusal(write_pcap(tmp_path / "c.pcap", [], version=(3, 0)))


def test_a_cut_record_header_names_the_packet(tmp_path):
    path = write_pcap(tmp_path / "c.pcap", [FRAMES[0]])
    path.write_bytes(path.read_bytes() + bytes(7))
    message = _refusal(path)
    assert f"packet 2 (at byte {24 + 16 + len(FRAMES[0])})" in message
    assert "truncated: its record header has 7 of 16 bytes" in message


def test_a_cut_packet_names_what_is_missing(tmp_path):
    path = write_pcap(tmp_path / "c.pcap", [FRAMES[0], FRAMES[4]])
    path.write_bytes(path.read_bytes()[:-10])
    assert f"packet 2 (at byte {24 + 16 + len(FRAMES[0])}): truncated: the record holds {len(FRAMES[4])} bytes, " \
           f"the file ends after {len(FRAMES[4]) - 10}" in _refusal(path)


def test_a_record_longer_than_any_capture_is_malformed(tmp_path):
    path = tmp_path / "c.pcap"
    path.write_bytes(struct.pack("<IHHiIII", MICRO, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 1 << 30, 60))
    assert "packet 1 (at byte 24): malformed: a record of 1,073,741,824 bytes" in _refusal(path)


def test_a_missing_file(tmp_path):
    assert "No such file" in _refusal(tmp_path / "absent.pcap")


# --- bpfjit run --pcap ---------------------------------------------------------------------------

def expected_echo_reply(request: bytes) -> bytes:
    """firewall.c's answer to an ICMP echo request, by hand: MACs and IPv4 addresses swapped (the
    IPv4 checksum is a sum, so it stays), type 8 -> 0, the ICMP checksum made right again."""
    reply = bytearray(request)
    reply[0:6], reply[6:12] = request[6:12], request[0:6]
    reply[26:30], reply[30:34] = request[30:34], request[26:30]
    reply[34], reply[36:38] = 0, b"\0\0"
    reply[36:38] = inet_csum(bytes(reply[34:])).to_bytes(2, "big")
    return bytes(reply)


def run_capture(capsys, path: pathlib.Path, *options: str) -> tuple[int, str, str]:
    code = main(["run", FIREWALL, "--pcap", str(path), *options])
    out, err = capsys.readouterr()
    return code, out, err


def capture_json(capsys, path: pathlib.Path, engine: str) -> dict:
    code, out, err = run_capture(capsys, path, "--engine", engine, "--json")
    assert code == 0, err
    return json.loads(out)


def check_firewall_capture(record: dict) -> None:
    """The firewall's answers over FRAMES then RUNT, worked out by hand."""
    rows = record["packets"]
    assert [row.get("retval") for row in rows] == [*EXPECTED_VERDICTS, None]
    for row, frame, verdict in zip(rows, FRAMES, EXPECTED_VERDICTS):
        expected = expected_echo_reply(frame) if verdict == 3 else frame
        assert (row["length"], bytes.fromhex(row["data_out"]), row["changed"]) == (len(frame), expected, verdict == 3)
        assert row["action"] == XDP_ACTIONS[verdict]
    assert "at least 14 bytes" in rows[-1]["error"]
    counts = {XDP_ACTIONS[v]: EXPECTED_VERDICTS.count(v) for v in set(EXPECTED_VERDICTS)}
    assert record["summary"]["actions"] == {**counts, "error": 1}
    assert record["summary"]["packets"] == len(FRAMES) + 1 and record["summary"]["packets_per_second"] > 0


def test_the_firewall_over_a_capture(capsys, tmp_path, engine):
    path = write_pcap(tmp_path / "c.pcap", [*FRAMES, RUNT], order=">", magic=NANO)
    check_firewall_capture(capture_json(capsys, path, engine))


def test_the_text_form(capsys, tmp_path):
    code, out, _ = run_capture(capsys, write_pcap(tmp_path / "c.pcap", [*FRAMES, RUNT]), "--packets")
    lines = out.splitlines()
    assert code == 0 and "capture" in lines[0] and f"{len(FRAMES) + 1} packets (ETHERNET)" in lines[0]
    assert lines[2].split()[:4] == ["1", str(len(FRAMES[0])), "XDP_PASS", "(2)"] and lines[2].endswith("unchanged")
    reply = lines[2 + 4]  # the fifth packet: the echo request
    assert "XDP_TX (3)" in reply and f"changed: {len(FRAMES[4])} bytes, sha256" in reply
    assert "error: " in lines[2 + len(FRAMES)]
    assert "packets/s" in lines[3 + len(FRAMES)]
    assert [line.split()[:2] for line in lines[4 + len(FRAMES):]] == [["XDP_PASS", "5"], ["XDP_DROP", "4"],
                                                                     ["XDP_TX", "1"], ["error", "1"]]


def test_maps_carry_from_packet_to_packet(tmp_path):
    # firewall.c counts packets in .bss and per source: state an attached program would keep.
    # Through the API: a capture's packets are test runs on one load.
    obj = bpfjit.load(FIREWALL)
    for packet in read_pcap(write_pcap(tmp_path / "c.pcap", FRAMES * 2)).packets:
        obj.programs["firewall"].test_run(packet.data)
    assert obj.bss.total_packets == 2 * len(FRAMES)


def raw_link_capture(folder: pathlib.Path) -> pathlib.Path:
    return write_pcap(folder / "c.pcap", FRAMES, link_type=LINKTYPE_RAW)


def cut_capture(folder: pathlib.Path) -> pathlib.Path:
    path = write_pcap(folder / "c.pcap", FRAMES)
    path.write_bytes(path.read_bytes()[:-3])
    return path


def pcapng_capture(folder: pathlib.Path) -> pathlib.Path:
    """FRAMES then RUNT in a big-endian pcapng file (test_pcapng's writer), one a second, stamped
    in microseconds."""
    blocks = [epb(">", 0, (1_700_000_000 + i) * 10**6, frame) for i, frame in enumerate([*FRAMES, RUNT])]
    path = folder / "c.pcapng"
    path.write_bytes(shb(">") + idb(">", LINKTYPE_ETHERNET) + b"".join(blocks))
    return path


def mixed_link_pcapng_capture(folder: pathlib.Path) -> pathlib.Path:
    path = folder / "c.pcapng"
    path.write_bytes(shb("<") + idb("<", LINKTYPE_ETHERNET) + idb("<", LINKTYPE_RAW) + epb("<", 0, 0, FRAMES[0])
                     + epb("<", 1, 0, FRAMES[0]))
    return path


def test_the_firewall_over_a_pcapng_capture(capsys, tmp_path):
    code, out, err = run_capture(capsys, pcapng_capture(tmp_path), "--json")
    assert code == 0, err
    check_firewall_capture(json.loads(out))


@pytest.mark.parametrize(("make", "words"), [
    (raw_link_capture, "link type RAW: xdp programs run on Ethernet frames (link type 1)"),
    (mixed_link_pcapng_capture, "link type RAW (101) after packets of link type ETHERNET (1)"),
])
def test_bad_captures_are_one_line_errors(capsys, tmp_path, make, words):
    code, out, err = run_capture(capsys, make(tmp_path))
    assert code == 1 and out == "" and err.startswith("bpfjit: error: ") and err.count("\n") == 1 and words in err


def test_a_capture_cut_short_runs_the_packets_before_the_cut_and_fails(capsys, tmp_path):
    """As tcpdump reads a file whose writer was stopped: every whole packet runs, then a warning
    says where the file ends, and the command fails."""
    code, out, err = run_capture(capsys, cut_capture(tmp_path), "--json")
    assert code == 1
    assert len(json.loads(out)["packets"]) == len(FRAMES) - 1
    assert err.startswith(f"bpfjit: warning: the capture is cut short after {len(FRAMES) - 1} packets: ")
    assert "truncated: the record holds" in err and err.count("\n") == 1


def test_read_pcap_keeps_the_packets_before_a_cut_only_when_asked(tmp_path):
    path = cut_capture(tmp_path)
    with pytest.raises(PcapTruncated, match="truncated: the record holds"):
        read_pcap(path)
    capture = read_pcap(path, partial=True)
    assert [packet.data for packet in capture.packets] == FRAMES[:-1]
    assert "truncated: the record holds" in capture.truncated
    assert read_pcap(write_pcap(tmp_path / "whole.pcap", FRAMES), partial=True).truncated == ""
    named = tmp_path / "a: truncated: b.pcap"  # the name says "truncated": a malformed file still refuses
    named.write_bytes(write_pcap(tmp_path / "m.pcap", FRAMES).read_bytes()[:24] + (1 << 20).to_bytes(4, "little") * 4)
    with pytest.raises(PcapError, match="malformed"):
        read_pcap(named, partial=True)


@pytest.mark.parametrize("option", [["--data-hex", "00" * 14], ["--repeat", "3"], ["--ctx-hex", "00"]])
def test_pcap_gives_the_inputs(capsys, tmp_path, option):
    code, _, err = run_capture(capsys, write_pcap(tmp_path / "c.pcap", FRAMES), *option)
    assert code == 1 and f"drop {option[0]}" in err


def test_pcap_needs_a_program(capsys, tmp_path):
    assert main(["run", "--pcap", str(write_pcap(tmp_path / "c.pcap", FRAMES))]) == 1
    assert "need a program" in capsys.readouterr().err


def test_a_raw_program_takes_any_link_type(capsys, tmp_path):
    program = tmp_path / "length.asm"
    program.write_text("mov %r0, %r2\nexit\n")  # r0 = the packet's length
    path = write_pcap(tmp_path / "c.pcap", [b"abc", b"", bytes(300)], link_type=LINKTYPE_RAW)
    assert main(["run", str(program), "--pcap", str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [row["retval"] for row in record["packets"]] == [3, 0, 300]
    assert record["summary"]["actions"] == {"retval 0": 1, "retval 3": 1, "retval 300": 1}


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_engine")
def test_the_kernel_gives_the_same_answers(capsys, tmp_path):
    path = write_pcap(tmp_path / "c.pcap", [*FRAMES, RUNT])
    record = capture_json(capsys, path, "kernel")
    check_firewall_capture(record)

"""Reading classic libpcap capture files, so that captured traffic can be fed to a program.

The format (https://www.tcpdump.org/manpages/pcap-savefile.5.html, also
draft-ietf-opsawg-pcap): a 24-byte file header, then per packet a 16-byte record header and the
captured bytes. The magic number says both the byte order the writer used and the timestamp
unit: 0xa1b2c3d4 for microseconds, 0xa1b23c4d for nanoseconds. pcapng files are told apart by
their first block type and refused with a hint, as is anything else that is not a capture.

Every packet is checked as it is read: a record that claims more bytes than the file holds, or
more than any capture can hold, is a :class:`PcapError` naming the packet and the byte offset,
never a short or garbled packet.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from .errors import BPFError

__all__ = ["LINKTYPE_ETHERNET", "Capture", "Packet", "PcapError", "PcapReader", "read_pcap"]

LINKTYPE_ETHERNET = 1
LINKTYPE_NAMES = {0: "NULL", 1: "ETHERNET", 101: "RAW", 113: "LINUX_SLL", 228: "IPV4", 229: "IPV6",
                  276: "LINUX_SLL2"}
_MAGICS = {  # the first four bytes as written -> (struct byte order, timestamp fraction per second)
    bytes.fromhex("d4c3b2a1"): ("<", 1_000_000),
    bytes.fromhex("a1b2c3d4"): (">", 1_000_000),
    bytes.fromhex("4d3cb2a1"): ("<", 1_000_000_000),
    bytes.fromhex("a1b23c4d"): (">", 1_000_000_000),
}
PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")  # a pcapng Section Header Block's type
FILE_HEADER_SIZE = 24
RECORD_HEADER_SIZE = 16
# libpcap refuses records longer than this (MAXIMUM_SNAPLEN): no link type captures more.
MAX_RECORD_SIZE = 262_144


class PcapError(BPFError):
    """A file that is not a classic pcap capture, or a capture that is truncated or malformed."""


@dataclass(frozen=True)
class Packet:
    """One captured packet: its bytes as captured (at most the snap length), the length it had on
    the wire, and its timestamp in nanoseconds since the epoch."""
    index: int  # 0 for the first packet of the file
    data: bytes
    wire_length: int
    timestamp_ns: int


@dataclass(frozen=True)
class Capture:
    """A whole capture: the file header's facts and every packet."""
    link_type: int
    snaplen: int
    nanosecond: bool  # the timestamps' unit as written (they are all given in ns)
    big_endian: bool
    packets: list[Packet]

    @property
    def link_name(self) -> str:
        return LINKTYPE_NAMES.get(self.link_type, str(self.link_type))


class PcapReader:
    """The packets of an open capture, one at a time (the file header is read at once)."""

    def __init__(self, stream: BinaryIO, name: str = "capture"):
        self.stream = stream
        self.name = name
        header = stream.read(FILE_HEADER_SIZE)
        magic = header[:4]
        if magic == PCAPNG_MAGIC:
            raise PcapError(f"{name}: a pcapng capture; bpfjit reads classic pcap files: convert it with "
                            "`editcap -F pcap IN OUT` (or `tshark -F pcap -r IN -w OUT`)")
        if magic not in _MAGICS:
            what = "an empty file" if not header else f"magic number {magic.hex()}"
            raise PcapError(f"{name}: not a pcap capture ({what}; a capture starts with a1b2c3d4 or a1b23c4d "
                            "in either byte order)")
        if len(header) < FILE_HEADER_SIZE:
            raise PcapError(f"{name}: truncated: the file header needs {FILE_HEADER_SIZE} bytes, the file has "
                            f"{len(header)}")
        self._order, self._fraction = _MAGICS[magic]
        major, minor, _zone, _sigfigs, self.snaplen, network = struct.unpack(self._order + "HHiIII", header[4:])
        if major != 2:
            raise PcapError(f"{name}: pcap format version {major}.{minor}; bpfjit reads version 2.x")
        self.link_type = network & 0xFFFF  # the upper bits may say how many FCS bytes the frames carry
        self._record = struct.Struct(self._order + "IIII")
        self._offset = FILE_HEADER_SIZE
        self._index = 0

    @property
    def nanosecond(self) -> bool:
        return self._fraction == 1_000_000_000

    @property
    def big_endian(self) -> bool:
        return self._order == ">"

    def __iter__(self) -> Iterator[Packet]:
        return self

    def __next__(self) -> Packet:
        header = self.stream.read(RECORD_HEADER_SIZE)
        if not header:
            raise StopIteration
        where = f"{self.name}: packet {self._index + 1} (at byte {self._offset})"
        if len(header) < RECORD_HEADER_SIZE:
            raise PcapError(f"{where}: truncated: its record header has {len(header)} of {RECORD_HEADER_SIZE} bytes")
        seconds, fraction, captured, wire = self._record.unpack(header)
        if captured > max(MAX_RECORD_SIZE, self.snaplen):
            raise PcapError(f"{where}: malformed: a record of {captured:,} bytes, more than any capture holds "
                            f"(snap length {self.snaplen:,})")
        data = self.stream.read(captured)
        if len(data) < captured:
            raise PcapError(f"{where}: truncated: the record holds {captured:,} bytes, the file ends after "
                            f"{len(data):,}")
        packet = Packet(self._index, data, wire, seconds * 1_000_000_000 + fraction * (1_000_000_000 // self._fraction))
        self._index += 1
        self._offset += RECORD_HEADER_SIZE + captured
        return packet


def read_pcap(path: str | os.PathLike) -> Capture:
    """Every packet of the capture at path (PcapError if it is not one, or is truncated)."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            reader = PcapReader(stream, name)
            packets = list(reader)
    except OSError as exc:
        raise PcapError(f"{name}: {exc.strerror or exc}") from None
    return Capture(reader.link_type, reader.snaplen, reader.nanosecond, reader.big_endian, packets)

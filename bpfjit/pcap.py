"""Reading capture files, classic libpcap and pcapng, so that captured traffic can be fed to a
program; and writing classic ones (:func:`write_pcap`: little-endian, nanosecond timestamps), for
the packets a program leaves.

Classic pcap (https://www.tcpdump.org/manpages/pcap-savefile.5.html, also draft-ietf-opsawg-pcap):
a 24-byte file header, then per packet a 16-byte record header and the captured bytes. The magic
number says both the byte order the writer used and the timestamp unit: 0xa1b2c3d4 for
microseconds, 0xa1b23c4d for nanoseconds.

pcapng (draft-ietf-opsawg-pcapng), told apart by its first four bytes 0a0d0d0a: a run of blocks,
each led and trailed by its type and total length. A Section Header Block starts each section and
says its byte order; Interface Description Blocks number the section's interfaces (link type, snap
length, timestamp resolution and offset); packets come in Enhanced, Simple or (obsolete) Packet
Blocks; every other block (name resolution, statistics, custom...) is skipped. bpfjit runs one
program type per capture, so every packet of a pcapng capture must come from interfaces of one
link type.

The whole file is read into memory at once, then walked with ``struct.unpack_from``: a record
costs one unpack and one slice, so a million packets read in a second or two. Every record is
checked as it is read: a record or block that claims more bytes than the file holds, or than its
own room, is a :class:`PcapError` of one line naming the file, the packet or block and the byte
offset, never a short or garbled packet.
"""
from __future__ import annotations

import contextlib
import gc
import io
import os
import struct
from dataclasses import dataclass, replace
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple

from .errors import BPFError

__all__ = ["LINKTYPE_ETHERNET", "Capture", "Packet", "PcapError", "PcapReader", "read_pcap", "write_pcap"]

LINKTYPE_ETHERNET = 1
LINKTYPE_NAMES = {0: "NULL", 1: "ETHERNET", 101: "RAW", 113: "LINUX_SLL", 228: "IPV4", 229: "IPV6",
                  276: "LINUX_SLL2"}
NS_PER_SECOND = 1_000_000_000
_MAGICS = {  # the first four bytes as written -> (struct byte order, timestamp fraction per second)
    bytes.fromhex("d4c3b2a1"): ("<", 1_000_000),
    bytes.fromhex("a1b2c3d4"): (">", 1_000_000),
    bytes.fromhex("4d3cb2a1"): ("<", NS_PER_SECOND),
    bytes.fromhex("a1b23c4d"): (">", NS_PER_SECOND),
}
PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")  # a pcapng Section Header Block's type
FILE_HEADER_SIZE = 24
RECORD_HEADER_SIZE = 16
# libpcap refuses records longer than this (MAXIMUM_SNAPLEN): no link type captures more.
MAX_RECORD_SIZE = 262_144
_FILE_HEADER = struct.Struct("<IHHiIII")  # what write_pcap writes: little-endian, nanoseconds, 2.4
_RECORD_HEADER = struct.Struct("<IIII")


class PcapError(BPFError):
    """A file that is not a capture, or a capture that is truncated or malformed."""


class PcapTruncated(PcapError):
    """A capture that ends inside a record or block: one whose writer stopped (read_pcap's partial
    reads keep the packets before it)."""


def _located(where: str, what: str) -> PcapError:
    """A reader's error at `where`: PcapTruncated when `what` says the file ends too early."""
    return (PcapTruncated if what.startswith("truncated:") else PcapError)(f"{where}: {what}")


class Packet(NamedTuple):
    """One captured packet: its bytes as captured (at most the snap length), the length it had on
    the wire, and its timestamp in nanoseconds since the epoch. A named tuple, not a frozen
    dataclass: as immutable, and made several times faster (a frozen dataclass's __init__ costs
    more than the unpack and the slice that read a packet, and a capture makes millions)."""
    index: int  # 0 for the first packet of the file
    data: bytes
    wire_length: int
    timestamp_ns: int


@dataclass(frozen=True)
class Capture:
    """A whole capture: the file's facts and every packet. For pcapng: link_type is the packets'
    interfaces' (one for all), or without packets the first interface's, or without interfaces
    either LINKTYPE_ETHERNET, the link type most programs run on, as such a file has none of its
    own; snaplen is the first interface's (0, pcapng's "no limit", when there is none); big_endian
    is the first section's; nanosecond says whether any interface stamps finer than microseconds."""
    link_type: int
    snaplen: int
    nanosecond: bool  # the timestamps' unit as written (they are all given in ns)
    big_endian: bool
    packets: list[Packet]
    format: str = "pcap"  # or "pcapng"
    # read_pcap(partial=True): why the file ends early (a record or block cut short, as in a
    # capture stopped while it was written); the packets before it are kept. "" when whole.
    truncated: str = ""

    @property
    def link_name(self) -> str:
        return LINKTYPE_NAMES.get(self.link_type, str(self.link_type))


# --- classic pcap --------------------------------------------------------------------------------

class PcapReader:
    """A classic capture from an open stream: the stream is read whole at once (one copy costs far
    less than a read per packet), the file header's facts are attributes, and iterating yields the
    packets, each checked as it comes. pcapng files are read by :func:`read_pcap`."""

    def __init__(self, stream: BinaryIO, name: str = "capture"):
        self.name = name
        self._data = stream.read()
        header = self._data[:FILE_HEADER_SIZE]
        magic = header[:4]
        if magic == PCAPNG_MAGIC:
            raise PcapError(f"{name}: a pcapng capture: PcapReader reads classic pcap files, read_pcap reads both")
        if magic not in _MAGICS:
            what = "an empty file" if not header else f"magic number {magic.hex()}"
            raise PcapError(f"{name}: not a pcap capture ({what}; a pcap capture starts with a1b2c3d4 or a1b23c4d "
                            "in either byte order, a pcapng one with 0a0d0d0a)")
        if len(header) < FILE_HEADER_SIZE:
            raise PcapError(f"{name}: truncated: the file header needs {FILE_HEADER_SIZE} bytes, the file has "
                            f"{len(header)}")
        self._order, self._fraction = _MAGICS[magic]
        major, minor, _zone, _sigfigs, self.snaplen, network = struct.unpack(self._order + "HHiIII", header[4:])
        if major != 2:
            raise PcapError(f"{name}: pcap format version {major}.{minor}; bpfjit reads version 2.x")
        self.link_type = network & 0xFFFF  # the upper bits may say how many FCS bytes the frames carry

    @property
    def nanosecond(self) -> bool:
        return self._fraction == NS_PER_SECOND

    @property
    def big_endian(self) -> bool:
        return self._order == ">"

    def __iter__(self) -> Iterator[Packet]:
        """The packets from the first, each time."""
        data, size, largest = self._data, len(self._data), max(MAX_RECORD_SIZE, self.snaplen)
        unpack = struct.Struct(self._order + "IIII").unpack_from
        scale = NS_PER_SECOND // self._fraction
        offset, index = FILE_HEADER_SIZE, 0
        while offset < size:
            start = offset + RECORD_HEADER_SIZE
            if start > size:
                raise self._error(index, offset, f"truncated: its record header has {size - offset} of "
                                                 f"{RECORD_HEADER_SIZE} bytes")
            seconds, fraction, captured, wire = unpack(data, offset)
            if captured > largest:
                raise self._error(index, offset, f"malformed: a record of {captured:,} bytes, more than any capture "
                                                 f"holds (snap length {self.snaplen:,})")
            end = start + captured
            if end > size:
                raise self._error(index, offset, f"truncated: the record holds {captured:,} bytes, the file ends "
                                                 f"after {size - start:,}")
            yield Packet(index, data[start:end], wire, seconds * NS_PER_SECOND + fraction * scale)
            offset, index = end, index + 1

    def _error(self, index: int, offset: int, what: str) -> PcapError:
        return _located(f"{self.name}: packet {index + 1} (at byte {offset})", what)


def write_pcap(path: str | os.PathLike, packets: Iterable[Packet | bytes], link_type: int = LINKTYPE_ETHERNET,
               snaplen: int = 65535) -> int:
    """Write packets to a classic pcap file at path: little-endian, nanosecond timestamps, version
    2.4, the form that loses nothing a Packet holds. A Packet keeps its wire length and timestamp
    (its index is not written: records are numbered by their order); plain bytes are a whole packet
    stamped 0. Packets longer than snaplen are cut to it, their wire length kept, as a capture
    would. Returns how many packets were written; OSError, or a number the format cannot hold, is a
    PcapError naming the path."""
    name = os.fspath(path)
    try:
        header = _FILE_HEADER.pack(0xA1B23C4D, 2, 4, 0, 0, snaplen, link_type)
    except struct.error:
        raise PcapError(f"{name}: link type {link_type} or snap length {snaplen} does not fit a pcap file header "
                        "(both 32-bit, from 0)") from None
    count = 0
    try:
        with open(path, "wb") as stream:
            stream.write(header)
            for count, packet in enumerate(packets, 1):
                stream.write(_record(name, count, packet, snaplen))
    except OSError as exc:
        raise PcapError(f"{name}: {exc.strerror or exc}") from None
    return count


def _record(name: str, number: int, packet: Packet | bytes, snaplen: int) -> bytes:
    """The record write_pcap writes for a packet, header and data. Its wire length is never less
    than its captured length: a capture never holds more than the wire carried."""
    if isinstance(packet, Packet):
        data, wire, stamp = packet.data[:snaplen], max(packet.wire_length, len(packet.data)), packet.timestamp_ns
    else:
        data, wire, stamp = bytes(packet[:snaplen]), len(packet), 0
    try:
        return _RECORD_HEADER.pack(*divmod(stamp, NS_PER_SECOND), len(data), wire) + data
    except struct.error:
        raise PcapError(f"{name}: packet {number}: a timestamp of {stamp:,} ns or a wire length of {wire:,} bytes "
                        "does not fit a pcap record (seconds and lengths are 32-bit, from 0)") from None


# --- pcapng --------------------------------------------------------------------------------------

_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
# Each block type's fixed fields, leading type and length and trailing length included: the least
# total length it can have.
_MIN_LENGTH = {_SHB: 28, _IDB: 20, _PB: 32, _SPB: 16, _EPB: 32}
_BLOCK_NAMES = {_SHB: "Section Header Block", _IDB: "Interface Description Block", _PB: "Packet Block",
                _SPB: "Simple Packet Block", _EPB: "Enhanced Packet Block"}
_IF_TSRESOL, _IF_TSOFFSET = 9, 14


class _Interface(NamedTuple):
    """An Interface Description Block's facts; a packet's timestamp in ns is
    ticks * multiplier // divisor + offset_ns (integers, so no tick is lost to rounding)."""
    link_type: int
    snaplen: int
    multiplier: int
    divisor: int
    offset_ns: int

    @property
    def finer_than_microseconds(self) -> bool:
        """More than 10^6 ticks a second: 10^9 * divisor / multiplier > 10^6."""
        return self.divisor * 1000 > self.multiplier


def _tick_scale(resolution: int) -> tuple[int, int]:
    """if_tsresol -> (multiplier, divisor) from ticks to ns: high bit clear, 10^-v seconds a tick;
    set, 2^-(v & 0x7f)."""
    if resolution & 0x80:
        return NS_PER_SECOND, 1 << (resolution & 0x7F)
    if resolution <= 9:
        return 10 ** (9 - resolution), 1
    return 1, 10 ** (resolution - 9)


def _packet_layouts(order: str) -> dict[int, Callable[[bytes, int], tuple[int, ...]]]:
    """Block type -> the unpacker of an Enhanced or (obsolete) Packet Block's fields after its type
    and length, in a section of this byte order: (interface, timestamp high word, low word,
    captured length, wire length) in both, the Packet Block's 16-bit drop count skipped. The
    packet's data follows at byte 28 of the block."""
    return {_EPB: struct.Struct(order + "IIIII").unpack_from, _PB: struct.Struct(order + "HxxIIII").unpack_from}


def _link_label(link_type: int) -> str:
    """A link type for a message: its name and number, or its number alone when bpfjit knows no name."""
    name = LINKTYPE_NAMES.get(link_type)
    return f"{name} ({link_type})" if name else str(link_type)


class _PcapngReader:
    """One pass over a pcapng file's blocks; `read` gives the Capture. The packet blocks are the
    hot path, handled inline: one unpack, the checks, one slice per packet."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name = data, name
        self.interfaces: list[_Interface] = []  # the current section's, numbered from 0
        self.all_interfaces: list[_Interface] = []  # every section's, in file order
        self.big_endian: bool | None = None  # the first section's
        self._set_order("<")  # until the first Section Header Block says
        self.packets: list[Packet] = []  # as read so far (what a truncated file keeps)
        self.link_type: int | None = None  # theirs

    def _set_order(self, order: str) -> None:
        self.order = order
        self._head = struct.Struct(order + "II").unpack_from  # block type, total length
        self._word = struct.Struct(order + "I").unpack_from
        self._layouts = _packet_layouts(order)

    def read(self) -> Capture:
        packets: list[Packet] = self.packets
        append, data, size = packets.append, self.data, len(self.data)
        link_type = None  # the packets' link type, once one is read
        head, word, layouts = self._head, self._word, self._layouts
        interfaces = self.interfaces  # one list, emptied at each section's start
        offset, number = 0, 0
        while offset < size:
            number += 1
            # The common case inline, as the loop's cost is per packet: a block of 32 bytes or more
            # (every type's fixed fields fit) that the file holds whole, and not a section's start.
            # Anything else goes through _block, which makes every check and says what is wrong.
            block_type, length = head(data, offset) if size - offset >= 8 else (_SHB, 0)
            if (block_type == _SHB or length < 32 or length % 4 or length > size - offset
                    or word(data, offset + length - 4)[0] != length):
                block_type, length = self._block(number, offset)
                head, word, layouts = self._head, self._word, self._layouts
            unpack = layouts.get(block_type)
            if unpack is not None:
                interface, high, low, captured, wire = unpack(data, offset + 8)
                ticks, start, room = high << 32 | low, offset + 28, length - 32
            elif block_type == _SPB:
                interface, ticks, captured, wire, start, room = self._simple_packet(offset, length)
            else:
                self._other_block(block_type, number, offset, length)
                offset += length
                continue
            if interface >= len(interfaces):
                raise self._error(number, offset, f"packet {len(packets) + 1}: interface {interface} was never "
                                                  f"described (the section describes {len(interfaces)})")
            link, _snaplen, multiplier, divisor, offset_ns = interfaces[interface]
            if link != link_type:
                link_type = self.link_type = self._check_link(link_type, link, number, offset)
            if captured > room:
                raise self._error(number, offset, f"malformed: a captured length of {captured:,} bytes, more than "
                                                  f"the block's {room:,} bytes of packet data")
            append(Packet(len(packets), data[start:start + captured], wire, ticks * multiplier // divisor + offset_ns))
            offset += length
        return self._capture(link_type, packets)

    def _simple_packet(self, offset: int, length: int) -> tuple[int, int, int, int, int, int]:
        """A Simple Packet Block's fields in the shape read() takes: interface 0, the section's
        first (or none yet: read() says so), timestamp 0; the captured length is the wire length
        cut to that interface's snap length (0: no limit)."""
        wire = self._word(self.data, offset + 8)[0]
        snaplen = self.interfaces[0].snaplen if self.interfaces else 0
        return 0, 0, min(wire, snaplen or wire), wire, offset + 12, length - 16

    def _block(self, number: int, offset: int) -> tuple[int, int]:
        """The block at offset's type and total length, checked against the file and its trailing
        length; a Section Header Block first sets the byte order its section is read in."""
        remaining = len(self.data) - offset
        if remaining < 8:
            raise self._error(number, offset, f"truncated: a block header needs 8 bytes, the file ends after "
                                              f"{remaining}")
        if self.data[offset:offset + 4] == PCAPNG_MAGIC:  # the same in both byte orders
            self._set_order(self._section_order(number, offset))
        block_type, length = self._head(self.data, offset)
        minimum = _MIN_LENGTH.get(block_type, 12)
        if length < minimum or length % 4:
            kind = _BLOCK_NAMES.get(block_type, f"block type {block_type:#x}")
            raise self._error(number, offset, f"malformed: block total length {length:,} ({kind}: a multiple of 4 "
                                              f"bytes, at least {minimum})")
        if length > remaining:
            raise self._error(number, offset, f"truncated: the block holds {length:,} bytes, the file ends after "
                                              f"{remaining:,}")
        trailing = self._word(self.data, offset + length - 4)[0]
        if trailing != length:
            raise self._error(number, offset, f"malformed: the block's trailing length {trailing:,} differs from its "
                                              f"leading length {length:,}")
        return block_type, length

    def _section_order(self, number: int, offset: int) -> str:
        """The byte order a Section Header Block's byte-order magic says."""
        magic = self.data[offset + 8:offset + 12]
        if len(magic) < 4:
            raise self._error(number, offset, f"truncated: a section header needs 12 bytes to say its byte order, "
                                              f"the file ends after {len(magic) + 8}")
        for order in "<>":
            if struct.unpack(order + "I", magic)[0] == _BYTE_ORDER_MAGIC:
                return order
        raise self._error(number, offset, f"not a pcapng section: byte-order magic {magic.hex()}, neither 1a2b3c4d "
                                          "nor 4d3c2b1a")

    def _other_block(self, block_type: int, number: int, offset: int, length: int) -> None:
        """A block that holds no packet: a section or an interface starts, anything else is skipped."""
        if block_type == _SHB:
            major, minor = struct.unpack_from(self.order + "HH", self.data, offset + 12)
            if major != 1:
                raise self._error(number, offset, f"pcapng format version {major}.{minor}; bpfjit reads version 1.x")
            if self.big_endian is None:
                self.big_endian = self.order == ">"
            self.interfaces.clear()
        elif block_type == _IDB:
            link_type, _reserved, snaplen = struct.unpack_from(self.order + "HHI", self.data, offset + 8)
            interface = _Interface(link_type, snaplen, *self._timestamps(number, offset, length))
            self.interfaces.append(interface)
            self.all_interfaces.append(interface)

    def _timestamps(self, number: int, offset: int, length: int) -> tuple[int, int, int]:
        """(multiplier, divisor, offset in ns) from the options of the Interface Description Block
        at offset: if_tsresol (microseconds when absent) and if_tsoffset (seconds, 0 when absent)."""
        multiplier, divisor, offset_ns = 1000, 1, 0
        for code, at, value in self._options(number, offset, offset + 16, offset + length - 4):
            if code == _IF_TSRESOL:
                multiplier, divisor = _tick_scale(self._option_value(number, offset, at, "if_tsresol", value, "B"))
            elif code == _IF_TSOFFSET:
                offset_ns = self._option_value(number, offset, at, "if_tsoffset", value, "q") * NS_PER_SECOND
        return multiplier, divisor, offset_ns

    def _options(self, number: int, offset: int, start: int, end: int) -> Iterator[tuple[int, int, bytes]]:
        """(code, byte offset, value) of each option of the block at offset, from start to end, up
        to opt_endofopt (code 0) if there is one."""
        while start + 4 <= end:
            code, size = struct.unpack_from(self.order + "HH", self.data, start)
            if code == 0:
                return
            if start + 4 + size > end:
                raise self._error(number, offset, f"malformed: option {code} at byte {start} has {size} bytes, it "
                                                  f"runs past the block's options, which end at byte {end}")
            yield code, start, self.data[start + 4:start + 4 + size]
            start += 4 + (size + 3) // 4 * 4

    def _option_value(self, number: int, offset: int, at: int, name: str, value: bytes, form: str) -> int:
        """An option's one number, in struct form `form`, which must be the whole value."""
        expected = struct.calcsize(form)
        if len(value) != expected:
            raise self._error(number, offset, f"malformed: option {name} at byte {at} has {len(value)} bytes, "
                                              f"not {expected}")
        return struct.unpack(self.order + form, value)[0]

    def _check_link(self, link_type: int | None, link: int, number: int, offset: int) -> int:
        """The capture's link type once a packet of an interface of link type `link` is read: one
        link type per capture, as one program type runs on it."""
        if link_type is not None:
            raise self._error(number, offset, f"a packet from an interface of link type {_link_label(link)} after "
                                              f"packets of link type {_link_label(link_type)}: bpfjit runs one "
                                              "program type per capture, so a capture holds one link type")
        return link

    def _capture(self, link_type: int | None, packets: list[Packet]) -> Capture:
        first = self.all_interfaces[0] if self.all_interfaces else None
        if link_type is None:  # no packets: the first interface's link type, if any
            link_type = first.link_type if first else LINKTYPE_ETHERNET
        return Capture(link_type, first.snaplen if first else 0,
                       any(interface.finer_than_microseconds for interface in self.all_interfaces),
                       bool(self.big_endian), packets, "pcapng")

    def _error(self, number: int, offset: int, what: str) -> PcapError:
        """Where: the block's number (from 1) and byte offset."""
        return _located(f"{self.name}: block {number} (at byte {offset})", what)


# --- either --------------------------------------------------------------------------------------

def read_pcap(path: str | os.PathLike, partial: bool = False) -> Capture:
    """Every packet of the capture at path, classic pcap or pcapng (PcapError if it is neither, or is
    truncated or malformed). partial: a file cut short in a record or block (a capture stopped
    while it was written) gives the packets before the cut, and says where in ``truncated``, as
    tcpdump reads such a file; malformed ones still raise."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise PcapError(f"{name}: {exc.strerror or exc}") from None
    with _cyclic_gc_paused():
        if data[:4] == PCAPNG_MAGIC:
            pcapng = _PcapngReader(data, name)
            try:
                return pcapng.read()
            except PcapTruncated as error:
                if not (partial and pcapng.interfaces):
                    raise
                return replace(pcapng._capture(pcapng.link_type, pcapng.packets), truncated=str(error))
        reader = PcapReader(io.BytesIO(data), name)  # BytesIO shares the bytes: no copy
        packets: list[Packet] = []
        truncated = ""
        try:
            for packet in reader:
                packets.append(packet)
        except PcapTruncated as error:
            if not partial:
                raise
            truncated = str(error)
        return Capture(reader.link_type, reader.snaplen, reader.nanosecond, reader.big_endian, packets,
                       truncated=truncated)



@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a capture is read: its millions of new packets would set
    off collections that scan them all again and again (a third of the time), and packets (tuples
    of bytes and ints) make no cycles to collect. Left off if it was off."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

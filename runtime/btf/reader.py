"""Bounds-checked reads shared by the ``.BTF`` and ``.BTF.ext`` parsers.

Both sections start with the same magic (which also tells the byte order) and locate their parts
by header-relative offsets; every read here checks the bounds first so that malformed input gives a
:class:`~bpfjit.errors.BTFError` naming the byte offset, never a ``struct.error`` or ``IndexError``.
"""
from __future__ import annotations

import struct

from bpfjit.errors import BTFError

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1


class Reader:
    """Little/big-endian reads from a byte buffer; errors name the offset and what was read."""

    def __init__(self, data: bytes, endian: str = "<", what: str = "BTF"):
        self.data = data
        self.endian = endian
        self.what = what

    def need(self, off: int, n: int, reason: str) -> None:
        if off < 0 or n < 0 or off + n > len(self.data):
            raise BTFError(f"{self.what}: {reason} at byte offset {off} (+{n}) past the end "
                           f"({len(self.data)} bytes)")

    def u32(self, off: int, reason: str) -> int:
        self.need(off, 4, reason)
        return struct.unpack_from(self.endian + "I", self.data, off)[0]

    def s32(self, off: int, reason: str) -> int:
        self.need(off, 4, reason)
        return struct.unpack_from(self.endian + "i", self.data, off)[0]

    def u8(self, off: int, reason: str) -> int:
        self.need(off, 1, reason)
        return self.data[off]

    def words(self, off: int, count: int, reason: str) -> tuple[int, ...]:
        self.need(off, 4 * count, reason)
        return struct.unpack_from(f"{self.endian}{count}I", self.data, off)

    def section(self, start: int, off: int, length: int, name: str) -> tuple[int, int]:
        """Absolute [begin, end) of a part at ``off`` past ``start`` (the header's end)."""
        begin = start + off
        if begin > len(self.data) or begin + length > len(self.data):
            raise BTFError(f"{self.what}: {name} section at byte offset {begin} (+{length}) runs "
                           f"past the end ({len(self.data)} bytes)")
        return begin, begin + length


def open_section(data: bytes, what: str) -> tuple[Reader, int]:
    """A reader in the byte order the magic says, and the checked ``hdr_len``, for a section
    whose header starts with magic, version, flags and ``hdr_len`` (both ``.BTF`` and
    ``.BTF.ext``); ``min_hdr_len`` checks are the caller's."""
    if len(data) < 2:
        raise BTFError(f"{what}: truncated header at byte offset 0 ({len(data)} bytes)")
    if struct.unpack_from("<H", data, 0)[0] == BTF_MAGIC:
        endian = "<"
    elif struct.unpack_from(">H", data, 0)[0] == BTF_MAGIC:
        endian = ">"
    else:
        magic = struct.unpack_from("<H", data, 0)[0]
        raise BTFError(f"{what}: bad magic {magic:#06x} at byte offset 0 (expected "
                       f"{BTF_MAGIC:#06x})")
    r = Reader(data, endian, what)
    version = r.u8(2, "header version")
    hdr_len = r.u32(4, "header hdr_len")
    if version != BTF_VERSION:
        raise BTFError(f"{what}: unsupported version {version} at byte offset 2")
    return r, hdr_len

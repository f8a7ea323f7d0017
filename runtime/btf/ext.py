"""``.BTF.ext``: func_info, line_info and (``hdr_len >= 32``) CO-RE relocation records, one group
of records per ELF code section; section names and strings come from the ``.BTF`` string table.

Records may be longer than the fields this module reads (newer formats append fields), so each
block's ``rec_size`` is honoured and the known prefix decoded.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from bpfjit.errors import BTFError

from .index import BTF
from .reader import Reader, open_section

BTF_EXT_CORE_HDR_LEN = 32  # magic .. line_info_len, then core_relo_off, core_relo_len


@dataclass(frozen=True)
class FuncInfo:
    insn_off_bytes: int  # byte offset in the ELF section (divide by 8 for the slot index)
    type_id: int  # a FUNC

    @property
    def insn_index(self) -> int:
        return self.insn_off_bytes // 8


@dataclass(frozen=True)
class LineInfo:
    insn_off_bytes: int
    file: str
    line_text: str
    line: int
    column: int

    @property
    def insn_index(self) -> int:
        return self.insn_off_bytes // 8


class CoreReloKind(IntEnum):
    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


@dataclass(frozen=True)
class CoreRelo:
    section: str
    insn_off_bytes: int
    type_id: int
    access_str: str
    kind: int  # CoreReloKind value

    @property
    def insn_index(self) -> int:
        return self.insn_off_bytes // 8


@dataclass
class BTFExt:
    func_info: dict[str, list[FuncInfo]] = field(default_factory=dict)
    line_info: dict[str, list[LineInfo]] = field(default_factory=dict)
    core_relos: list[CoreRelo] = field(default_factory=list)
    func_info_rec_size: int = 0
    line_info_rec_size: int = 0
    core_relo_rec_size: int = 0


def parse_btf_ext(data: bytes, btf: BTF) -> BTFExt:
    """Parse a ``.BTF.ext`` section; strings and section names come from ``btf``'s string table."""
    r, hdr_len = open_section(bytes(data), "BTF.ext")
    if hdr_len < 8:
        raise BTFError(f"BTF.ext: hdr_len {hdr_len} at byte offset 4 is too short")
    r.need(0, hdr_len, "header")
    ext = BTFExt()
    ext.func_info_rec_size, records = _block(r, hdr_len, btf, 8, "func_info", 8, _func_info)
    for section, record in records:
        ext.func_info.setdefault(section, []).append(record)
    ext.line_info_rec_size, records = _block(r, hdr_len, btf, 16, "line_info", 16, _line_info)
    for section, record in records:
        ext.line_info.setdefault(section, []).append(record)
    if hdr_len >= BTF_EXT_CORE_HDR_LEN:
        ext.core_relo_rec_size, records = _block(r, hdr_len, btf, 24, "core_relo", 16, _core_relo)
        ext.core_relos = [record for _section, record in records]
    return ext


def has_core_relos(data: bytes) -> bool:
    """Whether a ``.BTF.ext`` section's header announces CO-RE relocation records: what a loader
    checks before paying for the whole parse. A header that does not parse says False here; the
    parse itself reports it."""
    try:
        r, hdr_len = open_section(bytes(data[:BTF_EXT_CORE_HDR_LEN]), "BTF.ext")
        return hdr_len >= BTF_EXT_CORE_HDR_LEN and r.u32(28, "header core_relo_len") > 0
    except BTFError:
        return False


# A record maker: (btf, the record's known words, its byte offset, its ELF section) -> record.
_Make = Callable[[BTF, tuple[int, ...], int, str], Any]


def _block(r: Reader, hdr_len: int, btf: BTF, off_pos: int, name: str, min_rec: int,
           make: _Make) -> tuple[int, list[tuple[str, Any]]]:
    """(rec_size, [(section, record)]) of the block whose offset and length the header holds at
    ``off_pos``: a rec_size, then per ELF section its name, a count and that many records."""
    if hdr_len < off_pos + 8:
        return 0, []
    off, length = r.words(off_pos, 2, f"header {name}")
    if length == 0:
        return 0, []
    begin, end = r.section(hdr_len, off, length, name)
    rec_size = r.u32(begin, f"{name} rec_size")
    if rec_size < min_rec or rec_size % 4:
        raise BTFError(f"BTF.ext: {name} rec_size {rec_size} at byte offset {begin} is invalid "
                       f"(minimum {min_rec}, multiple of 4)")
    # Each record's known fields (records may be longer: newer formats append fields).
    layout = struct.Struct(f"{r.endian}{min_rec // 4}I{rec_size - min_rec}x")
    out = []
    pos = begin + 4
    while pos < end:
        if pos + 8 > end:
            raise BTFError(f"BTF.ext: {name}: truncated section header at byte offset {pos}")
        sec_off, num = r.words(pos, 2, f"{name} section header")
        section = btf.string(sec_off, f"BTF.ext {name} section name at byte offset {pos}")
        if num == 0:
            raise BTFError(f"BTF.ext: {name}: section '{section}' at byte offset {pos} has no "
                           f"records")
        pos += 8
        if pos + num * rec_size > end:
            raise BTFError(f"BTF.ext: {name}: section '{section}' at byte offset {pos - 8}: {num} "
                           f"records of {rec_size} bytes run past the end ({end})")
        for i, words in enumerate(layout.iter_unpack(r.data[pos:pos + num * rec_size])):
            out.append((section, make(btf, words, pos + i * rec_size, section)))
        pos += num * rec_size
    return rec_size, out


def _type_id(btf: BTF, type_id: int, what: str) -> int:
    if type_id >= len(btf.types):
        raise BTFError(f"BTF.ext: {what}: type id {type_id} out of range "
                       f"(0..{len(btf.types) - 1})")
    return type_id


def _func_info(btf: BTF, words: tuple[int, ...], pos: int, section: str) -> FuncInfo:
    insn_off, type_id = words
    return FuncInfo(insn_off, _type_id(btf, type_id, f"func_info at byte offset {pos}"))


def _line_info(btf: BTF, words: tuple[int, ...], pos: int, section: str) -> LineInfo:
    insn_off, file_off, line_off, line_col = words
    where = f"BTF.ext line_info at byte offset {pos}"
    return LineInfo(insn_off, btf.string(file_off, f"{where} file name"),
                    btf.string(line_off, f"{where} line text"), line_col >> 10, line_col & 0x3FF)


def _core_relo(btf: BTF, words: tuple[int, ...], pos: int, section: str) -> CoreRelo:
    insn_off, type_id, access_off, kind = words
    where = f"core_relo at byte offset {pos}"
    return CoreRelo(section, insn_off, _type_id(btf, type_id, where),
                    btf.string(access_off, f"BTF.ext {where} access string"), kind)

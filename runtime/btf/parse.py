"""The ``.BTF`` reader: header, string table, optional kind-layout table, then the type records.

A header (magic 0xEB9F, version 1, ``hdr_len``, type and string sections, and a kind-layout table
when ``hdr_len >= 32``) is followed by ``struct btf_type`` records with kind-specific trailers.
Type ids are 1-based in record order; id 0 is ``void``. Each known kind has one decoder in
``_DECODERS``; kinds this module does not know are skipped with the sizes the layout table gives,
as the kernel does.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bpfjit.errors import BTFError

from .index import BTF
from .reader import BTF_MAGIC, BTF_VERSION, Reader, open_section
from .types import (MODIFIER_KINDS, Array, BTFType, Datasec, DeclTag, Enum, EnumValue, Float, Func,
                    FuncProto, Fwd, Int, Kind, Member, Modifier, Param, Ptr, Struct, UnknownType,
                    Var, VarSecInfo, Void)

_KINDS = {kind.value: kind for kind in Kind}
BTF_HDR_LEN = 24  # the classic header; 32 and more adds the kind-layout table

# Bytes that follow a record: a fixed trailer, then vlen entries of a per-kind size.
_VLEN_ENTRY = {
    Kind.STRUCT: 12, Kind.UNION: 12, Kind.ENUM: 8, Kind.FUNC_PROTO: 8, Kind.DATASEC: 12,
    Kind.ENUM64: 12,
}
_FIXED_TRAILER = {Kind.INT: 4, Kind.ARRAY: 12, Kind.VAR: 4, Kind.DECL_TAG: 4}


@dataclass(frozen=True)
class BTFHeader:
    magic: int
    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int
    layout_off: int = 0
    layout_len: int = 0


class _Record:
    """One type record's common words, decoded, and where its trailer starts."""

    __slots__ = ("btf", "r", "id", "kind", "name", "kflag", "vlen", "size_or_type", "body", "where")

    def __init__(self, btf: BTF, r: Reader, tid: int, kind: Kind, name: str, kflag: bool,
                 vlen: int, size_or_type: int, body: int):
        self.btf, self.r, self.id, self.kind, self.name = btf, r, tid, kind, name
        self.kflag, self.vlen, self.size_or_type, self.body = kflag, vlen, size_or_type, body
        self.where = f"type id {tid}"

    def trailer(self, words_per_entry: int) -> tuple[int, ...]:
        return self.r.words(self.body, words_per_entry * self.vlen, self.where)

    def string(self, off: int, what: str, index: int) -> str:
        """The name at ``off``; ``what`` and ``index`` name it in the error (formatted only then,
        since a large BTF has hundreds of thousands of names)."""
        try:
            return self.btf.string(off)
        except BTFError:  # again, for the error that names the record
            return self.btf.string(off, f"{self.where} {what} {index} name")


def parse_btf(data: bytes) -> BTF:
    """Parse a ``.BTF`` section's bytes."""
    data = bytes(data)
    r, hdr_len = open_section(data, "BTF")
    flags = r.u8(3, "header flags")
    if hdr_len < BTF_HDR_LEN:
        raise BTFError(f"BTF: hdr_len {hdr_len} at byte offset 4 is shorter than {BTF_HDR_LEN}")
    r.need(0, hdr_len, "header")
    type_off, type_len, str_off, str_len = r.words(8, 4, "header")
    layout_off = layout_len = 0
    if hdr_len >= 32:
        layout_off, layout_len = r.words(24, 2, "header layout")
    header = BTFHeader(BTF_MAGIC, BTF_VERSION, flags, hdr_len, type_off, type_len, str_off,
                       str_len, layout_off, layout_len)

    t_begin, t_end = r.section(hdr_len, type_off, type_len, "type")
    s_begin, s_end = r.section(hdr_len, str_off, str_len, "string")
    strings = data[s_begin:s_end]
    if strings and strings[0] != 0:
        raise BTFError(f"BTF: string section at byte offset {s_begin} does not start with NUL")
    if strings and strings[-1] != 0:
        raise BTFError(f"BTF: string section at byte offset {s_begin} is not NUL-terminated")

    btf = BTF(header, strings, r.endian)
    btf.types = _read_types(btf, r, t_begin, t_end, _kind_layout(r, hdr_len, layout_off, layout_len))
    btf.validate()
    return btf


def _read_types(btf: BTF, r: Reader, off: int, t_end: int,
                layout: dict[int, tuple[int, int]]) -> list[BTFType]:
    """The type records in [off, t_end), void first: known kinds through their decoder, others
    kept raw when the layout table says how long they are."""
    types: list[BTFType] = [Void(0, Kind.UNKN, "", False)]
    while off < t_end:
        tid = len(types)
        if off + 12 > t_end:
            raise BTFError(f"BTF: type id {tid}: truncated record at byte offset {off}")
        name_off, info, size_or_type = r.words(off, 3, f"type id {tid}")
        vlen = info & 0xFFFFFF
        kind_num = (info >> 24) & 0x7F
        kflag = bool(info >> 31)
        name = btf.string(name_off, f"type id {tid} name")
        body = off + 12
        kind = _KINDS.get(kind_num)
        if kind is None or kind == Kind.UNKN:
            if kind_num not in layout or kind_num == 0:
                raise BTFError(f"BTF: type id {tid}: unknown kind {kind_num} at byte offset {off}")
            info_sz, elem_sz = layout[kind_num]
            end = body + info_sz + vlen * elem_sz
            if end > t_end:
                raise BTFError(f"BTF: type id {tid}: truncated record at byte offset {off}")
            types.append(UnknownType(tid, kind_num, name, kflag, info, size_or_type,
                                     r.data[body:end]))
        else:
            end = body + _FIXED_TRAILER.get(kind, 0) + vlen * _VLEN_ENTRY.get(kind, 0)
            if end > t_end:
                raise BTFError(f"BTF: type id {tid} ({kind.name}): truncated record at byte "
                               f"offset {off} (needs {end - off} bytes, {t_end - off} left)")
            record = _Record(btf, r, tid, kind, name, kflag, vlen, size_or_type, body)
            types.append(_DECODERS[kind](record))
        off = end
    return types


def _kind_layout(r: Reader, hdr_len: int, off: int, length: int) -> dict[int, tuple[int, int]]:
    """kind -> (fixed trailer bytes, bytes per vlen entry), from the header's layout table."""
    if not length:
        return {}
    begin, end = r.section(hdr_len, off, length, "layout")
    return {i: (r.u8(begin + 4 * i, "layout"), r.u8(begin + 4 * i + 1, "layout"))
            for i in range((end - begin) // 4)}


# --- one decoder per kind ---------------------------------------------------------------------------

def _int(rec: _Record) -> Int:
    word = rec.r.u32(rec.body, rec.where)
    size = rec.size_or_type
    t = Int(rec.id, rec.kind, rec.name, rec.kflag, size, (word >> 24) & 0x0F, (word >> 16) & 0xFF,
            word & 0xFF)
    if size not in (1, 2, 4, 8, 16) or t.bits > 128 or t.bit_offset + t.bits > 8 * size:
        raise BTFError(f"BTF: {rec.where}: invalid INT (size {size}, bit offset {t.bit_offset}, "
                       f"{t.bits} bits)")
    return t


def _array(rec: _Record) -> Array:
    elem, index_type, nelems = rec.r.words(rec.body, 3, rec.where)
    return Array(rec.id, rec.kind, rec.name, rec.kflag, elem, index_type, nelems)


def _struct(rec: _Record) -> Struct:
    words = rec.trailer(3)
    members = []
    for i in range(rec.vlen):
        name_off, type_id, offset = words[3 * i: 3 * i + 3]
        name = rec.string(name_off, "member", i)
        if rec.kflag:  # bitfield size in the top byte
            members.append(Member(name, type_id, offset & 0xFFFFFF, offset >> 24))
        else:
            members.append(Member(name, type_id, offset, 0))
    return Struct(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type, tuple(members))


def _enum(rec: _Record) -> Enum:
    """ENUM (name, 32-bit value) and ENUM64 (name, low word, high word) entries."""
    if rec.size_or_type not in (1, 2, 4, 8):
        raise BTFError(f"BTF: {rec.where}: invalid {rec.kind.name} size {rec.size_or_type}")
    per_entry = 3 if rec.kind == Kind.ENUM64 else 2
    bits = 32 * (per_entry - 1)
    words = rec.trailer(per_entry)
    values = []
    for i in range(rec.vlen):
        entry = words[per_entry * i: per_entry * i + per_entry]
        value = entry[1] | (entry[2] << 32 if per_entry == 3 else 0)
        if rec.kflag and value >= 1 << (bits - 1):
            value -= 1 << bits
        values.append(EnumValue(rec.string(entry[0], "enumerator", i), value))
    return Enum(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type, tuple(values))


def _func_proto(rec: _Record) -> FuncProto:
    words = rec.trailer(2)
    params = tuple(Param(rec.string(words[2 * i], "param", i), words[2 * i + 1])
                   for i in range(rec.vlen))
    return FuncProto(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type, params)


def _datasec(rec: _Record) -> Datasec:
    words = rec.trailer(3)
    return Datasec(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type,
                   tuple(VarSecInfo(*words[3 * i: 3 * i + 3]) for i in range(rec.vlen)))


def _float(rec: _Record) -> Float:
    if rec.size_or_type not in (2, 4, 8, 12, 16):
        raise BTFError(f"BTF: {rec.where}: invalid FLOAT size {rec.size_or_type}")
    return Float(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type)


_DECODERS: dict[int, Callable[[_Record], BTFType]] = {
    Kind.INT: _int,
    Kind.PTR: lambda rec: Ptr(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type),
    Kind.ARRAY: _array,
    Kind.STRUCT: _struct,
    Kind.UNION: _struct,
    Kind.ENUM: _enum,
    Kind.ENUM64: _enum,
    Kind.FWD: lambda rec: Fwd(rec.id, rec.kind, rec.name, rec.kflag),
    **{kind: lambda rec: Modifier(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type)
       for kind in MODIFIER_KINDS},
    Kind.FUNC: lambda rec: Func(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type, rec.vlen),
    Kind.FUNC_PROTO: _func_proto,
    Kind.VAR: lambda rec: Var(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type,
                              rec.r.u32(rec.body, rec.where)),
    Kind.DATASEC: _datasec,
    Kind.FLOAT: _float,
    Kind.DECL_TAG: lambda rec: DeclTag(rec.id, rec.kind, rec.name, rec.kflag, rec.size_or_type,
                                       rec.r.s32(rec.body, rec.where)),
}

"""BTF and BTF.ext: parsing, type queries, value formatting/encoding, BTF-defined maps.

Formats (uapi ``linux/btf.h``, libbpf ``libbpf_internal.h``; docs/SPEC.md section 4):

* ``.BTF``: a header (magic 0xEB9F, version 1, ``hdr_len``, type and string sections, optional
  kind-layout table when ``hdr_len >= 32``), then ``struct btf_type`` records with kind-specific
  trailers. Type ids are 1-based in record order; id 0 is ``void``.
* ``.BTF.ext``: func_info, line_info and (``hdr_len >= 32``) CO-RE relocation blocks, one group of
  records per ELF code section, section names and strings taken from the ``.BTF`` string table.

Entry points: :func:`parse_btf`, :func:`parse_btf_ext`, :func:`map_definitions`. Types are frozen
dataclasses in ``BTF.types`` (index = type id). Every problem with the input is a
:class:`~bpfjit.errors.BTFError` whose message names the type id or the byte offset; no other
exception escapes for malformed data.

What the ELF loader must do with the output (clang leaves it to libbpf): clang emits ``DATASEC``
records whose ``size`` and variable offsets may be zero; call :meth:`BTF.fix_datasec` for every
data section (and ``.maps``) with the ELF section size and the symbols' ``st_value`` before using
:meth:`BTF.datasecs` or :func:`map_definitions` -- the same fix-up libbpf's ``btf_fixup_datasec``
does, including turning ``STV_HIDDEN``/``STV_INTERNAL`` variables into static ones.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Iterable, Mapping, NamedTuple, Optional

from bpfjit.errors import BTFError

from .map_types import MapType

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_HDR_LEN = 24  # classic header
BTF_EXT_HDR_LEN = 24  # magic .. line_info_len
BTF_EXT_CORE_HDR_LEN = 32  # + core_relo_off, core_relo_len

# Nesting (arrays of structs of arrays ...) deeper than this is treated as a reference cycle.
MAX_NESTING = 64
# A map value with more special fields than this is rejected (the kernel's limit is far lower).
MAX_SPECIAL_FIELDS = 4096


class Kind(IntEnum):
    """``BTF_KIND_*``."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# INT encoding bits
INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

# VAR linkage
VAR_STATIC = 0
VAR_GLOBAL_ALLOCATED = 1
VAR_GLOBAL_EXTERN = 2

# FUNC linkage
FUNC_STATIC = 0
FUNC_GLOBAL = 1
FUNC_EXTERN = 2

# Kinds resolve() skips.
MODIFIER_KINDS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})

# Kinds whose record is followed by vlen entries of this many bytes / a fixed trailer of this size.
_VLEN_ENTRY = {
    Kind.STRUCT: 12, Kind.UNION: 12, Kind.ENUM: 8, Kind.FUNC_PROTO: 8, Kind.DATASEC: 12,
    Kind.ENUM64: 12,
}
_FIXED_TRAILER = {Kind.INT: 4, Kind.ARRAY: 12, Kind.VAR: 4, Kind.DECL_TAG: 4}

# kptr type tags (SPEC section 5) and the other kernel structs the verifier treats specially.
KPTR_TAGS = ("kptr", "kptr_untrusted", "percpu_kptr", "uptr")
_ONE_PER_VALUE = {"bpf_spin_lock": "spin_lock", "bpf_timer": "timer"}
_OTHER_SPECIAL = ("bpf_res_spin_lock", "bpf_wq", "bpf_list_head", "bpf_list_node", "bpf_rb_root",
                  "bpf_rb_node", "bpf_refcount", "bpf_task_work")


# ------------------------------------------------------------------------------------------------
# Types


@dataclass(frozen=True)
class BTFType:
    """Fields every type has. ``kind`` is a :class:`Kind` (an int for unknown kinds)."""

    id: int
    kind: int
    name: str
    kind_flag: bool


@dataclass(frozen=True)
class Void(BTFType):
    pass


@dataclass(frozen=True)
class Int(BTFType):
    size: int
    encoding: int
    bit_offset: int
    bits: int

    @property
    def signed(self) -> bool:
        return bool(self.encoding & INT_SIGNED)

    @property
    def is_char(self) -> bool:
        return bool(self.encoding & INT_CHAR)

    @property
    def is_bool(self) -> bool:
        return bool(self.encoding & INT_BOOL)


@dataclass(frozen=True)
class Ptr(BTFType):
    type: int


@dataclass(frozen=True)
class Array(BTFType):
    type: int
    index_type: int
    nelems: int


@dataclass(frozen=True)
class Member:
    """A struct/union member. ``bit_offset`` from the start of the struct; ``bitfield_size`` is 0
    for an ordinary member."""

    name: str
    type: int
    bit_offset: int
    bitfield_size: int

    @property
    def byte_offset(self) -> int:
        return self.bit_offset // 8


@dataclass(frozen=True)
class Struct(BTFType):
    """STRUCT or UNION (``kind`` tells which)."""

    size: int
    members: tuple[Member, ...]

    @property
    def is_union(self) -> bool:
        return self.kind == Kind.UNION

    def member(self, name: str) -> Optional[Member]:
        for m in self.members:
            if m.name == name:
                return m
        return None


@dataclass(frozen=True)
class EnumValue:
    name: str
    value: int


@dataclass(frozen=True)
class Enum(BTFType):
    """ENUM or ENUM64; values already sign-interpreted according to ``signed`` (the kind flag)."""

    size: int
    values: tuple[EnumValue, ...]

    @property
    def signed(self) -> bool:
        return self.kind_flag


@dataclass(frozen=True)
class Fwd(BTFType):
    @property
    def is_union(self) -> bool:
        return self.kind_flag


@dataclass(frozen=True)
class Modifier(BTFType):
    """TYPEDEF, VOLATILE, CONST, RESTRICT or TYPE_TAG: a name (typedefs, tags) and a target."""

    type: int


@dataclass(frozen=True)
class Func(BTFType):
    type: int  # the FUNC_PROTO
    linkage: int


@dataclass(frozen=True)
class Param:
    name: str
    type: int


@dataclass(frozen=True)
class FuncProto(BTFType):
    return_type: int
    params: tuple[Param, ...]

    @property
    def variadic(self) -> bool:
        return bool(self.params) and self.params[-1].type == 0 and self.params[-1].name == ""


@dataclass(frozen=True)
class Var(BTFType):
    type: int
    linkage: int


@dataclass(frozen=True)
class VarSecInfo:
    type: int  # a VAR (or FUNC for extern functions in .ksyms)
    offset: int
    size: int


@dataclass(frozen=True)
class Datasec(BTFType):
    size: int
    vars: tuple[VarSecInfo, ...]


@dataclass(frozen=True)
class Float(BTFType):
    size: int


@dataclass(frozen=True)
class DeclTag(BTFType):
    type: int
    component_idx: int


@dataclass(frozen=True)
class UnknownType(BTFType):
    """A kind this parser does not know, skipped with the help of the header's layout table."""

    info: int
    size_or_type: int
    raw: bytes


class DatasecVar(NamedTuple):
    name: str
    type_id: int  # the VAR's id
    offset: int
    size: int
    linkage: int


@dataclass(frozen=True)
class KptrField:
    offset: int
    tag: str  # "kptr", "kptr_untrusted", "percpu_kptr" or "uptr"
    type_id: int  # the pointee after skipping modifiers


@dataclass(frozen=True)
class SpecialFields:
    """Byte offsets of the fields of a map value the kernel treats specially (SPEC 3.5, 5, 6)."""

    spin_lock: Optional[int] = None
    timer: Optional[int] = None
    kptrs: tuple[KptrField, ...] = ()
    others: tuple[tuple[int, str], ...] = ()  # (offset, struct name): wq, list/rb roots, ...

    @property
    def empty(self) -> bool:
        return self.spin_lock is None and self.timer is None and not self.kptrs and not self.others


# ------------------------------------------------------------------------------------------------
# Reading


class _Reader:
    """Bounds-checked little/big-endian reads from a byte buffer; errors name the offset."""

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

    def u16(self, off: int, reason: str) -> int:
        self.need(off, 2, reason)
        return struct.unpack_from(self.endian + "H", self.data, off)[0]

    def u8(self, off: int, reason: str) -> int:
        self.need(off, 1, reason)
        return self.data[off]

    def words(self, off: int, count: int, reason: str) -> tuple[int, ...]:
        self.need(off, 4 * count, reason)
        return struct.unpack_from(f"{self.endian}{count}I", self.data, off)


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


def _endianness(data: bytes, what: str) -> str:
    if len(data) < 2:
        raise BTFError(f"{what}: truncated header at byte offset 0 ({len(data)} bytes)")
    if struct.unpack_from("<H", data, 0)[0] == BTF_MAGIC:
        return "<"
    if struct.unpack_from(">H", data, 0)[0] == BTF_MAGIC:
        return ">"
    magic = struct.unpack_from("<H", data, 0)[0]
    raise BTFError(f"{what}: bad magic {magic:#06x} at byte offset 0 (expected {BTF_MAGIC:#06x})")


def _section(r: _Reader, start: int, off: int, length: int, name: str) -> tuple[int, int]:
    """Absolute [begin, end) of a header-relative section, checked against the data."""
    begin = start + off
    if begin > len(r.data) or begin + length > len(r.data):
        raise BTFError(f"{r.what}: {name} section at byte offset {begin} (+{length}) runs past the "
                       f"end ({len(r.data)} bytes)")
    return begin, begin + length


def parse_btf(data: bytes) -> "BTF":
    """Parse a ``.BTF`` section's bytes."""
    data = bytes(data)
    endian = _endianness(data, "BTF")
    r = _Reader(data, endian, "BTF")
    version = r.u8(2, "header version")
    flags = r.u8(3, "header flags")
    hdr_len = r.u32(4, "header hdr_len")
    if version != BTF_VERSION:
        raise BTFError(f"BTF: unsupported version {version} at byte offset 2")
    if hdr_len < BTF_HDR_LEN:
        raise BTFError(f"BTF: hdr_len {hdr_len} at byte offset 4 is shorter than {BTF_HDR_LEN}")
    r.need(0, hdr_len, "header")
    type_off, type_len, str_off, str_len = r.words(8, 4, "header")
    layout_off = layout_len = 0
    if hdr_len >= 32:
        layout_off, layout_len = r.words(24, 2, "header layout")
    header = BTFHeader(BTF_MAGIC, version, flags, hdr_len, type_off, type_len, str_off, str_len,
                       layout_off, layout_len)

    t_begin, t_end = _section(r, hdr_len, type_off, type_len, "type")
    s_begin, s_end = _section(r, hdr_len, str_off, str_len, "string")
    strings = data[s_begin:s_end]
    if strings and strings[0] != 0:
        raise BTFError(f"BTF: string section at byte offset {s_begin} does not start with NUL")
    if strings and strings[-1] != 0:
        raise BTFError(f"BTF: string section at byte offset {s_begin} is not NUL-terminated")

    layout: dict[int, tuple[int, int]] = {}
    if layout_len:
        l_begin, l_end = _section(r, hdr_len, layout_off, layout_len, "layout")
        for i in range((l_end - l_begin) // 4):
            info_sz, elem_sz = r.u8(l_begin + 4 * i, "layout"), r.u8(l_begin + 4 * i + 1, "layout")
            layout[i] = (info_sz, elem_sz)

    btf = BTF(header, strings, endian)
    types: list[BTFType] = [Void(0, Kind.UNKN, "", False)]
    tr = _Reader(data, endian, "BTF")
    off = t_begin
    while off < t_end:
        tid = len(types)
        if off + 12 > t_end:
            raise BTFError(f"BTF: type id {tid}: truncated record at byte offset {off}")
        name_off, info, size_or_type = tr.words(off, 3, f"type id {tid}")
        vlen = info & 0xFFFFFF
        kind_num = (info >> 24) & 0x7F
        kflag = bool(info >> 31)
        name = btf._string(name_off, f"type id {tid} name")
        body = off + 12
        try:
            kind = Kind(kind_num)
        except ValueError:
            kind = None
        if kind is None or kind == Kind.UNKN:
            if kind_num not in layout or kind_num == 0:
                raise BTFError(f"BTF: type id {tid}: unknown kind {kind_num} at byte offset {off}")
            info_sz, elem_sz = layout[kind_num]
            end = body + info_sz + vlen * elem_sz
            if end > t_end:
                raise BTFError(f"BTF: type id {tid}: truncated record at byte offset {off}")
            types.append(UnknownType(tid, kind_num, name, kflag, info, size_or_type,
                                     data[body:end]))
            off = end
            continue
        end = body + _FIXED_TRAILER.get(kind, 0) + vlen * _VLEN_ENTRY.get(kind, 0)
        if end > t_end:
            raise BTFError(f"BTF: type id {tid} ({kind.name}): truncated record at byte offset "
                           f"{off} (needs {end - off} bytes, {t_end - off} left)")
        types.append(_parse_type(btf, tr, tid, kind, name, kflag, vlen, size_or_type, body))
        off = end
    btf.types = types
    btf._validate()
    return btf


def _parse_type(btf: "BTF", r: _Reader, tid: int, kind: Kind, name: str, kflag: bool, vlen: int,
                st: int, body: int) -> BTFType:
    where = f"type id {tid}"
    if kind == Kind.INT:
        word = r.u32(body, where)
        t = Int(tid, kind, name, kflag, st, (word >> 24) & 0x0F, (word >> 16) & 0xFF, word & 0xFF)
        if st not in (1, 2, 4, 8, 16) or t.bits > 128 or t.bit_offset + t.bits > 8 * st:
            raise BTFError(f"BTF: {where}: invalid INT (size {st}, bit offset {t.bit_offset}, "
                           f"{t.bits} bits)")
        return t
    if kind == Kind.PTR:
        return Ptr(tid, kind, name, kflag, st)
    if kind == Kind.ARRAY:
        t, index_type, nelems = r.words(body, 3, where)
        return Array(tid, kind, name, kflag, t, index_type, nelems)
    if kind in (Kind.STRUCT, Kind.UNION):
        words = r.words(body, 3 * vlen, where)
        members = []
        for i in range(vlen):
            m_name_off, m_type, m_off = words[3 * i: 3 * i + 3]
            m_name = btf._string(m_name_off, f"{where} member {i} name")
            if kflag:
                members.append(Member(m_name, m_type, m_off & 0xFFFFFF, m_off >> 24))
            else:
                members.append(Member(m_name, m_type, m_off, 0))
        return Struct(tid, kind, name, kflag, st, tuple(members))
    if kind in (Kind.ENUM, Kind.ENUM64) and st not in (1, 2, 4, 8):
        raise BTFError(f"BTF: {where}: invalid {kind.name} size {st}")
    if kind == Kind.ENUM:
        words = r.words(body, 2 * vlen, where)
        values = []
        for i in range(vlen):
            v = words[2 * i + 1]
            if kflag and v >= 1 << 31:
                v -= 1 << 32
            values.append(EnumValue(btf._string(words[2 * i], f"{where} enumerator {i} name"), v))
        return Enum(tid, kind, name, kflag, st, tuple(values))
    if kind == Kind.ENUM64:
        words = r.words(body, 3 * vlen, where)
        values = []
        for i in range(vlen):
            v = words[3 * i + 1] | (words[3 * i + 2] << 32)
            if kflag and v >= 1 << 63:
                v -= 1 << 64
            values.append(EnumValue(btf._string(words[3 * i], f"{where} enumerator {i} name"), v))
        return Enum(tid, kind, name, kflag, st, tuple(values))
    if kind == Kind.FWD:
        return Fwd(tid, kind, name, kflag)
    if kind in MODIFIER_KINDS:
        return Modifier(tid, kind, name, kflag, st)
    if kind == Kind.FUNC:
        return Func(tid, kind, name, kflag, st, vlen)
    if kind == Kind.FUNC_PROTO:
        words = r.words(body, 2 * vlen, where)
        params = tuple(Param(btf._string(words[2 * i], f"{where} param {i} name"), words[2 * i + 1])
                       for i in range(vlen))
        return FuncProto(tid, kind, name, kflag, st, params)
    if kind == Kind.VAR:
        return Var(tid, kind, name, kflag, st, r.u32(body, where))
    if kind == Kind.DATASEC:
        words = r.words(body, 3 * vlen, where)
        return Datasec(tid, kind, name, kflag, st,
                       tuple(VarSecInfo(*words[3 * i: 3 * i + 3]) for i in range(vlen)))
    if kind == Kind.FLOAT:
        if st not in (2, 4, 8, 12, 16):
            raise BTFError(f"BTF: {where}: invalid FLOAT size {st}")
        return Float(tid, kind, name, kflag, st)
    if kind == Kind.DECL_TAG:
        return DeclTag(tid, kind, name, kflag, st, r.s32(body, where))
    raise BTFError(f"BTF: type id {tid}: unknown kind {int(kind)}")  # pragma: no cover


def _referenced_ids(t: BTFType) -> list[tuple[str, int]]:
    if isinstance(t, (Ptr, Modifier, Var, Func, DeclTag)):
        return [("type", t.type)]
    if isinstance(t, Array):
        return [("element type", t.type), ("index type", t.index_type)]
    if isinstance(t, Struct):
        return [(f"member {m.name or '<anon>'}", m.type) for m in t.members]
    if isinstance(t, FuncProto):
        return [("return type", t.return_type)] + [(f"param {p.name or i}", p.type)
                                                   for i, p in enumerate(t.params)]
    if isinstance(t, Datasec):
        return [(f"var {i}", v.type) for i, v in enumerate(t.vars)]
    return []


# ------------------------------------------------------------------------------------------------
# The BTF object


class BTF:
    """A parsed ``.BTF`` section. ``types[i]`` is the type with id ``i``; ``types[0]`` is void."""

    def __init__(self, header: BTFHeader, strings: bytes, endian: str = "<"):
        self.header = header
        self.strings = strings
        self.endian = endian
        self.types: list[BTFType] = []
        self._by_name: Optional[dict[str, list[int]]] = None

    # -- strings ---------------------------------------------------------------------------------

    def _string(self, off: int, what: str) -> str:
        if off == 0:
            return ""
        if off >= len(self.strings):
            raise BTFError(f"BTF: {what}: string offset {off} past the string table "
                           f"({len(self.strings)} bytes)")
        end = self.strings.find(b"\0", off)
        if end < 0:  # only possible if the table is not NUL-terminated (checked at parse time)
            raise BTFError(f"BTF: {what}: string at offset {off} is not NUL-terminated")
        return self.strings[off:end].decode("utf-8", "replace")

    def string(self, off: int) -> str:
        """The string at ``off`` in the string table."""
        return self._string(off, "string")

    # -- validation ------------------------------------------------------------------------------

    def _validate(self) -> None:
        n = len(self.types)
        for t in self.types:
            for what, ref in _referenced_ids(t):
                if ref >= n:
                    raise BTFError(f"BTF: type id {t.id}: {what} refers to type id {ref}, past the "
                                   f"last type ({n - 1})")
            if isinstance(t, Func) and not isinstance(self.types[t.type], FuncProto):
                raise BTFError(f"BTF: type id {t.id}: FUNC '{t.name}' type {t.type} is not a "
                               f"FUNC_PROTO")
        # No cycles through modifiers (typedef a -> const -> typedef a ...).
        done: set[int] = set()
        for t in self.types:
            if t.kind in MODIFIER_KINDS and t.id not in done:
                chain = self._modifier_chain(t.id)
                done.update(chain)

    def _modifier_chain(self, type_id: int) -> list[int]:
        seen: list[int] = []
        seen_set: set[int] = set()
        cur = type_id
        while True:
            t = self.type(cur)
            if t.kind not in MODIFIER_KINDS:
                return seen
            if cur in seen_set:
                raise BTFError(f"BTF: type id {type_id}: cycle in typedef/modifier chain "
                               f"(through type id {cur})")
            seen.append(cur)
            seen_set.add(cur)
            cur = t.type

    # -- lookups ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.types)

    def type(self, type_id: int) -> BTFType:
        if not isinstance(type_id, int) or type_id < 0 or type_id >= len(self.types):
            raise BTFError(f"BTF: type id {type_id} out of range (0..{len(self.types) - 1})")
        return self.types[type_id]

    def name(self, type_id: int) -> str:
        return self.type(type_id).name

    def kind(self, type_id: int) -> int:
        return self.type(type_id).kind

    def resolve(self, type_id: int) -> int:
        """The id after skipping TYPEDEF, VOLATILE, CONST, RESTRICT and TYPE_TAG."""
        seen: set[int] = set()
        cur = type_id
        t = self.type(cur)
        while t.kind in MODIFIER_KINDS:
            if cur in seen:
                raise BTFError(f"BTF: type id {type_id}: cycle in typedef/modifier chain")
            seen.add(cur)
            cur = t.type
            t = self.type(cur)
        return cur

    def resolved(self, type_id: int) -> BTFType:
        return self.type(self.resolve(type_id))

    def find(self, name: str, kind: Optional[int] = None) -> Optional[int]:
        """The id of the first type called ``name`` (of ``kind``, if given), or None."""
        if self._by_name is None:
            index: dict[str, list[int]] = {}
            for t in self.types:
                if t.name:
                    index.setdefault(t.name, []).append(t.id)
            self._by_name = index
        for tid in self._by_name.get(name, ()):
            if kind is None or self.types[tid].kind == kind:
                return tid
        return None

    def find_all(self, name: str, kind: Optional[int] = None) -> list[int]:
        self.find(name)
        return [tid for tid in (self._by_name or {}).get(name, ())
                if kind is None or self.types[tid].kind == kind]

    def size(self, type_id: int) -> int:
        """Byte size of a type (modifiers skipped; arrays elem size * n; pointers 8)."""
        return self._size(type_id, 0)

    def _size(self, type_id: int, depth: int) -> int:
        if depth > MAX_NESTING:
            raise BTFError(f"BTF: type id {type_id}: types nested too deeply (a cycle?)")
        tid = self.resolve(type_id)
        t = self.types[tid]
        if isinstance(t, (Int, Struct, Enum, Float, Datasec)):
            return t.size
        if isinstance(t, Ptr):
            return 8
        if isinstance(t, Array):
            total = self._size(t.type, depth + 1) * t.nelems
            if total > 0xFFFFFFFF:
                raise BTFError(f"BTF: type id {tid}: array size {total} overflows u32")
            return total
        if isinstance(t, Var):
            return self._size(t.type, depth + 1)
        raise BTFError(f"BTF: type id {type_id}: {_kind_name(t.kind)} has no size")

    def alignment(self, type_id: int) -> int:
        """Natural alignment, as libbpf's ``btf__align_of`` (packed structs give 1)."""
        return self._align(type_id, 0)

    def _align(self, type_id: int, depth: int) -> int:
        if depth > MAX_NESTING:
            raise BTFError(f"BTF: type id {type_id}: types nested too deeply (a cycle?)")
        t = self.resolved(type_id)
        if isinstance(t, (Int, Enum, Float)):
            return max(1, min(t.size, 8))
        if isinstance(t, Ptr):
            return 8
        if isinstance(t, Array):
            return self._align(t.type, depth + 1)
        if isinstance(t, Struct):
            align = 1
            for m in t.members:
                a = self._align(m.type, depth + 1)
                if m.bitfield_size == 0 and m.bit_offset % (8 * a):
                    return 1  # packed
                align = max(align, a)
            if t.size % align:
                return 1
            return align
        raise BTFError(f"BTF: type id {type_id}: {_kind_name(t.kind)} has no alignment")

    # -- data sections ---------------------------------------------------------------------------

    def datasecs(self) -> dict[str, list[DatasecVar]]:
        """Every DATASEC: section name -> its variables (name, VAR id, offset, size, linkage)."""
        out: dict[str, list[DatasecVar]] = {}
        for t in self.types:
            if isinstance(t, Datasec):
                out[t.name] = [self._datasec_var(t, v) for v in t.vars]
        return out

    def _datasec_var(self, sec: Datasec, v: VarSecInfo) -> DatasecVar:
        var = self.types[v.type]
        linkage = var.linkage if isinstance(var, (Var, Func)) else 0
        return DatasecVar(var.name, v.type, v.offset, v.size, linkage)

    def datasec(self, name: str) -> Optional[Datasec]:
        tid = self.find(name, Kind.DATASEC)
        return None if tid is None else self.types[tid]  # type: ignore[return-value]

    def fix_datasec(self, name: str, size: int, offsets: Mapping[str, int],
                    static_names: Iterable[str] = ()) -> Datasec:
        """libbpf's ``btf_fixup_datasec``: set the DATASEC's size to the ELF section size, each
        variable's offset to its symbol's ``st_value``, sort the variables by offset, and make the
        VARs named in ``static_names`` (symbols with STV_HIDDEN/STV_INTERNAL visibility) static.

        Every variable must have an offset in ``offsets`` and fit in the section. Returns the new
        DATASEC (also stored in ``types``).
        """
        tid = self.find(name, Kind.DATASEC)
        if tid is None:
            raise BTFError(f"BTF: no DATASEC '{name}'")
        sec: Datasec = self.types[tid]  # type: ignore[assignment]
        statics = set(static_names)
        new_vars = []
        for v in sec.vars:
            var = self.types[v.type]
            if var.name not in offsets:
                raise BTFError(f"BTF: type id {tid}: DATASEC '{name}' variable '{var.name}' "
                               f"(type id {v.type}) has no ELF symbol offset")
            off = offsets[var.name]
            vsize = v.size  # clang's sizes are right (and include initialised flexible arrays)
            if vsize == 0 and isinstance(var, Var):
                try:
                    vsize = self.size(var.type)
                except BTFError:
                    pass
            if off < 0 or off + vsize > size:
                raise BTFError(f"BTF: type id {tid}: DATASEC '{name}' variable '{var.name}' at "
                               f"offset {off} (+{vsize}) does not fit in the section "
                               f"({size} bytes)")
            if isinstance(var, Var) and var.name in statics and var.linkage != VAR_STATIC:
                self.types[v.type] = replace(var, linkage=VAR_STATIC)
            new_vars.append(VarSecInfo(v.type, off, vsize))
        new_vars.sort(key=lambda v: v.offset)
        fixed = replace(sec, size=size, vars=tuple(new_vars))
        self.types[tid] = fixed
        return fixed

    # -- descriptions ----------------------------------------------------------------------------

    def describe(self, type_id: int) -> str:
        """A C-like name for the type: ``struct pkt_stats``, ``__u32[4]``, ``char *``."""
        return self._describe(type_id, 0)

    def _describe(self, type_id: int, depth: int) -> str:
        if depth > MAX_NESTING:
            raise BTFError(f"BTF: type id {type_id}: types nested too deeply (a cycle?)")
        t = self.type(type_id)
        d = depth + 1
        k = t.kind
        if k == Kind.UNKN and isinstance(t, Void):
            return "void"
        if isinstance(t, (Int, Float)):
            return t.name
        if isinstance(t, Struct):
            return f"{'union' if t.is_union else 'struct'} {t.name or '{...}'}"
        if isinstance(t, Enum):
            return f"enum {t.name or '{...}'}"
        if isinstance(t, Fwd):
            return f"{'union' if t.is_union else 'struct'} {t.name}"
        if isinstance(t, Ptr):
            target = self.type(t.type)
            if isinstance(target, FuncProto):
                return self._describe_proto(target, "(*)", d)
            if isinstance(target, Array):  # int (*)[2]
                inner = self._describe(target.id, d)
                cut = inner.index("[")
                return f"{inner[:cut]} (*){inner[cut:]}"
            inner = self._describe(t.type, d)
            return inner + ("*" if inner.endswith("*") else " *")
        if isinstance(t, Array):
            dims = []
            cur: BTFType = t
            while isinstance(cur, Array) and len(dims) <= MAX_NESTING:
                dims.append(cur.nelems)
                cur = self.type(cur.type)
            return self._describe(cur.id, d) + "".join(f"[{n}]" for n in dims)
        if isinstance(t, Modifier):
            if k == Kind.TYPEDEF:
                return t.name
            inner = self._describe(t.type, d)
            if k == Kind.CONST:
                return f"const {inner}"
            if k == Kind.VOLATILE:
                return f"volatile {inner}"
            if k == Kind.RESTRICT:
                return f"{inner} restrict"
            return f"{inner} __tag({t.name})"
        if isinstance(t, Func):
            proto = self.type(t.type)
            if isinstance(proto, FuncProto):
                return self._describe_proto(proto, t.name, d, named=True)
            return t.name
        if isinstance(t, FuncProto):
            return self._describe_proto(t, "", d)
        if isinstance(t, Var):
            return f"{self._describe(t.type, d)} {t.name}"
        if isinstance(t, Datasec):
            return f'SEC("{t.name}")'
        if isinstance(t, DeclTag):
            return f'__decl_tag("{t.name}")'
        return f"<kind {k}> {t.name}".strip()

    def _describe_proto(self, p: FuncProto, name: str, depth: int, named: bool = False) -> str:
        params = []
        for prm in p.params:
            if prm.type == 0 and not prm.name:
                params.append("...")
            else:
                ptype = self._describe(prm.type, depth)
                if named and prm.name:
                    ptype += prm.name if ptype.endswith("*") else f" {prm.name}"
                params.append(ptype)
        ret = self._describe(p.return_type, depth)
        sep = "" if not name else " "
        return f"{ret}{sep}{name}({', '.join(params) or 'void'})"

    # -- values ----------------------------------------------------------------------------------

    def format_value(self, type_id: int, data: bytes) -> Any:
        """Decode ``data`` (exactly ``size(type_id)`` bytes) as Python data: ints, bools (BOOL
        encoding), floats, lists (arrays, char arrays included), dicts (structs, unions, DATASECs;
        members of anonymous struct/union members appear directly in the parent dict)."""
        data = bytes(data)
        size = self.size(type_id)
        if len(data) != size:
            raise BTFError(f"BTF: type id {type_id}: value of {len(data)} bytes, expected {size}")
        return self._format(type_id, data, 0, 0)

    def _format(self, type_id: int, data: bytes, off: int, depth: int) -> Any:
        if depth > MAX_NESTING:
            raise BTFError(f"BTF: type id {type_id}: types nested too deeply (a cycle?)")
        tid = self.resolve(type_id)
        t = self.types[tid]
        if isinstance(t, Int):
            raw = self._uint(data, off, t.size)
            if t.bits and (t.bit_offset or t.bits < 8 * t.size):
                raw = (raw >> t.bit_offset) & ((1 << t.bits) - 1)
                bits = t.bits
            else:
                bits = 8 * t.size
            if t.is_bool:
                return bool(raw)
            return _sext(raw, bits) if t.signed else raw
        if isinstance(t, Enum):
            raw = self._uint(data, off, t.size)
            return _sext(raw, 8 * t.size) if t.signed else raw
        if isinstance(t, Ptr):
            return self._uint(data, off, 8)
        if isinstance(t, Float):
            return self._float(data, off, t)
        if isinstance(t, Array):
            esize = self._size(t.type, depth + 1)
            if esize == 0 and t.nelems > 1 << 20:
                raise BTFError(f"BTF: type id {tid}: {t.nelems} zero-sized elements")
            return [self._format(t.type, data, off + i * esize, depth + 1) for i in range(t.nelems)]
        if isinstance(t, Struct):
            out: dict[str, Any] = {}
            for m in t.members:
                value = self._format_member(t, m, data, off, depth)
                if m.name:
                    out[m.name] = value
                elif isinstance(value, dict):
                    out.update(value)
            return out
        if isinstance(t, Datasec):
            out = {}
            for v in t.vars:
                var = self.types[v.type]
                if not isinstance(var, Var):
                    continue
                vsize = self._size(var.type, depth + 1)
                if v.offset + vsize > t.size:
                    raise BTFError(f"BTF: type id {tid}: variable '{var.name}' at offset "
                                   f"{v.offset} (+{vsize}) past the section size {t.size}")
                out[var.name] = self._format(var.type, data, off + v.offset, depth + 1)
            return out
        if isinstance(t, Var):
            return self._format(t.type, data, off, depth + 1)
        raise BTFError(f"BTF: type id {type_id}: cannot format a {_kind_name(t.kind)} value")

    def _format_member(self, s: Struct, m: Member, data: bytes, base: int, depth: int) -> Any:
        bitsize, signed = self._bitfield(s, m)
        if bitsize:
            end_bit = m.bit_offset + bitsize
            if end_bit > 8 * s.size:
                raise BTFError(f"BTF: type id {s.id}: bitfield '{m.name}' bits "
                               f"{m.bit_offset}..{end_bit} past the struct size {s.size}")
            first = m.bit_offset // 8
            nbytes = (m.bit_offset % 8 + bitsize + 7) // 8
            raw = self._uint(data, base + first, nbytes, bitfield=True) >> (m.bit_offset % 8)
            raw &= (1 << bitsize) - 1
            t = self.resolved(m.type)
            if isinstance(t, Int) and t.is_bool:
                return bool(raw)
            return _sext(raw, bitsize) if signed else raw
        msize = self._size(m.type, depth + 1)
        if m.byte_offset + msize > s.size:
            raise BTFError(f"BTF: type id {s.id}: member '{m.name}' at byte {m.byte_offset} "
                           f"(+{msize}) past the struct size {s.size}")
        return self._format(m.type, data, base + m.byte_offset, depth + 1)

    def _bitfield(self, s: Struct, m: Member) -> tuple[int, bool]:
        """(bit size, signed) when the member is a bitfield, else (0, False)."""
        t = self.resolved(m.type)
        if m.bitfield_size:
            size = m.bitfield_size
        elif isinstance(t, Int) and (m.bit_offset % 8 or t.bits < 8 * t.size):
            size = t.bits  # old encoding: the INT carries the width
        elif m.bit_offset % 8:
            raise BTFError(f"BTF: type id {s.id}: member '{m.name}' at bit offset {m.bit_offset} "
                           f"is not byte-aligned and not a bitfield")
        else:
            return 0, False
        if not isinstance(t, (Int, Enum)):
            raise BTFError(f"BTF: type id {s.id}: bitfield '{m.name}' of non-integer type "
                           f"{m.type}")
        signed = t.signed
        return size, signed

    def _uint(self, data: bytes, off: int, size: int, bitfield: bool = False) -> int:
        if off + size > len(data):
            raise BTFError(f"BTF: value too short: {size} bytes at offset {off}, have {len(data)}")
        if bitfield and self.endian != "<":
            raise BTFError("BTF: big-endian bitfields are not supported")
        return int.from_bytes(data[off:off + size], "little" if self.endian == "<" else "big")

    def _float(self, data: bytes, off: int, t: Float) -> Any:
        fmt = {2: "e", 4: "f", 8: "d"}.get(t.size)
        if off + t.size > len(data):
            raise BTFError(f"BTF: value too short: {t.size} bytes at offset {off}")
        if fmt is None:
            return bytes(data[off:off + t.size])  # long double: raw bytes
        return struct.unpack_from(self.endian + fmt, data, off)[0]

    def encode_value(self, type_id: int, value: Any) -> bytes:
        """The inverse of :meth:`format_value`: ``size(type_id)`` bytes for ``value``.

        Accepts bytes of the exact size for any type, ints (ints, enums, pointers, bools),
        floats (FLOAT), dicts (structs/unions/DATASECs; missing members are 0, an unknown member
        is an error), lists/tuples (arrays; the length must match).
        """
        size = self.size(type_id)
        try:
            buf = bytearray(size)
        except MemoryError:
            raise BTFError(f"BTF: type id {type_id}: {size} bytes is too large to encode") from None
        self._encode(type_id, value, buf, 0, 0)
        return bytes(buf)

    def _encode(self, type_id: int, value: Any, buf: bytearray, off: int, depth: int) -> None:
        if depth > MAX_NESTING:
            raise BTFError(f"BTF: type id {type_id}: types nested too deeply (a cycle?)")
        if isinstance(value, (bytes, bytearray, memoryview)):
            size = self._size(type_id, depth)
            value = bytes(value)
            if len(value) != size:
                raise BTFError(f"BTF: type id {type_id} ({self.describe(type_id)}): {len(value)} "
                               f"bytes given, expected {size}")
            buf[off:off + size] = value
            return
        tid = self.resolve(type_id)
        t = self.types[tid]
        what = f"BTF: type id {type_id} ({self.describe(type_id)})"
        if isinstance(t, (Int, Enum, Ptr)):
            size = 8 if isinstance(t, Ptr) else t.size
            bits = 8 * size
            shift = 0
            if isinstance(t, Int) and t.bits and (t.bit_offset or t.bits < bits):
                bits, shift = t.bits, t.bit_offset
            raw = _int_bits(value, bits, what)
            self._put_uint(buf, off, size, raw << shift)
            return
        if isinstance(t, Float):
            fmt = {2: "e", 4: "f", 8: "d"}.get(t.size)
            if fmt is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BTFError(f"{what}: cannot encode {type(value).__name__} as a "
                               f"{t.size}-byte float")
            try:
                struct.pack_into(self.endian + fmt, buf, off, value)
            except (OverflowError, struct.error) as e:
                raise BTFError(f"{what}: {value!r} does not fit: {e}") from None
            return
        if isinstance(t, Array):
            if not isinstance(value, (list, tuple)):
                raise BTFError(f"{what}: expected a list of {t.nelems}, got {type(value).__name__}")
            if len(value) != t.nelems:
                raise BTFError(f"{what}: expected {t.nelems} elements, got {len(value)}")
            esize = self._size(t.type, depth + 1)
            for i, item in enumerate(value):
                self._encode(t.type, item, buf, off + i * esize, depth + 1)
            return
        if isinstance(t, Struct):
            if not isinstance(value, Mapping):
                raise BTFError(f"{what}: expected a dict, got {type(value).__name__}")
            paths = self._member_paths(t, depth)
            for key in value:
                if key not in paths:
                    raise BTFError(f"{what}: no member '{key}'")
            for key, item in value.items():
                owner, m, base = paths[key]
                self._encode_member(owner, m, item, buf, off + base, depth)
            return
        if isinstance(t, Datasec):
            if not isinstance(value, Mapping):
                raise BTFError(f"{what}: expected a dict, got {type(value).__name__}")
            by_name = {}
            for v in t.vars:
                var = self.types[v.type]
                if isinstance(var, Var):
                    by_name[var.name] = (var, v)
            for key, item in value.items():
                if key not in by_name:
                    raise BTFError(f"{what}: no variable '{key}'")
                var, v = by_name[key]
                vsize = self._size(var.type, depth + 1)
                if v.offset + vsize > len(buf) - off:
                    raise BTFError(f"{what}: variable '{key}' at offset {v.offset} past the end")
                self._encode(var.type, item, buf, off + v.offset, depth + 1)
            return
        if isinstance(t, Var):
            self._encode(t.type, value, buf, off, depth + 1)
            return
        raise BTFError(f"{what}: cannot encode a {_kind_name(t.kind)} value")

    def _member_paths(self, s: Struct, depth: int) -> dict[str, tuple[Struct, Member, int]]:
        """name -> (struct that owns the member, member, byte offset of that struct), looking
        through anonymous struct/union members as C does."""
        if depth > MAX_NESTING:
            raise BTFError(f"BTF: type id {s.id}: types nested too deeply (a cycle?)")
        out: dict[str, tuple[Struct, Member, int]] = {}
        for m in s.members:
            if m.name:
                out[m.name] = (s, m, 0)
                continue
            inner = self.resolved(m.type)
            if isinstance(inner, Struct) and not m.bitfield_size:
                for name, (owner, im, base) in self._member_paths(inner, depth + 1).items():
                    out.setdefault(name, (owner, im, base + m.byte_offset))
        return out

    def _encode_member(self, s: Struct, m: Member, value: Any, buf: bytearray, base: int,
                       depth: int) -> None:
        bitsize, _signed = self._bitfield(s, m)
        what = f"BTF: type id {s.id}: member '{m.name}'"
        if bitsize:
            end_bit = m.bit_offset + bitsize
            if end_bit > 8 * s.size:
                raise BTFError(f"{what}: bits {m.bit_offset}..{end_bit} past the struct size")
            raw = _int_bits(value, bitsize, what)
            first = base + m.bit_offset // 8
            shift = m.bit_offset % 8
            nbytes = (shift + bitsize + 7) // 8
            if first + nbytes > len(buf):
                raise BTFError(f"{what}: past the end of the value")
            if self.endian != "<":
                raise BTFError("BTF: big-endian bitfields are not supported")
            word = int.from_bytes(buf[first:first + nbytes], "little")
            mask = ((1 << bitsize) - 1) << shift
            word = (word & ~mask) | (raw << shift)
            buf[first:first + nbytes] = word.to_bytes(nbytes, "little")
            return
        msize = self._size(m.type, depth + 1)
        if m.byte_offset + msize > s.size:
            raise BTFError(f"{what}: at byte {m.byte_offset} (+{msize}) past the struct size")
        self._encode(m.type, value, buf, base + m.byte_offset, depth + 1)

    def _put_uint(self, buf: bytearray, off: int, size: int, raw: int) -> None:
        if off + size > len(buf):
            raise BTFError(f"BTF: value too short: {size} bytes at offset {off}")
        buf[off:off + size] = raw.to_bytes(size, "little" if self.endian == "<" else "big")

    # -- special fields --------------------------------------------------------------------------

    def find_special_fields(self, type_id: int) -> SpecialFields:
        """Offsets of ``struct bpf_spin_lock``, ``struct bpf_timer``, kptr-tagged pointers and the
        other kernel-special structs in a map value type (struct, union, array, DATASEC), nested
        structs and arrays included. A second spin lock or timer is an error, as in the kernel."""
        acc: dict[str, Any] = {"spin_lock": None, "timer": None, "kptrs": [], "others": []}
        self._special(type_id, 0, acc, 0, type_id)
        return SpecialFields(acc["spin_lock"], acc["timer"], tuple(acc["kptrs"]),
                             tuple(acc["others"]))

    def _special(self, type_id: int, off: int, acc: dict, depth: int, root: int) -> None:
        if depth > MAX_NESTING:
            raise BTFError(f"BTF: type id {type_id}: types nested too deeply (a cycle?)")
        if len(acc["kptrs"]) + len(acc["others"]) > MAX_SPECIAL_FIELDS:
            raise BTFError(f"BTF: type id {root}: more than {MAX_SPECIAL_FIELDS} special fields")
        tid = self.resolve(type_id)
        t = self.types[tid]
        if isinstance(t, Struct):
            slot = _ONE_PER_VALUE.get(t.name) if t.kind == Kind.STRUCT else None
            if slot is not None:
                if acc[slot] is not None:
                    raise BTFError(f"BTF: type id {root}: more than one 'struct {t.name}' (at "
                                   f"offsets {acc[slot]} and {off})")
                acc[slot] = off
                return
            if t.kind == Kind.STRUCT and t.name in _OTHER_SPECIAL:
                acc["others"].append((off, t.name))
                return
            for m in t.members:
                if m.bitfield_size:
                    continue
                self._special(m.type, off + m.byte_offset, acc, depth + 1, root)
            return
        if isinstance(t, Array):
            if t.nelems == 0:
                return
            sub: dict[str, Any] = {"spin_lock": None, "timer": None, "kptrs": [], "others": []}
            self._special(t.type, 0, sub, depth + 1, root)
            if sub["spin_lock"] is None and sub["timer"] is None and not sub["kptrs"] \
                    and not sub["others"]:
                return
            esize = self._size(t.type, depth + 1)
            if (len(sub["kptrs"]) + len(sub["others"])) * t.nelems > MAX_SPECIAL_FIELDS:
                raise BTFError(f"BTF: type id {root}: more than {MAX_SPECIAL_FIELDS} special "
                               f"fields (array type id {tid} of {t.nelems})")
            for i in range(t.nelems):
                base = off + i * esize
                for slot in ("spin_lock", "timer"):
                    if sub[slot] is not None:
                        if acc[slot] is not None:
                            name = "bpf_spin_lock" if slot == "spin_lock" else "bpf_timer"
                            raise BTFError(f"BTF: type id {root}: more than one 'struct {name}' "
                                           f"(at offsets {acc[slot]} and {base + sub[slot]})")
                        acc[slot] = base + sub[slot]
                acc["kptrs"].extend(replace(k, offset=base + k.offset) for k in sub["kptrs"])
                acc["others"].extend((base + o, n) for o, n in sub["others"])
            return
        if isinstance(t, Ptr):
            target = self.type(t.type)
            if isinstance(target, Modifier) and target.kind == Kind.TYPE_TAG \
                    and target.name in KPTR_TAGS:
                acc["kptrs"].append(KptrField(off, target.name, self.resolve(target.type)))
            return
        if isinstance(t, Datasec):
            for v in t.vars:
                var = self.types[v.type]
                if isinstance(var, Var):
                    self._special(var.type, off + v.offset, acc, depth + 1, root)
            return
        if isinstance(t, Var):
            self._special(t.type, off, acc, depth + 1, root)


def _kind_name(kind: int) -> str:
    try:
        return Kind(kind).name if kind else "void"
    except ValueError:
        return f"kind {kind}"


def _sext(raw: int, bits: int) -> int:
    if bits and raw >> (bits - 1) & 1:
        return raw - (1 << bits)
    return raw


def _int_bits(value: Any, bits: int, what: str) -> int:
    """``value`` as a ``bits``-wide two's-complement pattern; accepts the signed and the unsigned
    range."""
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        raise BTFError(f"{what}: expected an int, got {type(value).__name__}")
    if not -(1 << (bits - 1)) <= value < (1 << bits):
        raise BTFError(f"{what}: {value} does not fit in {bits} bits")
    return value & ((1 << bits) - 1)


# ------------------------------------------------------------------------------------------------
# BTF.ext


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
    data = bytes(data)
    endian = _endianness(data, "BTF.ext")
    r = _Reader(data, endian, "BTF.ext")
    version = r.u8(2, "header version")
    hdr_len = r.u32(4, "header hdr_len")
    if version != BTF_VERSION:
        raise BTFError(f"BTF.ext: unsupported version {version} at byte offset 2")
    if hdr_len < 8:
        raise BTFError(f"BTF.ext: hdr_len {hdr_len} at byte offset 4 is too short")
    r.need(0, hdr_len, "header")
    ext = BTFExt()

    def block(off_pos: int, name: str, min_rec: int, make) -> tuple[int, list[tuple[str, Any]]]:
        if hdr_len < off_pos + 8:
            return 0, []
        off, length = r.words(off_pos, 2, f"header {name}")
        if length == 0:
            return 0, []
        begin, end = _section(r, hdr_len, off, length, name)
        rec_size = r.u32(begin, f"{name} rec_size")
        if rec_size < min_rec or rec_size % 4:
            raise BTFError(f"BTF.ext: {name} rec_size {rec_size} at byte offset {begin} is invalid "
                           f"(minimum {min_rec}, multiple of 4)")
        out = []
        pos = begin + 4
        while pos < end:
            if pos + 8 > end:
                raise BTFError(f"BTF.ext: {name}: truncated section header at byte offset {pos}")
            sec_off, num = struct.unpack_from(endian + "II", data, pos)
            sec = btf._string(sec_off, f"BTF.ext {name} section name at byte offset {pos}")
            if num == 0:
                raise BTFError(f"BTF.ext: {name}: section '{sec}' at byte offset {pos} has no "
                               f"records")
            pos += 8
            if pos + num * rec_size > end:
                raise BTFError(f"BTF.ext: {name}: section '{sec}' at byte offset {pos - 8}: {num} "
                               f"records of {rec_size} bytes run past the end ({end})")
            # Each record's known fields (records may be longer: newer formats append fields).
            record = struct.Struct(f"{endian}{min_rec // 4}I{rec_size - min_rec}x")
            for i, rec in enumerate(record.iter_unpack(data[pos:pos + num * rec_size])):
                out.append((sec, make(rec, pos + i * rec_size, sec)))
            pos += num * rec_size
        return rec_size, out

    ntypes = len(btf.types)

    def func(rec, pos, sec):
        insn_off, type_id = rec
        if type_id >= ntypes:
            raise BTFError(f"BTF.ext: func_info at byte offset {pos}: type id {type_id} out of "
                           f"range (0..{ntypes - 1})")
        return FuncInfo(insn_off, type_id)

    seen: dict[int, str] = {}  # many records share a file name: each string is checked once

    def string(off: int, pos: int, what: str) -> str:
        if off not in seen:
            seen[off] = btf._string(off, f"BTF.ext line_info at byte offset {pos} {what}")
        return seen[off]

    def line(rec, pos, sec):
        insn_off, file_off, line_off, line_col = rec
        return LineInfo(insn_off, string(file_off, pos, "file name"), string(line_off, pos, "line text"),
                        line_col >> 10, line_col & 0x3FF)

    def core(rec, pos, sec):
        insn_off, type_id, access_off, kind = rec
        if type_id >= ntypes:
            raise BTFError(f"BTF.ext: core_relo at byte offset {pos}: type id {type_id} out of "
                           f"range (0..{ntypes - 1})")
        return CoreRelo(sec, insn_off, type_id,
                        btf._string(access_off, f"BTF.ext core_relo at byte offset {pos} access "
                                                f"string"), kind)

    ext.func_info_rec_size, recs = block(8, "func_info", 8, func)
    for sec, rec in recs:
        ext.func_info.setdefault(sec, []).append(rec)
    ext.line_info_rec_size, recs = block(16, "line_info", 16, line)
    for sec, rec in recs:
        ext.line_info.setdefault(sec, []).append(rec)
    if hdr_len >= BTF_EXT_CORE_HDR_LEN:
        ext.core_relo_rec_size, recs = block(24, "core_relo", 16, core)
        ext.core_relos = [rec for _sec, rec in recs]
    return ext


# ------------------------------------------------------------------------------------------------
# BTF-defined maps


@dataclass(frozen=True)
class MapDef:
    """One map of the ``.maps`` section, decoded like libbpf's ``parse_btf_map_def``."""

    name: str
    type: int  # a MapType when known
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    numa_node: int
    pinning: int
    map_extra: int
    key_type_id: int  # 0 when the key was given by size (or not at all)
    value_type_id: int
    inner: Optional["MapDef"]  # the inner map template of a map-in-map
    values_kind: Optional[str]  # "maps" / "progs" when __array(values, ...) is present
    offset: int  # of the variable in .maps (matches .rel.maps / ld_imm64 symbol st_value)
    size: int = 0  # bytes of .maps the variable covers (more than the struct when `values` is
    #                initialised: the slots of the flexible array follow the struct)
    var_type_id: int = 0  # the VAR
    def_type_id: int = 0  # the STRUCT describing the map
    present: frozenset = frozenset()  # the member names that were given


MAP_MEMBERS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "key", "value_size",
               "value", "values", "pinning", "map_extra")
PIN_NONE = 0
PIN_BY_NAME = 1


def map_definitions(btf: BTF, maps_section_size: Optional[int] = None) -> list[MapDef]:
    """One :class:`MapDef` per variable of the ``.maps`` DATASEC, in offset order.

    ``maps_section_size``: the ELF ``.maps`` section size; when given, every map must lie inside
    it. Call :meth:`BTF.fix_datasec` first when clang left the DATASEC offsets at zero.
    Returns [] when there is no ``.maps`` DATASEC.
    """
    sec = btf.datasec(".maps")
    if sec is None:
        return []
    out = []
    for v in sec.vars:
        var = btf.type(v.type)
        if not isinstance(var, Var):
            raise BTFError(f"BTF: type id {sec.id}: .maps entry type id {v.type} is a "
                           f"{_kind_name(var.kind)}, not a VAR")
        if var.linkage not in (VAR_STATIC, VAR_GLOBAL_ALLOCATED):
            raise BTFError(f"BTF: map '{var.name}' (type id {var.id}): unsupported linkage "
                           f"{var.linkage}")
        def_id = btf.resolve(var.type)
        d = _parse_map_def(btf, var.name, def_id, is_inner=False)
        size = max(v.size, btf.size(def_id))
        if maps_section_size is not None and v.offset + size > maps_section_size:
            raise BTFError(f"BTF: map '{var.name}' (type id {var.id}) at offset {v.offset} "
                           f"(+{size}) past the end of .maps ({maps_section_size} bytes)")
        out.append(replace(d, offset=v.offset, size=size, var_type_id=var.id))
    out.sort(key=lambda d: d.offset)
    for a, b in zip(out, out[1:]):
        if a.offset + a.size > b.offset:
            raise BTFError(f"BTF: maps '{a.name}' and '{b.name}' overlap in .maps (offsets "
                           f"{a.offset} and {b.offset}; DATASEC not fixed up from the ELF "
                           f"symbols?)")
    return out


def _parse_map_def(btf: BTF, map_name: str, def_id: int, is_inner: bool) -> MapDef:
    t = btf.type(def_id)
    where = f"map '{map_name}'"
    if not isinstance(t, Struct) or t.kind != Kind.STRUCT:
        raise BTFError(f"BTF: {where}: definition type id {def_id} is a {_kind_name(t.kind)}, "
                       f"not a struct")
    f: dict[str, Any] = dict(type=0, key_size=0, value_size=0, max_entries=0, map_flags=0,
                             numa_node=0, pinning=0, map_extra=0, key_type_id=0, value_type_id=0,
                             inner=None, values_kind=None)
    present = set()
    for idx, m in enumerate(t.members):
        mw = f"BTF: {where} (type id {def_id}) member '{m.name}'"
        if m.name in present:
            raise BTFError(f"{mw}: given twice")
        if m.name in ("type", "max_entries", "map_flags", "numa_node", "pinning"):
            f[m.name] = _map_uint(btf, m, mw)
            if m.name == "pinning":
                if is_inner:
                    raise BTFError(f"{mw}: inner maps cannot be pinned")
                if f["pinning"] not in (PIN_NONE, PIN_BY_NAME):
                    raise BTFError(f"{mw}: invalid pinning value {f['pinning']}")
        elif m.name == "map_extra":
            f["map_extra"] = _map_ulong(btf, m, mw)
        elif m.name in ("key_size", "value_size"):
            sz = _map_uint(btf, m, mw)
            what = m.name[:-5]
            if f[m.name] and f[m.name] != sz:
                raise BTFError(f"{mw}: conflicting {what} size {f[m.name]} != {sz}")
            f[m.name] = sz
        elif m.name in ("key", "value"):
            ptr = btf.resolved(m.type)
            if not isinstance(ptr, Ptr):
                raise BTFError(f"{mw}: expected __type() (a pointer), got "
                               f"{_kind_name(ptr.kind)}")
            try:
                sz = btf.size(ptr.type)
            except BTFError as e:
                raise BTFError(f"{mw}: cannot size type id {ptr.type}: {e}") from None
            key = m.name + "_size"
            if f[key] and f[key] != sz:
                raise BTFError(f"{mw}: conflicting {m.name} size {f[key]} != {sz}")
            f[key] = sz
            f[m.name + "_type_id"] = ptr.type
        elif m.name == "values":
            if is_inner:
                raise BTFError(f"{mw}: an inner map cannot have values")
            if idx != len(t.members) - 1:
                raise BTFError(f"{mw}: 'values' must be the last member")
            arr = btf.resolved(m.type)
            if not isinstance(arr, Array) or arr.nelems != 0:
                raise BTFError(f"{mw}: expected a zero-length array (__array)")
            ptr = btf.resolved(arr.type)
            if not isinstance(ptr, Ptr):
                raise BTFError(f"{mw}: array element must be a pointer")
            target = btf.resolved(ptr.type)
            mtype = f["type"]
            if mtype in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
                if not isinstance(target, Struct) or target.kind != Kind.STRUCT:
                    raise BTFError(f"{mw}: inner map definition must be a struct, got "
                                   f"{_kind_name(target.kind)}")
                f["inner"] = replace(_parse_map_def(btf, f"{map_name}.inner", target.id, True),
                                     offset=0)
                f["values_kind"] = "maps"
            elif mtype == MapType.PROG_ARRAY:
                if not isinstance(target, FuncProto):
                    raise BTFError(f"{mw}: prog array values must be function prototypes, got "
                                   f"{_kind_name(target.kind)}")
                f["values_kind"] = "progs"
            else:
                raise BTFError(f"{mw}: 'values' needs a map-in-map or prog array (map type "
                               f"must be set before it), not {mtype}")
            if f["value_size"] and f["value_size"] != 4:
                raise BTFError(f"{mw}: conflicting value size {f['value_size']} != 4")
            f["value_size"] = 4
        else:
            raise BTFError(f"BTF: {where} (type id {def_id}): unknown member '{m.name}'")
        present.add(m.name)
    try:
        f["type"] = MapType(f["type"])
    except ValueError:
        pass
    return MapDef(name=map_name, offset=0, def_type_id=def_id, present=frozenset(present), **f)


def _map_uint(btf: BTF, m: Member, what: str) -> int:
    """``__uint(name, val)``: PTR -> ARRAY[val]."""
    ptr = btf.resolved(m.type)
    if not isinstance(ptr, Ptr):
        raise BTFError(f"{what}: expected __uint() (pointer to array), got {_kind_name(ptr.kind)}")
    arr = btf.resolved(ptr.type)
    if not isinstance(arr, Array):
        raise BTFError(f"{what}: expected __uint() (pointer to array), got pointer to "
                       f"{_kind_name(arr.kind)}")
    return arr.nelems


def _map_ulong(btf: BTF, m: Member, what: str) -> int:
    """``__ulong(name, val)`` (an enum with one enumerator) or ``__uint``."""
    t = btf.resolved(m.type)
    if isinstance(t, Ptr):
        return _map_uint(btf, m, what)
    if isinstance(t, Enum):
        if len(t.values) != 1:
            raise BTFError(f"{what}: __ulong() enum must have exactly one value, has "
                           f"{len(t.values)}")
        return t.values[0].value & 0xFFFFFFFFFFFFFFFF
    raise BTFError(f"{what}: expected __ulong() (an enum) or __uint(), got {_kind_name(t.kind)}")

"""The value codec: bytes of a BTF type <-> Python data, so typed map keys and values and global
variables read and write as ints, bools, floats, lists and dicts.

Layout follows the type exactly: members at their BTF bit offsets (bitfields included, in either
encoding: the member's ``bitfield_size`` or an INT narrower than its size), arrays element by
element, DATASECs variable by variable, in the byte order of the ``.BTF`` section. Members of
anonymous struct/union members appear in, and are accepted from, the parent dict, as C names them.
"""
from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from bpfjit.errors import BTFError

from .ctext import describe
from .types import (MAX_NESTING, Array, Datasec, Enum, Float, Int, Member, Ptr, Struct, Var,
                    kind_name, too_deep)

if TYPE_CHECKING:
    from .index import BTF

_FLOAT_FORMATS = {2: "e", 4: "f", 8: "d"}  # long double (12, 16 bytes) is read as raw bytes


class PointerCodec(Protocol):
    """How the pointer words of a value read and write as Python values, by where each lies in
    the value: a loader gives function pointers as handles naming functions and kptrs as handles
    of their objects, and checks what is assigned to them."""

    def decode(self, offset: int, raw: int) -> Any:
        """The Python value of the pointer word raw at offset."""

    def encode(self, offset: int, value: Any) -> Any:
        """The pointer word for value at offset (or value itself, for a pointer the codec leaves
        an int), or a BPFError why it cannot be stored there."""

    def check_bytes(self, offset: int, size: int) -> None:
        """A BPFError if size raw bytes may not be written at offset (they would cover a pointer
        only handles may set)."""


def format_value(btf: BTF, type_id: int, data: bytes, codec: PointerCodec | None = None) -> Any:
    """Decode ``data`` (exactly ``size(type_id)`` bytes) as Python data: ints, bools (BOOL
    encoding), floats, lists (arrays, char arrays included), dicts (structs, unions, DATASECs;
    members of anonymous struct/union members appear directly in the parent dict). codec: what
    pointers read as (else they are ints)."""
    data = bytes(data)
    size = btf.size(type_id)
    if len(data) != size:
        raise BTFError(f"BTF: type id {type_id}: value of {len(data)} bytes, expected {size}")
    return _format(btf, type_id, data, 0, 0, codec)


def encode_value(btf: BTF, type_id: int, value: Any, codec: PointerCodec | None = None) -> bytes:
    """The inverse of :func:`format_value`: ``size(type_id)`` bytes for ``value``.

    Accepts bytes of the exact size for any type, ints (ints, enums, pointers, bools),
    floats (FLOAT), dicts (structs/unions/DATASECs; missing members are 0, an unknown member
    is an error), lists/tuples (arrays; the length must match). codec: what pointers accept and
    where raw bytes may go (else pointers are ints and bytes go anywhere).
    """
    size = btf.size(type_id)
    try:
        buf = bytearray(size)
    except MemoryError:
        raise BTFError(f"BTF: type id {type_id}: {size} bytes is too large to encode") from None
    _encode(btf, type_id, value, buf, 0, 0, codec)
    return bytes(buf)


# --- decoding ---------------------------------------------------------------------------------------

def _format(btf: BTF, type_id: int, data: bytes, off: int, depth: int, codec: PointerCodec | None) -> Any:
    if depth > MAX_NESTING:
        raise too_deep(type_id)
    tid = btf.resolve(type_id)
    t = btf.types[tid]
    if isinstance(t, Int):
        raw = _uint(btf, data, off, t.size)
        bits, shift = _int_field(t)
        raw = (raw >> shift) & ((1 << bits) - 1)
        if t.is_bool:
            return bool(raw)
        return _sext(raw, bits) if t.signed else raw
    if isinstance(t, Enum):
        raw = _uint(btf, data, off, t.size)
        return _sext(raw, 8 * t.size) if t.signed else raw
    if isinstance(t, Ptr):
        raw = _uint(btf, data, off, 8)
        return raw if codec is None else codec.decode(off, raw)
    if isinstance(t, Float):
        if off + t.size > len(data):
            raise BTFError(f"BTF: value too short: {t.size} bytes at offset {off}")
        fmt = _FLOAT_FORMATS.get(t.size)
        if fmt is None:
            return bytes(data[off:off + t.size])
        return struct.unpack_from(btf.endian + fmt, data, off)[0]
    if isinstance(t, Array):
        esize = btf.size(t.type, depth + 1)
        if esize == 0 and t.nelems > 1 << 20:
            raise BTFError(f"BTF: type id {tid}: {t.nelems} zero-sized elements")
        return [_format(btf, t.type, data, off + i * esize, depth + 1, codec) for i in range(t.nelems)]
    if isinstance(t, Struct):
        out: dict[str, Any] = {}
        for m in t.members:
            value = _format_member(btf, t, m, data, off, depth, codec)
            if m.name:
                out[m.name] = value
            elif isinstance(value, dict):
                out.update(value)
        return out
    if isinstance(t, Datasec):
        out = {}
        for var, offset in _datasec_vars(btf, t):
            vsize = btf.size(var.type, depth + 1)
            if offset + vsize > t.size:
                raise BTFError(f"BTF: type id {tid}: variable '{var.name}' at offset "
                               f"{offset} (+{vsize}) past the section size {t.size}")
            out[var.name] = _format(btf, var.type, data, off + offset, depth + 1, codec)
        return out
    if isinstance(t, Var):
        return _format(btf, t.type, data, off, depth + 1, codec)
    raise BTFError(f"BTF: type id {type_id}: cannot format a {kind_name(t.kind)} value")


def _format_member(btf: BTF, s: Struct, m: Member, data: bytes, base: int, depth: int,
                   codec: PointerCodec | None) -> Any:
    bitsize, signed = _bitfield(btf, s, m)
    if bitsize:
        first, shift, nbytes = _bitfield_span(s, m, bitsize, f"BTF: type id {s.id}: bitfield "
                                                            f"'{m.name}'")
        raw = (_uint(btf, data, base + first, nbytes, bitfield=True) >> shift) & ((1 << bitsize) - 1)
        t = btf.resolved(m.type)
        if isinstance(t, Int) and t.is_bool:
            return bool(raw)
        return _sext(raw, bitsize) if signed else raw
    _check_member_fits(btf, s, m, depth, f"BTF: type id {s.id}: member '{m.name}'")
    return _format(btf, m.type, data, base + m.byte_offset, depth + 1, codec)


def _uint(btf: BTF, data: bytes, off: int, size: int, bitfield: bool = False) -> int:
    if off + size > len(data):
        raise BTFError(f"BTF: value too short: {size} bytes at offset {off}, have {len(data)}")
    if bitfield:
        _little_endian_bitfields(btf)
    return int.from_bytes(data[off:off + size], "little" if btf.endian == "<" else "big")


def _sext(raw: int, bits: int) -> int:
    if bits and raw >> (bits - 1) & 1:
        return raw - (1 << bits)
    return raw


# --- encoding ---------------------------------------------------------------------------------------

def _encode(btf: BTF, type_id: int, value: Any, buf: bytearray, off: int, depth: int,
            codec: PointerCodec | None) -> None:
    if depth > MAX_NESTING:
        raise too_deep(type_id)
    if isinstance(value, (bytes, bytearray, memoryview)):
        size = btf.size(type_id, depth)
        value = bytes(value)
        if len(value) != size:
            raise BTFError(f"BTF: type id {type_id} ({describe(btf, type_id)}): {len(value)} "
                           f"bytes given, expected {size}")
        if codec is not None:
            codec.check_bytes(off, size)
        buf[off:off + size] = value
        return
    tid = btf.resolve(type_id)
    t = btf.types[tid]
    what = f"BTF: type id {type_id} ({describe(btf, type_id)})"
    if isinstance(t, Ptr) and codec is not None:
        value = codec.encode(off, value)
    if isinstance(t, (Int, Enum, Ptr)):
        size = 8 if isinstance(t, Ptr) else t.size
        bits, shift = _int_field(t) if isinstance(t, Int) else (8 * size, 0)
        raw = _int_bits(value, bits, what)
        if off + size > len(buf):
            raise BTFError(f"BTF: value too short: {size} bytes at offset {off}")
        buf[off:off + size] = (raw << shift).to_bytes(size, "little" if btf.endian == "<" else "big")
        return
    if isinstance(t, Float):
        fmt = _FLOAT_FORMATS.get(t.size)
        if fmt is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BTFError(f"{what}: cannot encode {type(value).__name__} as a "
                           f"{t.size}-byte float")
        try:
            struct.pack_into(btf.endian + fmt, buf, off, value)
        except (OverflowError, struct.error) as e:
            raise BTFError(f"{what}: {value!r} does not fit: {e}") from None
        return
    if isinstance(t, Array):
        if not isinstance(value, (list, tuple)):
            raise BTFError(f"{what}: expected a list of {t.nelems}, got {type(value).__name__}")
        if len(value) != t.nelems:
            raise BTFError(f"{what}: expected {t.nelems} elements, got {len(value)}")
        esize = btf.size(t.type, depth + 1)
        for i, item in enumerate(value):
            _encode(btf, t.type, item, buf, off + i * esize, depth + 1, codec)
        return
    if isinstance(t, Struct):
        if not isinstance(value, Mapping):
            raise BTFError(f"{what}: expected a dict, got {type(value).__name__}")
        paths = _member_paths(btf, t, depth)
        for key in value:
            if key not in paths:
                raise BTFError(f"{what}: no member '{key}'")
        for key, item in value.items():
            owner, m, base = paths[key]
            _encode_member(btf, owner, m, item, buf, off + base, depth, codec)
        return
    if isinstance(t, Datasec):
        if not isinstance(value, Mapping):
            raise BTFError(f"{what}: expected a dict, got {type(value).__name__}")
        by_name = {var.name: (var, offset) for var, offset in _datasec_vars(btf, t)}
        for key, item in value.items():
            if key not in by_name:
                raise BTFError(f"{what}: no variable '{key}'")
            var, offset = by_name[key]
            vsize = btf.size(var.type, depth + 1)
            if offset + vsize > len(buf) - off:
                raise BTFError(f"{what}: variable '{key}' at offset {offset} past the end")
            _encode(btf, var.type, item, buf, off + offset, depth + 1, codec)
        return
    if isinstance(t, Var):
        _encode(btf, t.type, value, buf, off, depth + 1, codec)
        return
    raise BTFError(f"{what}: cannot encode a {kind_name(t.kind)} value")


def _member_paths(btf: BTF, s: Struct, depth: int) -> dict[str, tuple[Struct, Member, int]]:
    """name -> (struct that owns the member, member, byte offset of that struct), looking
    through anonymous struct/union members as C does."""
    if depth > MAX_NESTING:
        raise too_deep(s.id)
    out: dict[str, tuple[Struct, Member, int]] = {}
    for m in s.members:
        if m.name:
            out[m.name] = (s, m, 0)
            continue
        inner = btf.resolved(m.type)
        if isinstance(inner, Struct) and not m.bitfield_size:
            for name, (owner, im, base) in _member_paths(btf, inner, depth + 1).items():
                out.setdefault(name, (owner, im, base + m.byte_offset))
    return out


def _encode_member(btf: BTF, s: Struct, m: Member, value: Any, buf: bytearray, base: int,
                   depth: int, codec: PointerCodec | None) -> None:
    bitsize, _signed = _bitfield(btf, s, m)
    what = f"BTF: type id {s.id}: member '{m.name}'"
    if bitsize:
        first, shift, nbytes = _bitfield_span(s, m, bitsize, what)
        raw = _int_bits(value, bitsize, what)
        first += base
        if first + nbytes > len(buf):
            raise BTFError(f"{what}: past the end of the value")
        _little_endian_bitfields(btf)
        word = int.from_bytes(buf[first:first + nbytes], "little")
        mask = ((1 << bitsize) - 1) << shift
        word = (word & ~mask) | (raw << shift)
        buf[first:first + nbytes] = word.to_bytes(nbytes, "little")
        return
    _check_member_fits(btf, s, m, depth, what)
    _encode(btf, m.type, value, buf, base + m.byte_offset, depth + 1, codec)


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


# --- layout shared by both directions ---------------------------------------------------------------

def _int_field(t: Int) -> tuple[int, int]:
    """(bits, shift) of an INT's value inside its ``size`` bytes: an INT may say it holds fewer
    bits than its size, at a bit offset."""
    if t.bits and (t.bit_offset or t.bits < 8 * t.size):
        return t.bits, t.bit_offset
    return 8 * t.size, 0


def _bitfield(btf: BTF, s: Struct, m: Member) -> tuple[int, bool]:
    """(bit size, signed) when the member is a bitfield, else (0, False)."""
    t = btf.resolved(m.type)
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
    return size, t.signed


def _bitfield_span(s: Struct, m: Member, bitsize: int, what: str) -> tuple[int, int, int]:
    """(first byte, bit shift in it, bytes covered) of a bitfield, checked against the struct."""
    end_bit = m.bit_offset + bitsize
    if end_bit > 8 * s.size:
        raise BTFError(f"{what}: bits {m.bit_offset}..{end_bit} past the struct size {s.size}")
    shift = m.bit_offset % 8
    return m.bit_offset // 8, shift, (shift + bitsize + 7) // 8


def _check_member_fits(btf: BTF, s: Struct, m: Member, depth: int, what: str) -> None:
    msize = btf.size(m.type, depth + 1)
    if m.byte_offset + msize > s.size:
        raise BTFError(f"{what}: at byte {m.byte_offset} (+{msize}) past the struct size {s.size}")


def _little_endian_bitfields(btf: BTF) -> None:
    """Bitfield bit numbering is only defined here for little-endian BTF."""
    if btf.endian != "<":
        raise BTFError("BTF: big-endian bitfields are not supported")


def _datasec_vars(btf: BTF, t: Datasec) -> list[tuple[Var, int]]:
    """The VARs of a DATASEC with their offsets (FUNC entries of ``.ksyms`` hold no value)."""
    return [(var, v.offset) for v in t.vars if isinstance(var := btf.types[v.type], Var)]

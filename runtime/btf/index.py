"""The :class:`BTF` container: the types of one ``.BTF`` section and the queries everything else
is built on -- lookups by id and name, skipping modifiers and typedefs, sizes and alignment, and
the data sections with libbpf's open-time fix-up.

C text, the value codec and special fields take a ``BTF`` and live in their own modules
(:mod:`.ctext`, :mod:`.values`, :mod:`.special`); the methods here that forward to them exist for
the loader and the maps, which hold a ``BTF`` and call them on it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bpfjit.errors import BTFError

from .special import SpecialFields, find_special_fields
from .types import (MAX_NESTING, MODIFIER_KINDS, VAR_STATIC, Array, BTFType, Datasec, DatasecVar,
                    Enum, Float, Func, FuncProto, Int, Kind, Ptr, Struct, Var, VarSecInfo,
                    kind_name, too_deep)
from .values import PointerCodec, encode_value, format_value

if TYPE_CHECKING:
    from .parse import BTFHeader


class BTF:
    """A parsed ``.BTF`` section. ``types[i]`` is the type with id ``i``; ``types[0]`` is void."""

    def __init__(self, header: BTFHeader, strings: bytes, endian: str = "<"):
        self.header = header
        self.strings = strings
        self.endian = endian
        self.types: list[BTFType] = []
        self._by_name: dict[str, list[int]] | None = None
        self._decoded: dict[int, str] = {0: ""}  # offset -> string: names repeat (ctx, pad, ...)

    def string(self, off: int, what: str = "string") -> str:
        """The string at ``off`` in the string table; ``what`` names it in the error."""
        text = self._decoded.get(off)
        if text is not None:
            return text
        if off >= len(self.strings):
            raise BTFError(f"BTF: {what}: string offset {off} past the string table "
                           f"({len(self.strings)} bytes)")
        end = self.strings.find(b"\0", off)
        if end < 0:  # only possible if the table is not NUL-terminated (checked at parse time)
            raise BTFError(f"BTF: {what}: string at offset {off} is not NUL-terminated")
        text = self._decoded[off] = self.strings[off:end].decode("utf-8", "replace")
        return text

    def validate(self) -> None:
        """The parse-time checks of the whole set: every referenced id exists, FUNCs point at
        FUNC_PROTOs, and no modifier chain loops (so :meth:`resolve` always ends)."""
        n = len(self.types)
        for t in self.types:
            for what, ref in t.references():
                if ref >= n:
                    raise BTFError(f"BTF: type id {t.id}: {what} refers to type id {ref}, past the "
                                   f"last type ({n - 1})")
            if isinstance(t, Func) and not isinstance(self.types[t.type], FuncProto):
                raise BTFError(f"BTF: type id {t.id}: FUNC '{t.name}' type {t.type} is not a "
                               f"FUNC_PROTO")
        done: set[int] = set()  # ids already known to end a chain: each link is walked once
        for t in self.types:
            chain: dict[int, None] = {}  # in walk order
            while t.kind in MODIFIER_KINDS and t.id not in done:
                if t.id in chain:
                    raise BTFError(f"BTF: type id {next(iter(chain))}: cycle in typedef/modifier chain "
                                   f"(through type id {t.id})")
                chain[t.id] = None
                t = self.types[t.type]
            done.update(chain)

    # -- lookups ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.types)

    def type(self, type_id: int) -> BTFType:
        if not isinstance(type_id, int) or type_id < 0 or type_id >= len(self.types):
            raise BTFError(f"BTF: type id {type_id} out of range (0..{len(self.types) - 1})")
        return self.types[type_id]

    def resolve(self, type_id: int) -> int:
        """The id after skipping TYPEDEF, VOLATILE, CONST, RESTRICT and TYPE_TAG."""
        seen: set[int] = set()
        cur = type_id
        t = self.type(cur)
        while t.kind in MODIFIER_KINDS:
            if cur in seen:
                raise BTFError(f"BTF: type id {type_id}: cycle in typedef/modifier chain "
                               f"(through type id {cur})")
            seen.add(cur)
            cur = t.type
            t = self.type(cur)
        return cur

    def resolved(self, type_id: int) -> BTFType:
        return self.type(self.resolve(type_id))

    def find(self, name: str, kind: int | None = None) -> int | None:
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

    # -- layout ----------------------------------------------------------------------------------

    def size(self, type_id: int, depth: int = 0) -> int:
        """Byte size of a type (modifiers skipped; arrays elem size * n; pointers 8)."""
        if depth > MAX_NESTING:
            raise too_deep(type_id)
        tid = self.resolve(type_id)
        t = self.types[tid]
        if isinstance(t, (Int, Struct, Enum, Float, Datasec)):
            return t.size
        if isinstance(t, Ptr):
            return 8
        if isinstance(t, Array):
            total = self.size(t.type, depth + 1) * t.nelems
            if total > 0xFFFFFFFF:
                raise BTFError(f"BTF: type id {tid}: array size {total} overflows u32")
            return total
        if isinstance(t, Var):
            return self.size(t.type, depth + 1)
        raise BTFError(f"BTF: type id {type_id}: {kind_name(t.kind)} has no size")

    def alignment(self, type_id: int, depth: int = 0) -> int:
        """Natural alignment, as libbpf's ``btf__align_of`` (packed structs give 1)."""
        if depth > MAX_NESTING:
            raise too_deep(type_id)
        t = self.resolved(type_id)
        if isinstance(t, (Int, Enum, Float)):
            return max(1, min(t.size, 8))
        if isinstance(t, Ptr):
            return 8
        if isinstance(t, Array):
            return self.alignment(t.type, depth + 1)
        if isinstance(t, Struct):
            align = 1
            for m in t.members:
                a = self.alignment(m.type, depth + 1)
                if m.bitfield_size == 0 and m.bit_offset % (8 * a):
                    return 1  # packed
                align = max(align, a)
            return 1 if t.size % align else align
        raise BTFError(f"BTF: type id {type_id}: {kind_name(t.kind)} has no alignment")

    # -- data sections ---------------------------------------------------------------------------

    def datasecs(self) -> dict[str, list[DatasecVar]]:
        """Every DATASEC: section name -> its variables (name, VAR id, offset, size, linkage)."""
        out: dict[str, list[DatasecVar]] = {}
        for t in self.types:
            if isinstance(t, Datasec):
                out[t.name] = [self._datasec_var(v) for v in t.vars]
        return out

    def _datasec_var(self, v: VarSecInfo) -> DatasecVar:
        var = self.types[v.type]
        linkage = var.linkage if isinstance(var, (Var, Func)) else 0
        return DatasecVar(var.name, v.type, v.offset, v.size, linkage)

    def datasec(self, name: str) -> Datasec | None:
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

    # -- forwarded to the modules that own them, for the loader and the maps ---------------------

    def format_value(self, type_id: int, data: bytes, codec: PointerCodec | None = None) -> Any:
        """:func:`.values.format_value` on this BTF."""
        return format_value(self, type_id, data, codec)

    def encode_value(self, type_id: int, value: Any, codec: PointerCodec | None = None) -> bytes:
        """:func:`.values.encode_value` on this BTF."""
        return encode_value(self, type_id, value, codec)

    def find_special_fields(self, type_id: int) -> SpecialFields:
        """:func:`.special.find_special_fields` on this BTF."""
        return find_special_fields(self, type_id)


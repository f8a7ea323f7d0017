"""BTF-defined maps: the variables of the ``.maps`` DATASEC decoded into map definitions, as
libbpf's ``parse_btf_map_def`` reads ``__uint``/``__type``/``__ulong``/``__array`` members
(docs/semantics.md#maps).

Call :meth:`~bpfjit.runtime.btf.BTF.fix_datasec` first when clang left the DATASEC offsets at zero.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from bpfjit.errors import BTFError

from ..map_types import MapType
from .index import BTF
from .types import (VAR_GLOBAL_ALLOCATED, VAR_STATIC, Array, Enum, FuncProto, Kind, Member, Ptr,
                    Struct, Var, kind_name)

MAPS_SECTION = ".maps"
PIN_NONE = 0
PIN_BY_NAME = 1


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
    inner: MapDef | None  # the inner map template of a map-in-map
    values_kind: str | None  # "maps" / "progs" when __array(values, ...) is present
    offset: int  # of the variable in .maps (matches .rel.maps / ld_imm64 symbol st_value)
    size: int = 0  # bytes of .maps the variable covers (more than the struct when `values` is
    #                initialised: the slots of the flexible array follow the struct)
    var_type_id: int = 0  # the VAR
    def_type_id: int = 0  # the STRUCT describing the map
    present: frozenset = frozenset()  # the member names that were given


def map_definitions(btf: BTF, maps_section_size: int | None = None) -> list[MapDef]:
    """One :class:`MapDef` per variable of the ``.maps`` DATASEC, in offset order.

    ``maps_section_size``: the ELF ``.maps`` section size; when given, every map must lie inside
    it. Call :meth:`BTF.fix_datasec` first when clang left the DATASEC offsets at zero.
    Returns [] when there is no ``.maps`` DATASEC.
    """
    sec = btf.datasec(MAPS_SECTION)
    if sec is None:
        return []
    out = []
    for v in sec.vars:
        var = btf.type(v.type)
        if not isinstance(var, Var):
            raise BTFError(f"BTF: type id {sec.id}: .maps entry type id {v.type} is a "
                           f"{kind_name(var.kind)}, not a VAR")
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
    for a, b in pairwise(out):
        if a.offset + a.size > b.offset:
            raise BTFError(f"BTF: maps '{a.name}' and '{b.name}' overlap in .maps (offsets "
                           f"{a.offset} and {b.offset}; DATASEC not fixed up from the ELF "
                           f"symbols?)")
    return out


def _parse_map_def(btf: BTF, map_name: str, def_id: int, is_inner: bool) -> MapDef:
    t = btf.type(def_id)
    where = f"map '{map_name}'"
    if not isinstance(t, Struct) or t.kind != Kind.STRUCT:
        raise BTFError(f"BTF: {where}: definition type id {def_id} is a {kind_name(t.kind)}, "
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
                               f"{kind_name(ptr.kind)}")
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
                                   f"{kind_name(target.kind)}")
                f["inner"] = replace(_parse_map_def(btf, f"{map_name}.inner", target.id, True),
                                     offset=0)
                f["values_kind"] = "maps"
            elif mtype == MapType.PROG_ARRAY:
                if not isinstance(target, FuncProto):
                    raise BTFError(f"{mw}: prog array values must be function prototypes, got "
                                   f"{kind_name(target.kind)}")
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
        raise BTFError(f"{what}: expected __uint() (pointer to array), got {kind_name(ptr.kind)}")
    arr = btf.resolved(ptr.type)
    if not isinstance(arr, Array):
        raise BTFError(f"{what}: expected __uint() (pointer to array), got pointer to "
                       f"{kind_name(arr.kind)}")
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
    raise BTFError(f"{what}: expected __ulong() (an enum) or __uint(), got {kind_name(t.kind)}")

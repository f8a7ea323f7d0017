"""The type dump of ``bpfjit btf dump``, in the shape of ``bpftool btf dump file X`` (text) and
``... -j`` (JSON records).

One table, ``_RULES``, says per type class which fields a record has. The text is derived from the
record the same way for every kind: a head line ``[id] KIND 'name' key=value ...`` from the
scalar fields, then one tab-indented line per entry of a list field (members, enumerators,
parameters, DATASEC variables): ``'name' key=value ...``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .types import (INT_BOOL, INT_CHAR, INT_SIGNED, Array, BTFType, Datasec, DeclTag, Enum, Float,
                    Func, FuncProto, Fwd, Int, Kind, Member, Modifier, Ptr, Struct, Var)

if TYPE_CHECKING:
    from .index import BTF

ANON = "(anon)"
_INT_ENCODINGS = {0: "(none)", INT_SIGNED: "SIGNED", INT_CHAR: "CHAR", INT_BOOL: "BOOL"}
_LINKAGES = {0: "static", 1: "global", 2: "extern"}  # the same numbers for FUNC and VAR


@dataclass(frozen=True)
class _Rule:
    """How one type class is dumped."""

    fields: Callable[[Any], dict[str, Any]]  # the record's fields after id, kind and name
    separator: str = " "  # between the head's key=value pairs (bpftool writes VAR with ", ")
    # a note after a list entry's line, given the BTF and the entry (DATASEC: the variable's kind)
    entry_note: Callable[[BTF, dict[str, Any]], str] | None = None


def _member(m: Member) -> dict[str, Any]:
    out = {"name": m.name or ANON, "type_id": m.type, "bits_offset": m.bit_offset}
    if m.bitfield_size:
        out["bitfield_size"] = m.bitfield_size
    return out


def _datasec_var_note(btf: BTF, entry: dict[str, Any]) -> str:
    type_id = entry["type_id"]
    if not 0 <= type_id < len(btf.types):
        return ""
    target = btf.types[type_id]
    return f" ({kind_text(target)} '{target.name}')"


def _linkage(t: Func | Var) -> dict[str, Any]:
    return {"type_id": t.type, "linkage": _LINKAGES.get(t.linkage, "(unknown)")}


_RULES: dict[type, _Rule] = {
    Int: _Rule(lambda t: {"size": t.size, "bits_offset": t.bit_offset, "nr_bits": t.bits,
                          "encoding": _INT_ENCODINGS.get(t.encoding, f"{t.encoding:#x}")}),
    Ptr: _Rule(lambda t: {"type_id": t.type}),
    Array: _Rule(lambda t: {"type_id": t.type, "index_type_id": t.index_type,
                            "nr_elems": t.nelems}),
    Struct: _Rule(lambda t: {"size": t.size, "vlen": len(t.members),
                             "members": [_member(m) for m in t.members]}),
    Enum: _Rule(lambda t: {"encoding": "SIGNED" if t.signed else "UNSIGNED", "size": t.size,
                           "vlen": len(t.values),
                           "values": [{"name": v.name, "val": v.value} for v in t.values]}),
    Fwd: _Rule(lambda t: {"fwd_kind": "union" if t.is_union else "struct"}),
    Modifier: _Rule(lambda t: {"type_id": t.type}),
    Func: _Rule(_linkage),
    FuncProto: _Rule(lambda t: {"ret_type_id": t.return_type, "vlen": len(t.params),
                                "params": [{"name": p.name or ANON, "type_id": p.type}
                                           for p in t.params]}),
    Var: _Rule(_linkage, separator=", "),
    Datasec: _Rule(lambda t: {"size": t.size, "vlen": len(t.vars),
                              "vars": [{"type_id": v.type, "offset": v.offset, "size": v.size}
                                       for v in t.vars]},
                   entry_note=_datasec_var_note),
    Float: _Rule(lambda t: {"size": t.size}),
    DeclTag: _Rule(lambda t: {"type_id": t.type, "component_idx": t.component_idx}),
}
_NO_FIELDS = _Rule(lambda t: {})  # void and kinds this module does not know


def kind_text(t: BTFType) -> str:
    """The kind as bpftool names it: ``STRUCT``, ``KIND_25`` for a kind it does not know."""
    try:
        return Kind(t.kind).name
    except ValueError:
        return f"KIND_{t.kind}"


def dump_records(btf: BTF) -> list[dict[str, Any]]:
    """One JSON-ready record per type (void excluded), as ``bpftool btf dump file X -j`` shapes
    them: ``{"id", "kind", "name", ...the kind's fields}``."""
    return [_record(t) for t in btf.types[1:]]


def dump_lines(btf: BTF) -> list[str]:
    """The dump as bpftool's ``btf dump file X`` writes it, one string per line."""
    lines: list[str] = []
    for t in btf.types[1:]:
        rule = _RULES.get(type(t), _NO_FIELDS)
        record = _record(t)
        scalars = [f"{key}={value}" for key, value in record.items()
                   if key not in ("id", "kind", "name") and not isinstance(value, list)]
        head = f"[{record['id']}] {record['kind']} '{record['name']}'"
        lines.append(" ".join([head, rule.separator.join(scalars)]) if scalars else head)
        for entries in (value for value in record.values() if isinstance(value, list)):
            lines.extend(_entry_line(btf, rule, entry) for entry in entries)
    return lines


def _record(t: BTFType) -> dict[str, Any]:
    rule = _RULES.get(type(t), _NO_FIELDS)
    return {"id": t.id, "kind": kind_text(t), "name": t.name or ANON, **rule.fields(t)}


def _entry_line(btf: BTF, rule: _Rule, entry: dict[str, Any]) -> str:
    words = [f"'{value}'" if key == "name" else f"{key}={value}" for key, value in entry.items()]
    note = rule.entry_note(btf, entry) if rule.entry_note is not None else ""
    return "\t" + " ".join(words) + note

"""C text for BTF types: ``struct pkt_stats``, ``__u32[4]``, ``char *``, ``int (*)[2]``,
``u32 fn(u32 x, ...)``, for messages and listings that name a type the way its source did."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .types import (MAX_NESTING, Array, BTFType, Datasec, DeclTag, Enum, Float, Func, FuncProto,
                    Fwd, Int, Kind, Modifier, Ptr, Struct, Var, Void, too_deep)

if TYPE_CHECKING:
    from .index import BTF

# How a qualifier or tag wraps the text of the type it modifies ({} is that text, {name} the tag).
_MODIFIER_TEXT = {
    Kind.CONST: "const {}",
    Kind.VOLATILE: "volatile {}",
    Kind.RESTRICT: "{} restrict",
    Kind.TYPE_TAG: "{} __tag({name})",
}


def describe(btf: BTF, type_id: int) -> str:
    """A C-like name for the type: ``struct pkt_stats``, ``__u32[4]``, ``char *``."""
    return _describe(btf, type_id, 0)


def _describe(btf: BTF, type_id: int, depth: int) -> str:
    if depth > MAX_NESTING:
        raise too_deep(type_id)
    t = btf.type(type_id)
    text = _TEXT.get(type(t))
    return text(btf, t, depth + 1) if text else f"<kind {t.kind}> {t.name}".strip()


def _array(btf: BTF, t: Array, depth: int) -> str:
    """``int[2][3]``: the dimensions of nested arrays follow the innermost element."""
    dims = []
    cur: BTFType = t
    while isinstance(cur, Array) and len(dims) <= MAX_NESTING:
        dims.append(cur.nelems)
        cur = btf.type(cur.type)
    return _describe(btf, cur.id, depth) + "".join(f"[{n}]" for n in dims)


def _modifier(btf: BTF, t: Modifier, depth: int) -> str:
    if t.kind == Kind.TYPEDEF:
        return t.name
    return _MODIFIER_TEXT[t.kind].format(_describe(btf, t.type, depth), name=t.name)


def _func(btf: BTF, t: Func, depth: int) -> str:
    proto = btf.type(t.type)
    return _prototype(btf, proto, t.name, depth, named=True) if isinstance(proto, FuncProto) else t.name


def _pointer(btf: BTF, t: Ptr, depth: int) -> str:
    """Pointers to functions and arrays put the ``*`` inside parentheses, as C declarators do."""
    target = btf.type(t.type)
    if isinstance(target, FuncProto):
        return _prototype(btf, target, "(*)", depth)
    if isinstance(target, Array):  # int (*)[2]
        inner = _describe(btf, target.id, depth)
        cut = inner.index("[")
        return f"{inner[:cut]} (*){inner[cut:]}"
    inner = _describe(btf, t.type, depth)
    return inner + ("*" if inner.endswith("*") else " *")


def _prototype(btf: BTF, p: FuncProto, name: str, depth: int, named: bool = False) -> str:
    params = []
    for prm in p.params:
        if prm.type == 0 and not prm.name:
            params.append("...")
        else:
            ptype = _describe(btf, prm.type, depth)
            if named and prm.name:
                ptype += prm.name if ptype.endswith("*") else f" {prm.name}"
            params.append(ptype)
    ret = _describe(btf, p.return_type, depth)
    sep = "" if not name else " "
    return f"{ret}{sep}{name}({', '.join(params) or 'void'})"


def _aggregate(t: Struct | Fwd) -> str:
    name = (t.name or "{...}") if isinstance(t, Struct) else t.name
    return f"{'union' if t.is_union else 'struct'} {name}"


# C text per type class: (btf, type, depth of what it names) -> text.
_TEXT: dict[type, Callable[[BTF, Any, int], str]] = {
    Void: lambda btf, t, depth: "void",
    Int: lambda btf, t, depth: t.name,
    Float: lambda btf, t, depth: t.name,
    Struct: lambda btf, t, depth: _aggregate(t),
    Fwd: lambda btf, t, depth: _aggregate(t),
    Enum: lambda btf, t, depth: f"enum {t.name or '{...}'}",
    Ptr: _pointer,
    Array: _array,
    Modifier: _modifier,
    Func: _func,
    FuncProto: lambda btf, t, depth: _prototype(btf, t, "", depth),
    Var: lambda btf, t, depth: f"{_describe(btf, t.type, depth)} {t.name}",
    Datasec: lambda btf, t, depth: f'SEC("{t.name}")',
    DeclTag: lambda btf, t, depth: f'__decl_tag("{t.name}")',
}

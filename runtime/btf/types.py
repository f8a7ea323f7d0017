"""BTF kinds and one frozen dataclass per kind: what a ``struct btf_type`` record and its trailer
hold once decoded (uapi ``linux/btf.h``).

The classes carry no behaviour beyond what a record says about itself (its referenced ids, a
signedness bit); queries that need other types (sizes, layout, C text, values) live in the modules
that take a whole :class:`~bpfjit.runtime.btf.BTF`.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from bpfjit.errors import BTFError


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

# Nesting (arrays of structs of arrays ...) deeper than this is treated as a reference cycle.
MAX_NESTING = 64

# Kinds resolve() skips.
MODIFIER_KINDS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})


def kind_name(kind: int) -> str:
    """``INT``, ``void`` for kind 0, ``kind 25`` for a kind this module does not know: for
    messages."""
    try:
        return Kind(kind).name if kind else "void"
    except ValueError:
        return f"kind {kind}"


def too_deep(type_id: int) -> BTFError:
    """The error for nesting past :data:`MAX_NESTING`, which only a reference cycle reaches."""
    return BTFError(f"BTF: type id {type_id}: types nested too deeply (a cycle?)")


@dataclass(frozen=True)
class BTFType:
    """Fields every type has. ``kind`` is a :class:`Kind` (an int for unknown kinds)."""

    id: int
    kind: int
    name: str
    kind_flag: bool

    def references(self) -> list[tuple[str, int]]:
        """(what, type id) of every type this record names, for the parse-time range check."""
        return []


@dataclass(frozen=True)
class Void(BTFType):
    """Type id 0."""


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
    def is_bool(self) -> bool:
        return bool(self.encoding & INT_BOOL)


@dataclass(frozen=True)
class _Typed(BTFType):
    """A record whose ``size_or_type`` word names one other type."""

    type: int

    def references(self) -> list[tuple[str, int]]:
        return [("type", self.type)]


@dataclass(frozen=True)
class Ptr(_Typed):
    pass


@dataclass(frozen=True)
class Modifier(_Typed):
    """TYPEDEF, VOLATILE, CONST, RESTRICT or TYPE_TAG: a name (typedefs, tags) and a target."""


@dataclass(frozen=True)
class Array(BTFType):
    type: int
    index_type: int
    nelems: int

    def references(self) -> list[tuple[str, int]]:
        return [("element type", self.type), ("index type", self.index_type)]


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

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    def references(self) -> list[tuple[str, int]]:
        return [(f"member {m.name or '<anon>'}", m.type) for m in self.members]


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
    """A forward declaration; the kind flag says union rather than struct."""

    @property
    def is_union(self) -> bool:
        return self.kind_flag


@dataclass(frozen=True)
class Func(_Typed):
    """A function; ``type`` is its FUNC_PROTO, ``linkage`` one of ``FUNC_*`` (the record's vlen)."""

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

    def references(self) -> list[tuple[str, int]]:
        return [("return type", self.return_type)] + [(f"param {p.name or i}", p.type)
                                                       for i, p in enumerate(self.params)]


@dataclass(frozen=True)
class Var(_Typed):
    """A global variable; ``linkage`` is one of ``VAR_*``."""

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

    def references(self) -> list[tuple[str, int]]:
        return [(f"var {i}", v.type) for i, v in enumerate(self.vars)]


@dataclass(frozen=True)
class Float(BTFType):
    size: int


@dataclass(frozen=True)
class DeclTag(_Typed):
    """A tag on a type, or on one of its members/parameters (``component_idx``; -1 for the
    type itself)."""

    component_idx: int


@dataclass(frozen=True)
class UnknownType(BTFType):
    """A kind this parser does not know, skipped with the help of the header's layout table."""

    info: int
    size_or_type: int
    raw: bytes


class DatasecVar(NamedTuple):
    """A DATASEC entry with its VAR looked up: what the loader needs to place a global."""

    name: str
    type_id: int  # the VAR's id
    offset: int
    size: int
    linkage: int

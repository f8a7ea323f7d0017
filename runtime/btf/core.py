"""CO-RE: ``.BTF.ext`` relocations resolved against a target BTF and patched into instructions,
with libbpf's semantics (libbpf ``relo_core.c``; docs/semantics.md, "CO-RE relocations").

clang compiles each ``preserve_access_index`` access, ``bpf_core_field_exists`` and the like to an
instruction holding the *local* answer (an offset, a size, 0/1, a type id, an enum value) and a
record naming the local type and an access string. Loading against another set of types (another
kernel's, or another object's) means answering the same question against those types:

* a **spec** walks the access string (``0:1:2``: the root index, then member or array indexes)
  through the local types, keeping the named fields and array indexes that matter;
* **candidates** are the target's types of a compatible kind whose *essential name* (the name
  without a ``___flavour`` suffix) is the local one's; the local spec is matched field by field
  (names, compatible field types, array bounds) against each, and every match must give the same
  answer (an ambiguity is an error, as in libbpf);
* the answer is **patched** into the instruction: an ALU immediate, a load/store offset (with the
  access size changed when the field's size changed, for pointers and unsigned ints only), or an
  ``ld_imm64`` constant. A relocation no candidate satisfies *poisons* its instruction: it becomes
  ``call 0xbad2310``, an unknown helper, so the verifier refuses the program only if a path
  reaches it (``bpf_core_field_exists`` guards leave it in dead code).

Without a target (``target=None``) the local types are the target and every relocation resolves to
the local answer: the object runs as clang built it, and its records are still checked.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from bpfjit import isa
from bpfjit.errors import BPFError, BTFError
from bpfjit.isa import Insn

from .ext import CoreRelo, CoreReloKind
from .index import BTF
from .parse import parse_btf
from .reader import BTF_MAGIC
from .types import INT_SIGNED, Array, BTFType, Enum, FuncProto, Fwd, Int, Kind, Ptr, Struct, kind_name

POISON_HELPER = 0xBAD2310  # "bad relo": the helper id a poisoned instruction calls (195896080)
MAX_SPEC_LEN = 64  # accessors in one spec, as libbpf's BPF_CORE_SPEC_MAX_LEN
_MAX_DEPTH = 32  # type-compatibility recursion, as libbpf's
_S16_MAX = (1 << 15) - 1

_FIELD_KINDS = frozenset({CoreReloKind.FIELD_BYTE_OFFSET, CoreReloKind.FIELD_BYTE_SIZE, CoreReloKind.FIELD_EXISTS,
                          CoreReloKind.FIELD_SIGNED, CoreReloKind.FIELD_LSHIFT_U64, CoreReloKind.FIELD_RSHIFT_U64})
_TYPE_KINDS = frozenset({CoreReloKind.TYPE_ID_LOCAL, CoreReloKind.TYPE_ID_TARGET, CoreReloKind.TYPE_EXISTS,
                         CoreReloKind.TYPE_MATCHES, CoreReloKind.TYPE_SIZE})
_ENUMVAL_KINDS = frozenset({CoreReloKind.ENUMVAL_EXISTS, CoreReloKind.ENUMVAL_VALUE})
_ENUM_KINDS = (Kind.ENUM, Kind.ENUM64)

# libbpf's short names of the kinds, which its messages and spec descriptions use.
KIND_NAMES = {
    CoreReloKind.FIELD_BYTE_OFFSET: "byte_off", CoreReloKind.FIELD_BYTE_SIZE: "byte_sz",
    CoreReloKind.FIELD_EXISTS: "field_exists", CoreReloKind.FIELD_SIGNED: "signed",
    CoreReloKind.FIELD_LSHIFT_U64: "lshift_u64", CoreReloKind.FIELD_RSHIFT_U64: "rshift_u64",
    CoreReloKind.TYPE_ID_LOCAL: "local_type_id", CoreReloKind.TYPE_ID_TARGET: "target_type_id",
    CoreReloKind.TYPE_EXISTS: "type_exists", CoreReloKind.TYPE_MATCHES: "type_matches",
    CoreReloKind.TYPE_SIZE: "type_size", CoreReloKind.ENUMVAL_EXISTS: "enumval_exists",
    CoreReloKind.ENUMVAL_VALUE: "enumval_value",
}


class _Unsatisfied(Exception):
    """Inside the resolver: the relocation has no answer in this spec (libbpf's -EUCLEAN), so
    its instruction is poisoned. Never escapes this module."""


# --- names ----------------------------------------------------------------------------------------

def essential_name(name: str) -> str:
    """The name without its flavour: ``task_struct___v5_10`` -> ``task_struct``. A flavour
    starts at the last ``___`` that has a non-underscore on both sides."""
    for i in range(len(name) - 5, -1, -1):
        if name[i] != "_" and name[i + 1:i + 4] == "___" and name[i + 4] != "_":
            return name[:i + 1]
    return name


def _kinds_compatible(a: int, b: int) -> bool:
    """libbpf's btf_kind_core_compat: the same kind, or two enums of either width."""
    return a == b or (a in _ENUM_KINDS and b in _ENUM_KINDS)


def _enum_value(t: Enum, index: int) -> int:
    """An enumerator's value as libbpf reads it into a u64: a 32-bit ENUM's sign-extended from
    s32, an ENUM64's as its 64 bits."""
    value = t.values[index].value
    return (isa.s32(value) if t.kind == Kind.ENUM else value) & isa.MASK64


# --- specs ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Accessor:
    """One high-level step of a spec: a named member of the struct/union ``type_id``, or (name
    None) an index into an array whose element type is ``type_id``; for enum relocations, the
    enumerator ``index`` of the enum ``type_id``."""
    type_id: int
    index: int
    name: str | None


@dataclass
class Spec:
    """An access string resolved in one BTF: its raw indexes, the named fields and array indexes
    they pass (``accessors``), and the bit offset they reach (libbpf's bpf_core_spec)."""
    btf: BTF
    root_id: int
    kind: CoreReloKind
    raw: list[int] = dataclasses.field(default_factory=list)
    accessors: list[Accessor] = dataclasses.field(default_factory=list)
    bit_offset: int = 0

    def describe(self) -> str:
        """libbpf's rendering: ``<byte_off> [5] struct sample.in.y (0:7:1 @ offset 44)``."""
        root = self.btf.type(self.root_id)
        text = f"<{KIND_NAMES[self.kind]}> [{self.root_id}] {kind_name(root.kind).lower()} {root.name or '<anon>'}"
        if self.kind in _TYPE_KINDS:
            return text
        if self.kind in _ENUMVAL_KINDS:
            enum = self.btf.resolved(self.root_id)
            if isinstance(enum, Enum) and self.raw:
                value = enum.values[self.raw[0]]
                return f"{text}::{value.name} = {value.value}"
            return text
        for i, acc in enumerate(self.accessors):
            if acc.name:
                text += f".{acc.name}"
            elif i > 0 or acc.index > 0:
                text += f"[{acc.index}]"
        offset = f"{self.bit_offset // 8}" + (f".{self.bit_offset % 8}" if self.bit_offset % 8 else "")
        return f"{text} ({':'.join(map(str, self.raw))} @ offset {offset})"


def _size(btf: BTF, type_id: int) -> int:
    try:
        return btf.size(type_id)
    except BTFError as exc:
        raise BTFError(f"type id {type_id} has no size ({exc})") from None


def _is_flex_array(btf: BTF, previous: Accessor, array: Array) -> bool:
    """A zero-length array that is the last member of the struct the previous accessor named."""
    if previous.name is None or array.nelems > 0:
        return False
    owner = btf.type(previous.type_id)
    return isinstance(owner, Struct) and previous.index == len(owner.members) - 1


def parse_spec(btf: BTF, relo: CoreRelo) -> Spec:
    """The local spec of a relocation (libbpf's bpf_core_parse_spec); BTFError when the record
    does not describe an access the local types have."""
    kind = CoreReloKind(relo.kind)
    text = relo.access_str
    spec = Spec(btf, relo.type_id, kind)
    if not text or text.startswith(":"):
        raise BTFError(f"access string {text!r} is empty or starts with ':'")
    if kind in _TYPE_KINDS:
        if text != "0":
            raise BTFError(f"access string {text!r} of a type relocation is not \"0\"")
        return spec
    parts = text.split(":")
    if not all(part.isdigit() for part in parts):
        raise BTFError(f"access string {text!r} is not a list of indexes separated by ':'")
    if len(parts) > MAX_SPEC_LEN:
        raise BTFError(f"access string {text!r} has more than {MAX_SPEC_LEN} steps")
    spec.raw = [int(part) for part in parts]
    type_id = btf.resolve(relo.type_id)
    t = btf.types[type_id]
    spec.accessors.append(Accessor(type_id, spec.raw[0], None))
    if kind in _ENUMVAL_KINDS:
        if not isinstance(t, Enum) or len(spec.raw) > 1 or spec.raw[0] >= len(t.values):
            raise BTFError(f"access string {text!r} names no enumerator of type id {relo.type_id} "
                           f"({kind_name(t.kind)})")
        spec.accessors[0] = Accessor(type_id, spec.raw[0], t.values[spec.raw[0]].name)
        return spec
    spec.bit_offset = spec.raw[0] * _size(btf, type_id) * 8
    for step, index in enumerate(spec.raw[1:], 1):
        type_id = btf.resolve(type_id)
        t = btf.types[type_id]
        if isinstance(t, Struct):
            if index >= len(t.members):
                raise BTFError(f"access string {text!r}: member {index} of type id {type_id} does not exist "
                               f"({len(t.members)} members)")
            member = t.members[index]
            spec.bit_offset += member.bit_offset
            if member.name:
                spec.accessors.append(Accessor(type_id, index, member.name))
            type_id = member.type
        elif isinstance(t, Array):
            type_id = btf.resolve(t.type)
            if not _is_flex_array(btf, spec.accessors[-1], t) and index >= t.nelems:
                raise BTFError(f"access string {text!r}: index {index} past the {t.nelems} elements of "
                               f"array type id {t.id}")
            spec.accessors.append(Accessor(type_id, index, None))
            spec.bit_offset += index * _size(btf, type_id) * 8
        else:
            raise BTFError(f"access string {text!r} (step {step}) reaches type id {type_id} of kind "
                           f"{kind_name(t.kind)}, which has no members or elements")
    return spec


# --- type compatibility ---------------------------------------------------------------------------

def _fields_compatible(local: BTF, local_id: int, target: BTF, target_id: int) -> bool:
    """Whether a local field's type may be relocated to a target field's (libbpf's
    bpf_core_fields_are_compat): composites with composites, pointers, floats, ints (not the old
    bitfield-like ints), enums and forward declarations of the same essential name, arrays of
    compatible elements."""
    for _ in range(_MAX_DEPTH):
        lt, tt = local.resolved(local_id), target.resolved(target_id)
        if isinstance(lt, Struct) and isinstance(tt, Struct):
            return True
        if not _kinds_compatible(lt.kind, tt.kind):
            return False
        if lt.kind in (Kind.PTR, Kind.FLOAT):
            return True
        if isinstance(lt, (Fwd, Enum)):
            a, b = essential_name(lt.name), essential_name(tt.name)
            return not a or not b or a == b
        if isinstance(lt, Int):
            return lt.bit_offset == 0 and tt.bit_offset == 0  # type: ignore[union-attr]
        if isinstance(lt, Array):
            local_id, target_id = lt.type, tt.type  # type: ignore[union-attr]
            continue
        return False
    raise BTFError(f"type id {local_id}: types nested too deeply")


def types_compatible(local: BTF, local_id: int, target: BTF, target_id: int, depth: int = _MAX_DEPTH) -> bool:
    """libbpf's bpf_core_types_are_compat (TYPE_EXISTS, TYPE_SIZE, TYPE_ID_TARGET): kinds agree
    through pointers, arrays and function prototypes; names are the caller's business."""
    if not _kinds_compatible(local.type(local_id).kind, target.type(target_id).kind):
        return False
    for _ in range(depth):
        lt, tt = local.resolved(local_id), target.resolved(target_id)
        if not _kinds_compatible(lt.kind, tt.kind):
            return False
        if lt.kind in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD):
            return True
        if isinstance(lt, Int):
            return lt.bit_offset == 0 and tt.bit_offset == 0  # type: ignore[union-attr]
        if isinstance(lt, (Ptr, Array)):
            local_id, target_id = lt.type, tt.type  # type: ignore[union-attr]
            continue
        if isinstance(lt, FuncProto) and depth > 0 and _params_agree(lt, tt, lambda a, b: types_compatible(
                local, local.resolve(a), target, target.resolve(b), depth - 1)):
            local_id, target_id = lt.return_type, tt.return_type  # type: ignore[union-attr]
            continue
        return False
    raise BTFError(f"type id {local_id}: types nested too deeply")


def _params_agree(local: FuncProto, target: BTFType, agree: Callable[[int, int], bool]) -> bool:
    """Two prototypes of the same arity whose parameter types agree pairwise (the return types
    are the caller's next step)."""
    return isinstance(target, FuncProto) and len(local.params) == len(target.params) and \
        all(agree(a.type, b.type) for a, b in zip(local.params, target.params))


def _names_match(local_name: str, target_name: str) -> bool:
    if not target_name:
        return not local_name
    return essential_name(local_name) == essential_name(target_name)


def types_match(local: BTF, local_id: int, target: BTF, target_id: int, behind_pointer: bool = False,
                depth: int = _MAX_DEPTH) -> bool:
    """libbpf's bpf_core_types_match (TYPE_MATCHES): the stricter relation -- same kinds (a
    struct behind a pointer may match its forward declaration), ints of the same size and sign,
    arrays of the same length, every local member and enumerator present by name in the target,
    and prototypes of the same arity."""
    if depth <= 0:
        raise BTFError(f"type id {local_id}: types nested too deeply")
    for _ in range(_MAX_DEPTH):
        lt, tt = local.resolved(local_id), target.resolved(target_id)
        if not _names_match(lt.name, tt.name):
            return False
        if lt.kind == Kind.UNKN:
            return tt.kind == Kind.UNKN
        if isinstance(lt, Fwd):
            if behind_pointer and isinstance(tt, Struct):
                return tt.is_union == lt.is_union
            return isinstance(tt, Fwd) and tt.is_union == lt.is_union
        if isinstance(lt, Enum):
            return isinstance(tt, Enum) and _enums_match(lt, tt)
        if isinstance(lt, Struct):
            if behind_pointer:
                return tt.kind == lt.kind or (isinstance(tt, Fwd) and tt.is_union == lt.is_union)
            return tt.kind == lt.kind and _composites_match(local, lt, target, tt, depth)  # type: ignore[arg-type]
        if isinstance(lt, Int):
            return isinstance(tt, Int) and lt.size == tt.size and lt.signed == tt.signed
        if isinstance(lt, Ptr):
            if not isinstance(tt, Ptr):
                return False
            behind_pointer = True
            local_id, target_id = lt.type, tt.type
            continue
        if isinstance(lt, Array):
            if not isinstance(tt, Array) or lt.nelems != tt.nelems:
                return False
            local_id, target_id = lt.type, tt.type
            continue
        if isinstance(lt, FuncProto) and _params_agree(lt, tt, lambda a, b, behind=behind_pointer: types_match(
                local, a, target, b, behind, depth - 1)):
            local_id, target_id = lt.return_type, tt.return_type  # type: ignore[union-attr]
            continue
        return False
    raise BTFError(f"type id {local_id}: types nested too deeply")


def _enums_match(local: Enum, target: Enum) -> bool:
    if local.size != target.size or len(local.values) > len(target.values):
        return False
    return all(any(_names_match(lv.name, tv.name) for tv in target.values) for lv in local.values)


def _composites_match(local: BTF, lt: Struct, target: BTF, tt: Struct, depth: int) -> bool:
    if len(lt.members) > len(tt.members):
        return False
    return all(any(_names_match(lm.name, tm.name) and types_match(local, lm.type, target, tm.type, False, depth - 1)
                   for tm in tt.members) for lm in lt.members)


# --- matching a local spec against a candidate ----------------------------------------------------

def _match_member(local: BTF, acc: Accessor, target: BTF, target_id: int, spec: Spec) -> int | None:
    """Find the member the named local accessor names in the target struct/union (searching
    anonymous members too), extending ``spec``; the member's type id, or None when there is no
    compatible one."""
    tt = target.resolved(target_id)
    if not isinstance(tt, Struct):
        return None
    local_member = local.types[acc.type_id].members[acc.index]  # type: ignore[attr-defined]
    for i, member in enumerate(tt.members):
        if len(spec.raw) == MAX_SPEC_LEN:
            raise BTFError(f"the match needs more than {MAX_SPEC_LEN} steps")
        spec.bit_offset += member.bit_offset
        spec.raw.append(i)
        if not member.name:
            found = _match_member(local, acc, target, member.type, spec)
            if found is not None:
                return found
        elif member.name == local_member.name:
            if not _fields_compatible(local, local_member.type, target, member.type):
                return None
            spec.accessors.append(Accessor(tt.id, i, member.name))
            return member.type
        spec.bit_offset -= member.bit_offset
        spec.raw.pop()
    return None


def match_spec(local: Spec, target: BTF, target_id: int) -> Spec | None:
    """The target spec of a candidate type (libbpf's bpf_core_spec_match), or None when the
    candidate does not have what the local spec reaches."""
    spec = Spec(target, target_id, local.kind)
    if local.kind in _TYPE_KINDS:
        if local.kind == CoreReloKind.TYPE_MATCHES:
            matched = types_match(local.btf, local.root_id, target, target_id)
        else:
            matched = types_compatible(local.btf, local.root_id, target, target_id)
        return spec if matched else None
    if local.kind in _ENUMVAL_KINDS:
        enum_id = target.resolve(target_id)
        enum = target.types[enum_id]
        if not isinstance(enum, Enum):
            return None
        wanted = essential_name(local.accessors[0].name or "")
        for i, value in enumerate(enum.values):
            if essential_name(value.name) == wanted:
                spec.accessors.append(Accessor(enum_id, i, value.name))
                spec.raw.append(i)
                return spec
        return None
    for step, acc in enumerate(local.accessors):
        target_id = target.resolve(target_id)
        if acc.name:
            found = _match_member(local.btf, acc, target, target_id, spec)
            if found is None:
                return None
            target_id = found
            continue
        if step > 0:
            array = target.types[target_id]
            if not isinstance(array, Array):
                return None
            if not _is_flex_array(target, spec.accessors[-1], array) and acc.index >= array.nelems:
                return None
            target_id = target.resolve(array.type)
        if len(spec.raw) == MAX_SPEC_LEN:
            raise BTFError(f"the match needs more than {MAX_SPEC_LEN} steps")
        spec.accessors.append(Accessor(target_id, acc.index, None))
        spec.raw.append(acc.index)
        spec.bit_offset += acc.index * _size(target, target_id) * 8
    return spec


# --- the value of a relocation in one spec --------------------------------------------------------

@dataclass(frozen=True)
class _Value:
    value: int
    validate: bool = True  # the instruction must hold this value (local side only)
    size: int = 0  # for FIELD_BYTE_OFFSET of a whole field: its size, for the access size
    type_id: int = 0  # ... and its type


def _field_value(kind: CoreReloKind, spec: Spec | None) -> _Value:
    """libbpf's bpf_core_calc_field_relo."""
    if kind == CoreReloKind.FIELD_EXISTS:
        return _Value(int(spec is not None))
    if spec is None:
        raise _Unsatisfied
    btf, acc = spec.btf, spec.accessors[-1]
    if acc.name is None:  # an array element
        if kind == CoreReloKind.FIELD_BYTE_OFFSET:
            return _Value(spec.bit_offset // 8, True, _size(btf, acc.type_id), acc.type_id)
        if kind == CoreReloKind.FIELD_BYTE_SIZE:
            return _Value(_size(btf, acc.type_id))
        raise BTFError(f"a {KIND_NAMES[kind]} relocation cannot apply to an array element")
    member = btf.types[acc.type_id].members[acc.index]  # type: ignore[attr-defined]
    field_id = btf.resolve(member.type)
    field_type = btf.types[field_id]
    bit_off, bit_size = spec.bit_offset, member.bitfield_size
    bitfield = bit_size > 0
    if bitfield:
        if not isinstance(field_type, (Int, Enum)):
            raise BTFError(f"bitfield {member.name} has type id {field_id} of kind {kind_name(field_type.kind)}")
        byte_size = field_type.size
        byte_off = bit_off // 8 // byte_size * byte_size
        while bit_off + bit_size - byte_off * 8 > byte_size * 8:  # the smallest load that holds it
            if byte_size >= 8:
                raise BTFError(f"bitfield {member.name} cannot be read with one 64-bit load")
            byte_size *= 2
            byte_off = bit_off // 8 // byte_size * byte_size
    else:
        byte_size = _size(btf, field_id)
        byte_off = bit_off // 8
        bit_size = byte_size * 8
    if kind == CoreReloKind.FIELD_BYTE_OFFSET:
        return _Value(byte_off, not bitfield, 0 if bitfield else byte_size, 0 if bitfield else field_id)
    if kind == CoreReloKind.FIELD_BYTE_SIZE:
        return _Value(byte_size, not bitfield)
    if kind == CoreReloKind.FIELD_SIGNED:
        signed = (isinstance(field_type, Enum) and field_type.signed) or \
            (isinstance(field_type, Int) and field_type.signed)
        return _Value(int(signed))
    if kind == CoreReloKind.FIELD_LSHIFT_U64:
        return _Value(64 - (bit_off + bit_size - byte_off * 8), not bitfield)
    return _Value(64 - bit_size)  # FIELD_RSHIFT_U64: never ambiguous


def _type_value(kind: CoreReloKind, spec: Spec | None) -> _Value:
    """libbpf's bpf_core_calc_type_relo: a missing type is 0 for every kind."""
    if spec is None:
        return _Value(0)
    if kind == CoreReloKind.TYPE_ID_TARGET:
        return _Value(spec.root_id, validate=False)  # ids change in linking: not checked
    if kind in (CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_MATCHES):
        return _Value(1)
    return _Value(_size(spec.btf, spec.root_id))  # TYPE_SIZE


def _enumval_value(kind: CoreReloKind, spec: Spec | None) -> _Value:
    if kind == CoreReloKind.ENUMVAL_EXISTS:
        return _Value(int(spec is not None))
    if spec is None:
        raise _Unsatisfied
    acc = spec.accessors[0]
    return _Value(_enum_value(spec.btf.types[acc.type_id], acc.index))  # type: ignore[arg-type]


def _value(kind: CoreReloKind, spec: Spec | None) -> _Value:
    if kind in _FIELD_KINDS:
        return _field_value(kind, spec)
    if kind in _TYPE_KINDS:
        return _type_value(kind, spec)
    return _enumval_value(kind, spec)


@dataclass(frozen=True)
class Resolution:
    """What a relocation patches in: the local value the instruction must hold (when
    ``validate``) and the target's; or ``poison``. For a field offset, the local and target field
    sizes, and whether changing the access size from one to the other is unsafe (a signed or
    non-integer field whose size changed)."""
    local_spec: str  # the local spec, described as libbpf does
    orig: int = 0
    new: int = 0
    poison: bool = False
    validate: bool = True
    orig_size: int = 0
    new_size: int = 0
    unsafe_resize: bool = False
    why: str = ""  # why the instruction is poisoned (a load or store, for unsafe_resize)


UNSAFE_RESIZE = ("accesses field incorrectly (make sure you are accessing pointers, unsigned integers, or fields "
                 "of matching type and size)")


def _calc(relo_kind: CoreReloKind, local: Spec, target: Spec | None, described: str) -> Resolution:
    """libbpf's bpf_core_calc_relo for one candidate (target None: no candidate matched)."""
    try:
        orig = _value(relo_kind, local)
        new = _value(relo_kind, target)
    except _Unsatisfied:
        return Resolution(described, poison=True, why="no matching target found")
    unsafe = False
    if relo_kind in _FIELD_KINDS and orig.size != new.size and target is not None:
        a, b = local.btf.types[orig.type_id], target.btf.types[new.type_id]
        unsafe = not ((isinstance(a, Ptr) and isinstance(b, Ptr)) or
                      (isinstance(a, Int) and isinstance(b, Int) and a.encoding != INT_SIGNED
                       and b.encoding != INT_SIGNED))
    return Resolution(described, orig.value, new.value, False, orig.validate, orig.size, new.size, unsafe,
                      UNSAFE_RESIZE if unsafe else "")


# --- the target -----------------------------------------------------------------------------------

class Target:
    """A target BTF and its types by essential name, built once for all of an object's relocations
    (a kernel's BTF has over 100,000 types; libbpf scans them, this looks them up)."""

    def __init__(self, btf: BTF, name: str = "target BTF"):
        self.btf = btf
        self.name = name
        self._by_essential: dict[str, list[int]] = {}
        for t in btf.types[1:]:
            if t.name:
                self._by_essential.setdefault(essential_name(t.name), []).append(t.id)

    def candidates(self, local: BTF, local_id: int) -> list[int]:
        """Target types of a compatible kind with the local type's essential name."""
        lt = local.type(local_id)
        return [tid for tid in self._by_essential.get(essential_name(lt.name), ())
                if _kinds_compatible(self.btf.types[tid].kind, lt.kind)]


def resolve(relo: CoreRelo, local: BTF, target: Target | None) -> Resolution:
    """The patch a relocation calls for against ``target`` (None: the local types), as libbpf's
    bpf_core_calc_relo_insn. BTFError for a record that does not fit the local types, a kind
    this module does not know, or candidates that disagree."""
    try:
        kind = CoreReloKind(relo.kind)
    except ValueError:
        raise BTFError(f"unrecognized CO-RE relocation kind {relo.kind}") from None
    local_type = local.type(relo.type_id)
    try:
        spec = parse_spec(local, relo)
    except BTFError as exc:
        raise BTFError(f"parsing [{relo.type_id}] {kind_name(local_type.kind).lower()} "
                       f"{local_type.name or '<anon>'} + {relo.access_str} failed: {exc}") from None
    described = spec.describe()
    if kind == CoreReloKind.TYPE_ID_LOCAL:
        return Resolution(described, relo.type_id, relo.type_id, validate=False)
    if target is None:
        return _calc(kind, spec, spec, described)
    if not local_type.name:
        raise BTFError(f"<{KIND_NAMES[kind]}> ({int(kind)}) relocation doesn't support anonymous types")
    chosen: Resolution | None = None
    chosen_offset = 0
    for candidate in target.candidates(local, relo.type_id):
        matched = match_spec(spec, target.btf, candidate)
        if matched is None:
            continue
        result = _calc(kind, spec, matched, described)
        if chosen is None:
            chosen, chosen_offset = result, matched.bit_offset
        elif matched.bit_offset != chosen_offset:
            raise BTFError(f"field offset ambiguity: {matched.bit_offset} != {chosen_offset}")
        elif (result.poison, result.new) != (chosen.poison, chosen.new):
            raise BTFError(f"relocation decision ambiguity: {_decision(result)} != {_decision(chosen)}")
    return chosen if chosen is not None else _calc(kind, spec, None, described)


def _decision(result: Resolution) -> str:
    return "failure" if result.poison else f"success {result.new}"


# --- patching -------------------------------------------------------------------------------------

def poisoned() -> Insn:
    """The instruction a relocation that failed becomes: a call to an unknown helper, refused by
    the verifier with ``invalid func unknown#195896080`` only where a path reaches it."""
    return Insn(isa.CALL_OP, imm=POISON_HELPER)


_SIZE_CODES = {size: code for code, size in isa.SIZE_BYTES.items()}


class Patched(NamedTuple):
    """What patching did: libbpf's debug line for it, and whether the instruction was poisoned."""
    text: str
    poisoned: bool = False


def patch(insns: list[Insn], index: int, result: Resolution) -> Patched:
    """Patch the instruction at ``index`` (both slots of an ld_imm64) with a resolution, as
    libbpf's bpf_core_patch_insn. BTFError when the instruction is not one a relocation applies
    to or does not hold the local value."""
    insn = insns[index]
    if result.poison:
        return _poison(insns, index, result.why)
    old, new = result.orig, result.new
    if insn.cls in (isa.ALU, isa.ALU64):
        if insn.source != isa.K:
            raise BTFError(f"insn #{index} (ALU/ALU64) has a register operand, not an immediate")
        if result.validate and isa.u64(insn.imm) != old:
            raise BTFError(f"unexpected insn #{index} (ALU/ALU64) value: got {isa.u64(insn.imm)}, exp {old} -> {new}")
        insns[index] = dataclasses.replace(insn, imm=isa.s32(new))
        return Patched(f"patched insn #{index} (ALU/ALU64) imm {insn.imm} -> {new}")
    if insn.cls in (isa.LDX, isa.ST, isa.STX):
        if result.validate and insn.off != old:
            raise BTFError(f"unexpected insn #{index} (LDX/ST/STX) value: got {insn.off}, exp {old} -> {new}")
        if new > _S16_MAX:
            raise BTFError(f"insn #{index} (LDX/ST/STX) value too big: {new}")
        if result.unsafe_resize:
            return _poison(insns, index, result.why)
        opcode = insn.opcode
        if result.new_size != result.orig_size:
            size = isa.SIZE_BYTES[insn.size]
            if size != result.orig_size:
                raise BTFError(f"insn #{index} (LDX/ST/STX) unexpected mem size: got {size}, exp {result.orig_size}")
            if result.new_size not in _SIZE_CODES:
                raise BTFError(f"insn #{index} (LDX/ST/STX) invalid new mem size: {result.new_size}")
            opcode = insn.mode | _SIZE_CODES[result.new_size] | insn.cls
        insns[index] = dataclasses.replace(insn, opcode=opcode, off=new)
        sized = f", mem_sz {result.orig_size} -> {result.new_size}" if opcode != insn.opcode else ""
        return Patched(f"patched insn #{index} (LDX/ST/STX) off {insn.off} -> {new}{sized}")
    if insn.is_lddw:
        second = insns[index + 1] if index + 1 < len(insns) else None
        if insn.src != 0 or insn.off != 0 or second is None or (second.opcode, second.dst, second.src, second.off) != (
                0, 0, 0, 0):
            raise BTFError(f"insn #{index} (LDIMM64) has unexpected form")
        if result.validate and insn.imm64 != old:
            raise BTFError(f"unexpected insn #{index} (LDIMM64) value: got {insn.imm64}, exp {old} -> {new}")
        low, high = isa.s32(new), isa.s32(new >> 32)
        insns[index] = dataclasses.replace(insn, imm=low, next_imm=high)
        insns[index + 1] = dataclasses.replace(second, imm=high)  # the second slot keeps the high word too
        return Patched(f"patched insn #{index} (LDIMM64) imm64 {insn.imm64} -> {new}")
    raise BTFError(f"trying to relocate unrecognized insn #{index}, code:{insn.opcode:#x}, src:{insn.src:#x}, "
                   f"dst:{insn.dst:#x}, off:{insn.off:#x}, imm:{insn.imm:#x}")


def _poison(insns: list[Insn], index: int, why: str) -> Patched:
    if insns[index].is_lddw and index + 1 < len(insns):
        insns[index + 1] = poisoned()  # its second slot too, or the verifier would see opcode 0
    insns[index] = poisoned()
    return Patched(f"substituting insn #{index} w/ invalid insn: {why}", poisoned=True)


# --- reading a target ------------------------------------------------------------------------------

def target_file(path: str | os.PathLike) -> Target:
    """The target the BTF at ``path`` describes; parsed once per file version (a kernel's BTF takes
    seconds to parse, and tests and tools load many objects against it)."""
    label = os.fspath(path)
    try:
        stat = os.stat(label)
    except OSError as exc:
        raise BTFError(f"{label}: cannot read: {exc.strerror or exc}") from None
    return _target_file(os.path.realpath(label), label, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _target_file(path: str, label: str, mtime_ns: int, size: int) -> Target:
    return Target(read_target(label), label)


def read_target(path: str | os.PathLike) -> BTF:
    """The BTF at ``path``: a raw BTF file (such as ``/sys/kernel/btf/vmlinux``) or any ELF file
    with a ``.BTF`` section (a BPF object, a vmlinux image). BTFError if it is neither."""
    label = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BTFError(f"{label}: cannot read: {exc.strerror or exc}") from None
    if len(data) >= 2 and int.from_bytes(data[:2], "little") == BTF_MAGIC:
        return _parsed(data, label)
    if data[:4] == b"\x7fELF":
        return _parsed(_elf_btf(data, label), label)
    raise BTFError(f"{label}: neither a BTF file nor an ELF file with a .BTF section")


def _parsed(data: bytes, label: str) -> BTF:
    try:
        return parse_btf(data)
    except BTFError as exc:
        raise BTFError(f"{label}: {exc}") from None


def _elf_btf(data: bytes, label: str) -> bytes:
    from ..elf_tables import read_sections  # the ELF reader, used only for a target given as ELF

    if len(data) < 64 or data[4] != 2 or data[5] != 1:
        raise BTFError(f"{label}: only 64-bit little-endian ELF files are read for BTF")
    try:
        sections = read_sections(data, label)
    except BPFError as exc:
        raise BTFError(str(exc)) from None
    found = next((s for s in sections if s.name == ".BTF"), None)
    if found is None:
        raise BTFError(f"{label}: no .BTF section")
    return found.data()


__all__ = ["Accessor", "KIND_NAMES", "MAX_SPEC_LEN", "POISON_HELPER", "Patched", "Resolution", "Spec", "Target",
           "essential_name", "match_spec", "parse_spec", "patch", "poisoned", "read_target", "resolve",
           "target_file", "types_compatible", "types_match"]

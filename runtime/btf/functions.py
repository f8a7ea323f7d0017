"""Function pointers in typed memory: where BTF declares them, and whether a function fits one
(docs/semantics.md#indirect-calls-callx-and-function-pointers).

A function-pointer slot is an 8-byte word whose type is a pointer to a FUNC_PROTO (through
typedefs and qualifiers): ``static int (*hook)(struct xdp_md *)``, an element of an array of
them, a member of a struct. The verifier types loads of such slots, and every write into one
(a program's store, a Python assignment, the object's initial data) must name a function that
fits the slot's prototype, so that a call through the slot only ever reaches functions that were
checked with the arguments the call passes. A slot the object's data initialises with a function
(``op_t ops[2] = { twice, thrice };``) is never NULL: it may be switched to another function, not
emptied; any other slot may be NULL, and a call through it must check first.

A function fits when the kernel's ``btf_check_func_type_match`` (the test a program extension's
prototype passes against the function it replaces) accepts the pair, with its messages: as many
arguments; a return of the same kind; each argument of the same kind and size; pointer arguments
to structs of the same name. bpfjit also accepts pointers to other pointees of the same kind and
size (``__u64 *``), where the kernel knows only context pointers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from .ctext import describe
from .types import MAX_NESTING, Array, Datasec, Enum, Func, FuncProto, Kind, Ptr, Struct, Var, too_deep

if TYPE_CHECKING:
    from .index import BTF


@dataclass(frozen=True)
class FunctionPointerFacts:
    """What a loader tells the verifier about one program's function pointers in global data."""
    names: Mapping[int, str]  # start slot -> name, of each function a pointer may name
    # Map handle -> offsets of the slots its initial data sets to a function: those are never
    # NULL (nothing may store NULL there), the others may be.
    initialised: Mapping[int, frozenset[int]]


@dataclass(frozen=True)
class FunctionPointer:
    """One function-pointer slot of a value."""
    offset: int
    name: str  # as C names the slot: ``hook``, ``tracers[1]``, ``ops.on_packet``
    proto_id: int  # the FUNC_PROTO it points to


def prototype_of(btf: BTF, type_id: int) -> int | None:
    """The FUNC_PROTO a pointer type points to, or None if type_id is not a function pointer."""
    t = btf.resolved(type_id)
    if not isinstance(t, Ptr):
        return None
    target = btf.resolve(t.type)
    return target if isinstance(btf.types[target], FuncProto) else None


def function_pointers(btf: BTF, type_id: int, name: str = "") -> tuple[FunctionPointer, ...]:
    """Every function-pointer slot of a value of type_id (a DATASEC, struct, array or pointer),
    nested structs and arrays included; name: how C names the value itself."""
    found: list[FunctionPointer] = []
    _walk(btf, type_id, 0, name, found, 0)
    return tuple(found)


def _walk(btf: BTF, type_id: int, off: int, name: str, found: list[FunctionPointer], depth: int) -> None:
    if depth > MAX_NESTING:
        raise too_deep(type_id)
    t = btf.resolved(type_id)
    if isinstance(t, Ptr):
        proto = prototype_of(btf, type_id)
        if proto is not None:
            found.append(FunctionPointer(off, name, proto))
    elif isinstance(t, Struct):
        for m in t.members:
            if not m.bitfield_size and m.bit_offset % 8 == 0:
                inner = f"{name}.{m.name}" if name and m.name else m.name or name
                _walk(btf, m.type, off + m.byte_offset, inner, found, depth + 1)
    elif isinstance(t, Array) and t.nelems:
        element: list[FunctionPointer] = []
        _walk(btf, t.type, 0, "", element, depth + 1)
        size = btf.size(t.type, depth + 1)
        for i in range(t.nelems if element else 0):
            found.extend(FunctionPointer(off + i * size + e.offset, f"{name}[{i}]{_suffix(e.name)}", e.proto_id)
                         for e in element)
    elif isinstance(t, Var):
        _walk(btf, t.type, off, name or t.name, found, depth + 1)
    elif isinstance(t, Datasec):
        for v in t.vars:
            var = btf.types[v.type]
            if isinstance(var, Var):
                _walk(btf, var.type, off + v.offset, var.name, found, depth + 1)


def _suffix(name: str) -> str:
    """What follows an array element's index in a slot's name: nothing, ``.member`` or ``[j]``."""
    return "" if not name else name if name.startswith("[") else f".{name}"


def function_prototypes(btf: BTF) -> dict[str, int]:
    """Each function the BTF declares (a FUNC record), by name: its FUNC_PROTO."""
    return {t.name: t.type for t in btf.types if isinstance(t, Func)}


def prototype_mismatch(btf: BTF, function: str, proto_id: int, pointer: str, pointer_proto_id: int) -> str | None:
    """Why function (of prototype proto_id) cannot be stored in the slot named pointer, in the
    kernel's words (btf_check_func_type_match); None when it fits."""
    mine, theirs = btf.type(proto_id), btf.type(pointer_proto_id)
    if not isinstance(mine, FuncProto) or not isinstance(theirs, FuncProto):
        return f"{function}() has no BTF prototype"
    if len(mine.params) != len(theirs.params):
        return f"{function}() has {len(mine.params)} args while {pointer}() has {len(theirs.params)} args"
    ret, their_ret = btf.resolved(mine.return_type), btf.resolved(theirs.return_type)
    if _info(ret) != _info(their_ret):
        return (f"Return type {_kind(ret.kind)} of {function}() doesn't match type {_kind(their_ret.kind)} "
                f"of {pointer}()")
    for i, (arg, their_arg) in enumerate(zip(mine.params, theirs.params)):
        t, other = btf.resolved(arg.type), btf.resolved(their_arg.type)
        if _info(t) != _info(other):
            return f"arg{i} in {function}() is {_kind(t.kind)} while {pointer}() has {_kind(other.kind)}"
        size, other_size = getattr(t, "size", None), getattr(other, "size", None)
        if size != other_size:
            return f"arg{i} in {function}() has size {size} while {pointer}() has {other_size}"
        if isinstance(t, Ptr) and isinstance(other, Ptr):
            pointee, their_pointee = btf.resolve(t.type), btf.resolve(other.type)
            if not _same_pointee(btf, pointee, their_pointee):
                return (f"arg{i} {function}({describe(btf, pointee)} *) doesn't match "
                        f"{pointer}({describe(btf, their_pointee)} *)")
    return None


def _same_pointee(btf: BTF, a: int, b: int) -> bool:
    """Structs by name, as the kernel; anything else by kind and size."""
    ta, tb = btf.types[a], btf.types[b]
    if isinstance(ta, Struct) or isinstance(tb, Struct):
        return isinstance(ta, Struct) and isinstance(tb, Struct) and ta.kind == tb.kind and ta.name == tb.name
    return _info(ta) == _info(tb) and (ta.kind == 0 or btf.size(a) == btf.size(b))


def _info(t) -> tuple[int, int, bool]:
    """What the kernel compares of two types (the btf_type ``info`` word): kind, vlen, kind flag."""
    if isinstance(t, Struct):
        vlen = len(t.members)
    elif isinstance(t, Enum):
        vlen = len(t.values)
    elif isinstance(t, FuncProto):
        vlen = len(t.params)
    else:
        vlen = 0
    return int(t.kind), vlen, bool(t.kind_flag)


def _kind(kind: int) -> str:
    """The kernel's btf_type_str: the kind's name, UNKN for void."""
    return "UNKN" if kind == 0 else Kind(kind).name if kind in Kind._value2member_map_ else f"kind {kind}"

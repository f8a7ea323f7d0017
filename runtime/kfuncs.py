"""The kfuncs bpfjit knows (bpf_obj_new_impl, bpf_obj_drop_impl, and those users register from
Python) and bpf_kptr_xchg, bound to the object allocator of one loaded object
(docs/semantics.md#kptrs).

A program declares a kfunc as a ``__ksym`` extern and calls it (``call src=2``, relocated by
name). The kernel resolves the name against vmlinux BTF; bpfjit has no vmlinux, so the loader
resolves it against this table and gives each kfunc a helper id of its own, far above the
kernel's helper ids (:data:`KFUNC_BASE`): every engine then calls a kfunc exactly as it calls a
Python helper, and the verifier checks it by the prototype registered under that id.

A user kfunc (:func:`register_kfunc`) is a Python function. One that acquires returns a host
object: a value of a struct the program's BTF declares (matched by name, as the kernel matches
vmlinux types), which the program reads (not writes), may stash in a kptr field of that type,
and must release. The allocator copies it into one object while it has references, and each
acquire of the same value adds one (:meth:`~.kptrs.ObjectAllocator.adopt`). One that releases is
the release function of its struct, as a kernel type has one destructor: a program's call of it
takes one reference away, and it is called (with the object as an :class:`~.kptrs.ObjectHandle`)
once, when the last reference goes, wherever that happens (a program's call, a map element
deleted or overwritten, a map freed).
"""
from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from typing import Any, Callable

from bpfjit.errors import BPFError
from bpfjit.isa import CALL_HELPER, CALL_OP, MASK64, Insn

from . import helper_args
from .btf.types import Kind
from .helpers import Helper, Prototype
from .kptrs import ObjectAllocator, ObjectHandle

KFUNC_BASE = 0x7FFF_0000
KFUNC_LIMIT = KFUNC_BASE + 0x1_0000  # ids from KFUNC_BASE up to here are kfuncs
BPF_OBJ_NEW = KFUNC_BASE
BPF_OBJ_DROP = KFUNC_BASE + 1
MAX_KFUNC_ARGS = 5
KPTR_XCHG = 194  # a helper, not a kfunc: it has the kernel's helper id
# The kfuncs by the names programs declare them under.
KFUNC_IDS = {"bpf_obj_new_impl": BPF_OBJ_NEW, "bpf_obj_drop_impl": BPF_OBJ_DROP}

# Argument and result kinds (verifier/kptrs.py checks them): bpf_obj_new takes the program's
# BTF type id of a struct (bpf_core_type_id_local) and an ignored NULL, and gives a maybe-NULL
# acquired object; bpf_obj_drop releases one; bpf_kptr_xchg takes a referenced kptr field of a
# map value and an acquired object of the field's type (or NULL), and gives the old one.
OBJ_NEW_PROTO = Prototype("alloc_or_null", ("local_type_id", "ignored"))
OBJ_DROP_PROTO = Prototype("void", ("alloc_release", "ignored"))
KPTR_XCHG_PROTO = Prototype("kptr_xchg_or_null", ("kptr_field", "kptr_release_or_null"))


@dataclass(frozen=True)
class UserKfunc:
    """A kfunc registered from Python: its helper id, function and how it treats references."""
    id: int
    name: str
    fn: Callable[..., Any]
    nargs: int
    acquire: bool
    release: bool
    struct: str | None  # the host objects' struct (acquire: the result's; release: the argument's)

    @property
    def proto(self) -> Prototype:
        if self.acquire:
            return Prototype("host_or_null", ("integer",) * self.nargs, self.struct)
        if self.release:
            return Prototype("void", ("host_release",) + ("integer",) * (self.nargs - 1), self.struct)
        return Prototype("integer", ("integer",) * self.nargs)


# User kfuncs by name; an id, once given to a name, stays with it.
_user_kfuncs: dict[str, UserKfunc] = {}
_registering = threading.Lock()


def register_kfunc(name: str, fn: Callable[..., Any], acquire: bool = False, release: bool = False,
                   ret_type: str | None = None) -> UserKfunc:
    """Make fn a kfunc that objects loaded from now on may declare as ``extern ... name(...)
    __ksym`` and call with up to five arguments (fn takes as many).

    acquire: fn returns a host object for the struct `ret_type` (a dict of its fields or its
    bytes), or None for NULL; the program gets a new reference it must release. release: the
    release function of the struct `ret_type` (one per struct): fn takes the object alone, as an
    ObjectHandle, when its last reference goes. Otherwise fn takes and returns integers."""
    if not name.isidentifier():
        raise BPFError(f"register_kfunc: {name!r} is not a C identifier")
    if name in KFUNC_IDS:
        raise BPFError(f"register_kfunc: {name} is one of bpfjit's own kfuncs")
    if acquire and release:
        raise BPFError(f"register_kfunc: {name} cannot both acquire and release")
    if acquire and not ret_type:
        raise BPFError(f"register_kfunc: {name} acquires: give the struct it returns (ret_type=)")
    if release and not ret_type:
        raise BPFError(f"register_kfunc: {name} releases: give the struct it releases (ret_type=)")
    try:
        nargs = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        raise BPFError(f"register_kfunc: {name}: cannot read the parameters of {fn!r}") from None
    if nargs > MAX_KFUNC_ARGS or (release and nargs != 1):
        raise BPFError(f"register_kfunc: {name} takes {nargs} arguments: a kfunc takes at most "
                       f"{MAX_KFUNC_ARGS}, a release kfunc the object alone")
    with _registering:
        other = _release_function(ret_type) if release else None
        if other is not None and other.name != name:
            raise BPFError(f"register_kfunc: struct {ret_type} already has a release kfunc, {other.name}")
        known = _user_kfuncs.get(name)
        number = known.id if known else BPF_OBJ_DROP + 1 + len(_user_kfuncs)
        if number >= KFUNC_LIMIT:
            raise BPFError(f"register_kfunc: more than {KFUNC_LIMIT - KFUNC_BASE} kfuncs")
        kfunc = _user_kfuncs[name] = UserKfunc(number, name, fn, nargs, acquire, release, ret_type)
    return kfunc


def _release_function(struct: str | None) -> UserKfunc | None:
    """The user kfunc that releases the host objects of `struct`, if one is registered."""
    return next((k for k in _user_kfuncs.values() if k.release and k.struct == struct), None)


def is_kfunc_call(insn: Insn) -> bool:
    """Whether insn is a call the loader made of a call of a ``__ksym`` extern."""
    return insn.opcode == CALL_OP and insn.src == CALL_HELPER and KFUNC_BASE <= insn.imm < KFUNC_LIMIT


def kfunc_id(name: str) -> int | None:
    """The helper id the loader gives a call to the extern `name`, or None if no kfunc has it."""
    user = _user_kfuncs.get(name)
    return KFUNC_IDS.get(name, user.id if user else None)


def known_kfuncs() -> list[str]:
    """The names of every kfunc a program may call now."""
    return sorted([*KFUNC_IDS, *_user_kfuncs])


def object_helpers(allocator: ObjectAllocator, btf: Any) -> list[Helper]:
    """bpf_obj_new_impl, bpf_obj_drop_impl and bpf_kptr_xchg for the programs of one object:
    objects come from its allocator, sized by its BTF."""

    def obj_new(type_id: int, meta: int, _r3: int, _r4: int, _r5: int) -> int:
        return allocator.allocate(btf.size(type_id), type_id)

    def obj_drop(pointer: int, meta: int, _r3: int, _r4: int, _r5: int) -> int:
        allocator.release(pointer)
        return 0

    def kptr_xchg(field: int, new: int, _r3: int, _r4: int, _r5: int) -> int:
        helper_args.check(field, 8, 1, write=True)  # an unverified program's may point anywhere
        return allocator.exchange(field, new)

    return [Helper(BPF_OBJ_NEW, "obj_new_impl", obj_new, OBJ_NEW_PROTO),
            Helper(BPF_OBJ_DROP, "obj_drop_impl", obj_drop, OBJ_DROP_PROTO),
            Helper(KPTR_XCHG, "kptr_xchg", kptr_xchg, KPTR_XCHG_PROTO),
            *(_user_helper(kfunc, allocator, btf) for kfunc in list(_user_kfuncs.values()))]


def _user_helper(kfunc: UserKfunc, allocator: ObjectAllocator, btf: Any) -> Helper:
    """A user kfunc as one object's helper: host objects in its allocator, typed by its BTF."""
    if kfunc.acquire:
        releaser = _release_function(kfunc.struct)

        def call(*args: int) -> int:
            value = kfunc.fn(*args[:kfunc.nargs])
            if value is None:
                return 0
            type_id = btf.find(kfunc.struct, Kind.STRUCT)

            def encode() -> bytes:
                data = bytes(value) if isinstance(value, (bytes, bytearray)) else btf.encode_value(type_id, value)
                size = btf.size(type_id)
                if len(data) != size:
                    raise BPFError(f"{kfunc.name} returned {len(data)} bytes for struct {kfunc.struct} "
                                   f"({size} bytes)")
                return data

            def on_free(address: int) -> None:
                releaser.fn(ObjectHandle(address, type_id, allocator, btf))

            return allocator.adopt(value, type_id, encode, on_free if releaser is not None else None)
    elif kfunc.release:
        def call(*args: int) -> int:
            allocator.release(args[0])  # the release function runs if this was the last reference
            return 0
    else:
        def call(*args: int) -> int:
            return int(kfunc.fn(*args[:kfunc.nargs])) & MASK64
    return Helper(kfunc.id, kfunc.name, call, kfunc.proto)

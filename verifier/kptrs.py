"""kptrs: the kptr fields of map values, the objects of bpf_obj_new, and bpf_kptr_xchg
(docs/semantics.md#kptrs).

The kernel's rules and messages (``check_map_access``, ``check_map_kptr_access``,
``map_kptr_match_type``, ``process_kptr_func``, ``check_ptr_to_btf_access`` and the kfunc
argument checks of bpf_obj_new / bpf_obj_drop):

* an access that touches a kptr field must be a direct ``BPF_MEM`` access of 8 bytes at the
  field's constant offset; helpers may not read or write it;
* a load gives a maybe-NULL untrusted PTR_TO_BTF_ID of the field's struct (read only);
* a store goes only into an untrusted field, of NULL or an untrusted pointer of the same struct
  at offset 0; a referenced field changes only through bpf_kptr_xchg;
* bpf_obj_new takes a constant BTF type id of a struct of the program's own BTF and gives a
  maybe-NULL new reference to a zeroed object of it (read and written like memory of the
  struct's size); bpf_obj_drop releases one; bpf_kptr_xchg moves a reference into a
  referenced field and gives back the one it held as a new reference (maybe NULL).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bpfjit.runtime.btf import Kind

from .log import Rejected
from .scalar import Scalar
from .state import NOT_INIT, ObjType, Reg, RegType, scalar

if TYPE_CHECKING:
    from .memory import Access

KPTR_SIZE = 8
# The argument kinds of runtime/kfuncs.py's prototypes that check_arg checks.
ARG_KINDS = ("ignored", "kptr_field", "local_type_id", "kptr_release_or_null", "alloc_release", "host_release")


@dataclass
class KptrMeta:
    """What kptr arguments tell the call's result: the field bpf_kptr_xchg exchanges, the
    struct bpf_obj_new makes."""
    field: Any = None  # runtime.kptrs.KptrSlot
    new_type: ObjType | None = None
    struct: str | None = None  # a user kfunc's host objects' struct (Prototype.struct)


# --- map values -------------------------------------------------------------------------------

def map_field_access(reg: Reg, access: "Access", off: int, value: Reg | None, new_id) -> Reg | None:
    """An access through a map-value pointer that may touch a kptr field: what a load gives
    (None: the access touches no kptr field and is an ordinary one)."""
    var = reg.value
    low, high = var.smin + off, var.umax + off + access.size
    touched = [field for field in reg.map.kptrs if low < field.offset + KPTR_SIZE and field.offset < high]
    if not touched:
        return None
    field = touched[0]
    if access.helper:
        raise Rejected("kptr cannot be accessed indirectly by helper")
    if not var.is_const:
        raise Rejected("kptr access cannot have variable offset")
    if low != field.offset:
        raise Rejected(f"kptr access misaligned expected={field.offset} off={low}")
    if access.size != KPTR_SIZE:
        raise Rejected("kptr access size must be BPF_DW")
    if access.kind == "atomic" or access.signed:
        raise Rejected("kptr in map can only be accessed using BPF_MEM instruction mode")
    if not access.write:
        obj = ObjType(field.type_id, field.type_name, field.size, untrusted=True)
        return Reg(RegType.PTR_TO_BTF_ID, maybe_null=True, id=new_id(), obj=obj)
    if field.referenced:
        raise Rejected("store to referenced kptr disallowed")
    if access.kind == "st":
        if not value.is_null:
            raise Rejected(f"BPF_ST imm must be 0 when storing to kptr at off={field.offset}")
    elif not value.is_null:
        _match_type(value, access.value_regno, field, allow_untrusted=True)
    return NOT_INIT


def _match_type(reg: Reg, regno: int, field: Any, allow_untrusted: bool) -> None:
    """map_kptr_match_type: reg must point at offset 0 to a struct of the field's type; an
    untrusted field takes untrusted pointers (and no owned object), a referenced field owned
    objects and host objects."""
    fits = reg.type == RegType.PTR_TO_BTF_ID and reg.obj is not None and reg.off == 0 \
        and reg.value.is_const and reg.value.const_value == 0 and reg.obj.type_id == field.type_id \
        and reg.obj.untrusted == allow_untrusted
    if not fits:
        name = reg.obj.name if reg.obj is not None else ""
        raise Rejected(f"invalid kptr access, R{regno} type={reg.type_name()}{name} expected=ptr_{field.type_name}")


# --- objects ----------------------------------------------------------------------------------

def object_access(reg: Reg, access: "Access") -> Reg:
    """A load or store through a PTR_TO_BTF_ID: inside the struct, at a constant offset; only an
    object the program owns may be written. A load gives a number."""
    obj = reg.obj
    off = reg.off + access.off
    if not reg.value.is_const:
        raise Rejected(f"R{access.regno} is ptr_{obj.name} invalid variable offset: off={off}, "
                       f"var_off={reg.value.var_off}")
    off += reg.value.const_value
    if off < 0:
        raise Rejected(f"R{access.regno} is ptr_{obj.name} invalid negative access: off={off}")
    if access.write and not obj.alloc:
        raise Rejected("only read is supported")
    if off + access.size > obj.size:
        raise Rejected(f"access beyond struct {obj.name} at off {off} size {access.size}")
    if access.write:
        return NOT_INIT
    return scalar(Scalar.from_load(access.size, access.signed))


# --- calls ------------------------------------------------------------------------------------

def check_arg(kind: str, reg: Reg, regno: int, meta: KptrMeta, btf: Any, demand_precise) -> int:
    """Check a kptr argument; return the reference it releases (0: none)."""
    if kind == "ignored":
        return 0
    if kind == "kptr_field":
        _field_arg(reg, regno, meta)
        return 0
    if kind == "local_type_id":
        demand_precise([regno])
        meta.new_type = _local_type(reg, regno, btf)
        return 0
    if kind == "kptr_release_or_null":
        if reg.is_null:
            return 0
        if reg.type != RegType.PTR_TO_BTF_ID or reg.maybe_null or reg.obj is None or reg.obj.untrusted:
            raise Rejected(f"R{regno} type={reg.type_name()} expected=ptr_")
        _released(reg, regno)
        _match_type(reg, regno, meta.field, allow_untrusted=False)
        return reg.ref_obj_id
    if kind == "host_release":
        obj = reg.obj
        if reg.type != RegType.PTR_TO_BTF_ID or reg.maybe_null or obj is None or obj.untrusted or obj.alloc \
                or (meta.struct is not None and obj.name != meta.struct):
            name = obj.name if obj is not None else ""
            raise Rejected(f"R{regno} type={reg.type_name()}{name} expected=ptr_{meta.struct or ''}")
        _released(reg, regno)
        return reg.ref_obj_id
    if kind == "alloc_release":
        if reg.type != RegType.PTR_TO_BTF_ID or reg.maybe_null or reg.obj is None or not reg.obj.alloc:
            raise Rejected(f"arg#{regno - 1} expected pointer to allocated object")
        _released(reg, regno)
        return reg.ref_obj_id
    raise Rejected(f"unsupported arg type {kind}")


def _released(reg: Reg, regno: int) -> None:
    if not reg.ref_obj_id:
        raise Rejected(f"R{regno} must be referenced when passed to release function")
    if reg.off or not (reg.value.is_const and reg.value.const_value == 0):
        raise Rejected(f"R{regno} must have zero offset when passed to release func")


def _field_arg(reg: Reg, regno: int, meta: KptrMeta) -> None:
    """bpf_kptr_xchg's first argument: a map-value pointer at a referenced kptr field."""
    if reg.type != RegType.PTR_TO_MAP_VALUE or reg.maybe_null:
        raise Rejected(f"R{regno} type={reg.type_name()} expected=map_value")
    if not reg.value.is_const:
        raise Rejected(f"R{regno} doesn't have constant offset. kptr has to be at the constant offset")
    if not reg.map.kptrs:
        raise Rejected(f"map '{reg.map.name}' has no valid kptr")
    offset = reg.off + reg.value.const_value
    field = reg.map.kptr_at(offset)
    if field is None:
        raise Rejected(f"off={offset} doesn't point to kptr")
    if not field.referenced:
        raise Rejected(f"off={offset} kptr isn't referenced kptr")
    meta.field = field


def _local_type(reg: Reg, regno: int, btf: Any) -> ObjType:
    """bpf_obj_new's type: a constant id of a struct of the program's BTF."""
    if btf is None:
        raise Rejected("bpf_obj_new requires prog BTF")
    if not (reg.is_scalar and reg.value.is_const):
        raise Rejected(f"R{regno} must be a known constant")
    type_id = reg.value.const_value
    target = btf.types[type_id] if 0 < type_id < len(btf.types) else None
    if target is None or target.kind != Kind.STRUCT:
        raise Rejected("bpf_obj_new type ID argument must be of a struct")
    return object_type(btf, type_id)


def object_type(btf: Any, type_id: int) -> ObjType:
    """An object of the program's own struct type_id, owned by the program."""
    return ObjType(type_id, btf.types[type_id].name, btf.size(type_id), alloc=True)


def result(ret: str, meta: KptrMeta, btf: Any, host_structs: frozenset[str]) -> ObjType | None:
    """The struct a kptr call's result points to (None: the call gives no object). An object
    out of a kptr field is a host object if its struct is one a user kfunc acquires (it is then
    released by that kfunc's partner), else one of bpf_obj_new (released by bpf_obj_drop)."""
    if ret == "alloc_or_null":
        return meta.new_type
    if ret == "kptr_xchg_or_null":
        if meta.field.type_name in host_structs:
            return _host_type(btf, meta.field.type_name)
        return object_type(btf, meta.field.type_id)
    if ret == "host_or_null":
        return _host_type(btf, meta.struct)
    return None


def _host_type(btf: Any, struct: str) -> ObjType:
    """A user kfunc's host object: the program's struct of that name (read only)."""
    type_id = btf.find(struct, Kind.STRUCT) if btf is not None else None
    if type_id is None:
        raise Rejected(f"the kfunc returns struct {struct}, which the program's BTF does not define")
    return ObjType(type_id, struct, btf.size(type_id))

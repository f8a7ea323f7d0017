"""Special fields of a map value: the byte offsets of the kernel structs the verifier and the map
code treat specially (``struct bpf_spin_lock``, ``struct bpf_timer``, kptr-tagged pointers,
list/rbtree roots and nodes, ...), found by walking the value's BTF as the kernel's
``btf_parse_fields`` does (docs/semantics.md#spin-locks, docs/semantics.md#kptrs).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bpfjit.errors import BTFError

from .types import MAX_NESTING, Array, Datasec, Kind, Modifier, Ptr, Struct, Var, too_deep

if TYPE_CHECKING:
    from .index import BTF

# A map value with more special fields than this is rejected (the kernel's limit is far lower).
MAX_SPECIAL_FIELDS = 4096

# kptr type tags and the other kernel structs the verifier treats specially.
KPTR_TAGS = ("kptr", "kptr_ref", "kptr_untrusted", "percpu_kptr", "uptr")
_ONE_PER_VALUE = {"bpf_spin_lock": "spin_lock", "bpf_timer": "timer"}
_OTHER_SPECIAL = ("bpf_res_spin_lock", "bpf_wq", "bpf_list_head", "bpf_list_node", "bpf_rb_root",
                  "bpf_rb_node", "bpf_refcount", "bpf_task_work")


@dataclass(frozen=True)
class KptrField:
    offset: int
    tag: str  # "kptr" (or its old name "kptr_ref"), "kptr_untrusted", "percpu_kptr" or "uptr"
    type_id: int  # the pointee after skipping modifiers


@dataclass(frozen=True)
class SpecialFields:
    """Byte offsets of the fields of a map value the kernel treats specially."""

    spin_lock: int | None = None
    timer: int | None = None
    kptrs: tuple[KptrField, ...] = ()
    others: tuple[tuple[int, str], ...] = ()  # (offset, struct name): wq, list/rb roots, ...

    @property
    def empty(self) -> bool:
        return self.spin_lock is None and self.timer is None and not self.kptrs and not self.others


def find_special_fields(btf: BTF, type_id: int) -> SpecialFields:
    """Offsets of ``struct bpf_spin_lock``, ``struct bpf_timer``, kptr-tagged pointers and the
    other kernel-special structs in a map value type (struct, union, array, DATASEC), nested
    structs and arrays included. A second spin lock or timer is an error, as in the kernel."""
    found = _Found(type_id)
    _walk(btf, type_id, 0, found, 0)
    return SpecialFields(found.unique.get("spin_lock"), found.unique.get("timer"),
                         tuple(found.kptrs), tuple(found.others))


@dataclass
class _Found:
    """What the walk has found so far; ``root`` (the value's type id) names it in errors."""

    root: int
    unique: dict[str, int] = field(default_factory=dict)  # "spin_lock"/"timer" -> offset
    kptrs: list[KptrField] = field(default_factory=list)
    others: list[tuple[int, str]] = field(default_factory=list)

    def count(self) -> int:
        return len(self.kptrs) + len(self.others)

    def add_unique(self, slot: str, offset: int) -> None:
        if slot in self.unique:
            struct_name = next(name for name, s in _ONE_PER_VALUE.items() if s == slot)
            raise BTFError(f"BTF: type id {self.root}: more than one 'struct {struct_name}' (at "
                           f"offsets {self.unique[slot]} and {offset})")
        self.unique[slot] = offset

    def add_shifted(self, other: _Found, base: int) -> None:
        """Everything ``other`` found (inside an array element), ``base`` bytes further on."""
        for slot, offset in other.unique.items():
            self.add_unique(slot, base + offset)
        self.kptrs.extend(replace(k, offset=base + k.offset) for k in other.kptrs)
        self.others.extend((base + o, n) for o, n in other.others)


def _walk(btf: BTF, type_id: int, off: int, found: _Found, depth: int) -> None:
    if depth > MAX_NESTING:
        raise too_deep(type_id)
    if found.count() > MAX_SPECIAL_FIELDS:
        raise BTFError(f"BTF: type id {found.root}: more than {MAX_SPECIAL_FIELDS} special fields")
    tid = btf.resolve(type_id)
    t = btf.types[tid]
    if isinstance(t, Struct):
        if t.kind == Kind.STRUCT and t.name in _ONE_PER_VALUE:
            found.add_unique(_ONE_PER_VALUE[t.name], off)
        elif t.kind == Kind.STRUCT and t.name in _OTHER_SPECIAL:
            found.others.append((off, t.name))
        else:
            for m in t.members:
                if not m.bitfield_size:
                    _walk(btf, m.type, off + m.byte_offset, found, depth + 1)
    elif isinstance(t, Array) and t.nelems:
        element = _Found(found.root)
        _walk(btf, t.type, 0, element, depth + 1)
        if not element.unique and not element.count():
            return
        esize = btf.size(t.type, depth + 1)
        if element.count() * t.nelems > MAX_SPECIAL_FIELDS:
            raise BTFError(f"BTF: type id {found.root}: more than {MAX_SPECIAL_FIELDS} special "
                           f"fields (array type id {tid} of {t.nelems})")
        for i in range(t.nelems):
            found.add_shifted(element, off + i * esize)
    elif isinstance(t, Ptr):
        target = btf.type(t.type)
        if isinstance(target, Modifier) and target.kind == Kind.TYPE_TAG \
                and target.name in KPTR_TAGS:
            found.kptrs.append(KptrField(off, target.name, btf.resolve(target.type)))
    elif isinstance(t, Datasec):
        for v in t.vars:
            var = btf.types[v.type]
            if isinstance(var, Var):
                _walk(btf, var.type, off + v.offset, found, depth + 1)
    elif isinstance(t, Var):
        _walk(btf, t.type, off, found, depth + 1)

"""What the verifier knows at one point of one path: registers, stack slots, frames, references.

This is the kernel's ``bpf_reg_state`` / ``bpf_stack_state`` / ``bpf_func_state`` /
``bpf_verifier_state`` split. A :class:`Reg` is immutable (a type plus, for scalars, the value's
bounds and, for pointers, a fixed offset and the bounds of a variable one), so copying a state at
a branch copies lists of references, never registers. Frames and states are mutable and are
copied explicitly where a path forks.

The text forms (``R1=ctx() R10=fp0 fp-8=mmmmmmmm``) are the kernel log's, because the kernel's
selftests and its users read them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

from bpfjit import isa

from .facts import SLOT_SIZE
from .length import LengthBound
from .links import Link
from .log import Rejected
from .scalar import Scalar, alu, format_scalar

STACK_SLOTS = isa.STACK_SIZE // SLOT_SIZE
CALLER_SAVED = (0, 1, 2, 3, 4, 5)
ARG_REGS = (1, 2, 3, 4, 5)


class _Named:
    """A named constant (a register type, a stack byte's kind): what an enum.Enum member gives,
    without its cost. Python 3.11 looks every Enum member up through the metaclass's __getattr__
    hook (about 120 ns, six times a plain class attribute), and the verifier asks for types and
    kinds millions of times per program. A subclass lists its constants as an Enum does, NAME =
    "value"; each becomes an instance. Constants compare by identity."""
    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if name.isupper() and isinstance(value, str):
                setattr(cls, name, cls(name, value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def __reduce__(self):  # a copy (copy.deepcopy, pickle) is the constant itself
        return getattr, (type(self), self.name)


class RegType(_Named):
    """Register types, named as the kernel's log names them (``reg_type_str``)."""
    __slots__ = ()
    NOT_INIT = "?"
    SCALAR = "scalar"
    PTR_TO_CTX = "ctx"
    CONST_PTR_TO_MAP = "map_ptr"
    PTR_TO_MAP_VALUE = "map_value"
    PTR_TO_MAP_KEY = "map_key"
    PTR_TO_STACK = "fp"
    PTR_TO_PACKET_META = "pkt_meta"
    PTR_TO_PACKET = "pkt"
    PTR_TO_PACKET_END = "pkt_end"
    PTR_TO_MEM = "mem"
    PTR_TO_FUNC = "func"
    PTR_TO_SOCK_COMMON = "sock_common"
    PTR_TO_SOCKET = "sock"
    PTR_TO_TCP_SOCK = "tcp_sock"
    PTR_TO_XDP_SOCK = "xdp_sock"
    PTR_TO_BTF_ID = "ptr_"
    PTR_TO_INSN = "insn"  # an entry of a jump table: only gotox uses it (verifier/jumps.py)


_SCALAR, _NOT_INIT, _PTR_TO_MEM = RegType.SCALAR, RegType.NOT_INIT, RegType.PTR_TO_MEM


PACKET_TYPES = (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META)


@dataclass(frozen=True)
class FuncSlot:
    """A function-pointer slot of a map value (``static int (*hook)(struct xdp_md *)``).

    Only functions whose BTF prototype fits the slot's may be stored there (every write is
    checked: the program's stores here, Python's and the object's initial data at load), so a
    load of it is NULL or one of `targets`, and a call through it is checked against each."""
    offset: int
    name: str  # as C names it: hook, tracers[1]
    targets: frozenset[int]  # start slots of the program's functions that fit the prototype
    # Why each other address-taken function of the program does not fit: (start slot, message).
    misfits: tuple[tuple[int, str], ...] = ()
    nullable: bool = True  # False: the object's data sets it to a function, and NULL is refused

    def misfit(self, start: int) -> str | None:
        """Why the function at start may not be stored here (None if it may)."""
        if start in self.targets:
            return None
        return dict(self.misfits).get(start, f"the function at insn {start} has no BTF prototype")


@dataclass(frozen=True)
class ObjType:
    """What a PTR_TO_BTF_ID points to: a struct of the program's BTF (its type id, name and
    size), and how the program holds it: an object it owns (``alloc``: from bpf_obj_new or
    out of a kptr field by bpf_kptr_xchg; readable and writable) or an untrusted pointer (a
    load of a kptr field; read only)."""
    type_id: int
    name: str
    size: int
    untrusted: bool = False
    alloc: bool = False


@dataclass(frozen=True)
class MapInfo:
    """What the verifier needs of a map: the kernel's ``bpf_map`` as a program sees it."""
    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    read_only: bool  # BPF_F_RDONLY_PROG (.rodata is): the program may not write values
    lock_offset: int | None = None  # where the value's struct bpf_spin_lock is
    inner: "MapInfo | None" = None  # map-in-map: the inner map's template
    # Reads the value bytes [off, off + size) of a frozen read-only map (None: not frozen).
    frozen_read: Any = field(default=None, compare=False)
    handle: int = 0  # the runtime's identity of the map
    write_only: bool = False  # BPF_F_WRONLY_PROG: the program may not read values
    # The value's function-pointer slots (BTF types them; global data has them): what a load of
    # one gives and what a store into one must be.
    func_slots: tuple[FuncSlot, ...] = ()
    # The value's kptr fields (runtime.kptrs.KptrSlot): what loads of them give, what may be
    # stored there, and which bpf_kptr_xchg may exchange.
    kptrs: tuple = ()

    def kptr_at(self, offset: int):
        """The kptr field that starts at offset, if any."""
        return next((slot for slot in self.kptrs if slot.offset == offset), None)

    def func_slot(self, offset: int) -> FuncSlot | None:
        """The function-pointer slot that starts at offset, if any."""
        return next((slot for slot in self.func_slots if slot.offset == offset), None)

    def __str__(self) -> str:
        return f"map={self.name},ks={self.key_size},vs={self.value_size}"


@dataclass(frozen=True)
class Reg:
    """One register. ``value`` is the scalar's value, or a pointer's variable offset."""
    type: RegType
    value: Scalar = field(default_factory=lambda: Scalar.const(0))  # a pointer starts at its base
    off: int = 0  # a pointer's fixed offset
    maybe_null: bool = False
    map: MapInfo | None = None
    id: int = 0  # shared by copies: a NULL check or a packet range check refines them all
    ref_obj_id: int = 0  # an acquired reference this pointer is (ring-buffer records, sockets)
    range: int = 0  # packet pointers: bytes [0, range) past the pointer are in the packet; a raw
    # program's memory (PTR_TO_MEM, mem_size < 0): bytes [0, range) from its start exist
    mem_size: int = 0  # PTR_TO_MEM: the size of the memory
    frameno: int = 0  # PTR_TO_STACK: the frame whose stack it points into
    subprog: int = 0  # PTR_TO_FUNC: the start slot of the function (-1: one of `targets`)
    # PTR_TO_FUNC loaded from a function-pointer slot: the functions it may be (FuncSlot.targets).
    targets: frozenset[int] = frozenset()
    rdonly: bool = False
    ringbuf: bool = False
    obj: ObjType | None = None  # PTR_TO_BTF_ID: the struct it points to
    # A raw program's scalar, or variable offset of a pointer into its memory: at most this,
    # relative to the run's length (verifier/length.py). None: no more than the bounds say.
    length_bound: LengthBound | None = None
    # A raw program's scalar or pointer that moves in step with others (verifier/links.py).
    link: Link | None = None

    @property
    def is_pointer(self) -> bool:
        return self.type is not _SCALAR and self.type is not _NOT_INIT

    @property
    def is_scalar(self) -> bool:
        return self.type is _SCALAR

    @property
    def is_raw(self) -> bool:
        """A pointer into a raw program's memory (r1), whose size only the run knows."""
        return self.type is _PTR_TO_MEM and self.mem_size < 0

    @property
    def is_null(self) -> bool:
        return self.is_scalar and self.value.is_const and self.value.const_value == 0

    def evolve(self, **changes) -> "Reg":
        """This register with some fields changed: dataclasses.replace's result, built without
        its per-call introspection (registers are rebuilt on every refinement)."""
        new = object.__new__(Reg)
        fields_ = new.__dict__
        fields_.update(self.__dict__)
        fields_.update(changes)
        return new

    @property
    def callees(self) -> frozenset[int]:
        """PTR_TO_FUNC: the start slots of the functions a call through it may reach."""
        return self.targets if self.subprog < 0 else frozenset({self.subprog})

    def type_name(self) -> str:
        """The kernel's name for the type, with its prefixes and ``_or_null`` suffix."""
        obj = self.obj
        prefix = ("rdonly_" if self.rdonly else "") + ("alloc_" if obj is not None and obj.alloc else "") + (
            "ringbuf_" if self.ringbuf else "") + ("untrusted_" if obj is not None and obj.untrusted else "")
        if self.type == RegType.PTR_TO_BTF_ID and self.maybe_null:
            return prefix + "ptr_or_null_"  # the kernel's one exception to its "_or_null" suffix
        return prefix + self.type.value + ("_or_null" if self.maybe_null else "")


NOT_INIT = Reg(RegType.NOT_INIT)
_UNKNOWN = Reg(RegType.SCALAR, Scalar.unknown())
# The id of a raw program's length (r2 at entry) and its copies: a branch that bounds it from
# below proves that many bytes of the raw memory (verifier/jumps.py). Negative, so no id the
# verifier hands out (from 1 up) is ever equal to it.
RAW_LENGTH_ID = -1


def offset_by(value: Scalar, off: int) -> Scalar:
    """A pointer's variable offset with a fixed offset folded in (its whole offset)."""
    return alu(isa.Insn(isa.ALU64 | isa.ADD | isa.K, 0, 0, 0, off), value) if off else value


def require_init(reg: Reg, regno: int) -> None:
    """A register must have been written before it is read (the kernel's check_reg_arg)."""
    if reg.type == RegType.NOT_INIT:
        raise Rejected(f"R{regno} !read_ok")


def scalar(value: Scalar | None = None) -> Reg:
    """A scalar register: a copy of one template, since building a frozen dataclass field by
    field costs several times as much, and the verifier makes one on most instructions."""
    return _UNKNOWN if value is None else _UNKNOWN.evolve(value=value)


def const(value: int) -> Reg:
    return _constant(value & isa.MASK64)


@functools.lru_cache(maxsize=4096)  # registers are immutable, and programs use few distinct constants
def _constant(value: int) -> Reg:
    return Reg(RegType.SCALAR, Scalar.const(value))


def format_reg(reg: Reg) -> str:
    """A register's state as the kernel's log prints it after ``R1=``."""
    if reg.type == RegType.SCALAR:
        return format_scalar(reg.value)
    if reg.type == RegType.PTR_TO_STACK and reg.value.is_const and reg.value.const_value == 0:
        return f"fp{reg.off}"
    parts = []
    if reg.id:
        parts.append(f"id={reg.id}")
    if reg.ref_obj_id:
        parts.append(f"ref_obj_id={reg.ref_obj_id}")
    if reg.type in (RegType.PTR_TO_MAP_VALUE, RegType.CONST_PTR_TO_MAP, RegType.PTR_TO_MAP_KEY,
                    RegType.PTR_TO_INSN) and reg.map:
        parts.append(str(reg.map))
    if reg.off:
        parts.append(f"off={reg.off}")
    if reg.type in PACKET_TYPES:
        parts.append(f"r={reg.range}")
    if reg.type == RegType.PTR_TO_MEM:
        parts.append(f"sz={reg.mem_size}")
    if not (reg.value.is_const and reg.value.const_value == 0):
        inner = format_scalar(reg.value)
        parts.append(inner[len("scalar("):-1] if inner.startswith("scalar(") else f"imm={inner}")
    name = reg.obj.name if reg.obj is not None else ""
    return f"{reg.type_name()}{name}({','.join(p for p in parts if p)})"


class SlotKind(_Named):
    """What one byte of the stack holds (the kernel's STACK_INVALID / MISC / ZERO / SPILL)."""
    __slots__ = ()
    INVALID = "?"
    MISC = "m"
    ZERO = "0"
    SPILL = "r"


_ALL_SPILL = (SlotKind.SPILL,) * SLOT_SIZE


@dataclass(frozen=True)
class Slot:
    """One 8-byte stack slot: a kind per byte, and the register spilled there, if any."""
    kinds: tuple[SlotKind, ...]  # byte 0 is the slot's lowest address
    spilled: Reg | None = None
    # A whole register spilled here (all eight bytes): computed once, asked at every comparison.
    is_spill: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_spill", self.spilled is not None and self.kinds == _ALL_SPILL)

    def text(self) -> str:
        if self.is_spill:
            return format_reg(self.spilled)
        return "".join(k.value for k in reversed(self.kinds))


EMPTY_SLOT = Slot((SlotKind.INVALID,) * SLOT_SIZE)


def spill_slot(reg: Reg) -> Slot:
    return Slot((SlotKind.SPILL,) * SLOT_SIZE, reg)


@dataclass
class Frame:
    """One function's registers and stack on the current path."""
    regs: list[Reg]
    stack: dict[int, Slot]  # slot number k covers [fp - 8(k+1), fp - 8k)
    frameno: int
    subprog: int  # start slot of the function
    callsite: int = -1  # slot of the call that made this frame (-1 for the main frame)
    # A callback's frame (bpf_loop...): its r0 at exit must be in this range.
    callback_ret: tuple[int, int] | None = None

    def copy(self) -> "Frame":
        return Frame(list(self.regs), dict(self.stack), self.frameno, self.subprog, self.callsite,
                     self.callback_ret)

    def slot(self, number: int) -> Slot:
        return self.stack.get(number, EMPTY_SLOT)

    def text(self) -> str:
        parts = [f"R{n}={format_reg(r)}" for n, r in enumerate(self.regs) if r.type != RegType.NOT_INIT]
        for number in sorted(self.stack):
            slot = self.stack[number]
            if slot != EMPTY_SLOT:
                parts.append(f"fp{-SLOT_SIZE * (number + 1)}={slot.text()}")
        return " ".join(parts)


@dataclass
class Reference:
    """An acquired object the program must release before it exits (a ring-buffer record, a
    socket, an object of bpf_obj_new or bpf_kptr_xchg)."""
    id: int
    insn: int


@dataclass
class Lock:
    """The bpf_spin_lock the path holds: which map (or global section) and where in its value."""
    map_handle: int
    offset: int
    reg_id: int = 0  # the id of the pointer it was taken through (the kernel's active_lock.id)


@dataclass
class State:
    """Everything known on one path at one instruction."""
    frames: list[Frame]
    refs: list[Reference] = field(default_factory=list)
    lock: Lock | None = None
    parent: Any = None  # the checkpoint this path continues from (see check.Checkpoint)
    # What the path ran since that checkpoint (verifier/precision.py Steps, oldest first).
    history: list = field(default_factory=list)

    def copy(self) -> "State":
        return State([f.copy() for f in self.frames], list(self.refs),
                     replace(self.lock) if self.lock else None, self.parent, list(self.history))

    @property
    def frame(self) -> Frame:
        return self.frames[-1]

    @property
    def regs(self) -> list[Reg]:
        return self.frames[-1].regs

    def text(self) -> str:
        if len(self.frames) == 1:
            return self.frame.text()
        return " ".join(f"frame{f.frameno}: {f.text()}" for f in self.frames)

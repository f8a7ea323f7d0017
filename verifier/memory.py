"""Memory accesses: loads, stores and atomics checked per pointer type, and the stack's slots.

Each pointer type has its bounds (``check_mem_access`` and its per-type helpers in the kernel):
the stack of the frame it points into ([-512, 0), strictly aligned, with spills and fills that
keep a register's type), a map value ([0, value_size), read-only maps not writable, the spin lock
not touched), the context (only its fields, per program type), the packet (only [0, range) as
proven by a comparison with ``data_end``), sized memory (ring-buffer records), and sockets (read
only, their uapi fields: verifier/sockets.py). Anything else is not memory. Messages are the kernel's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from bpfjit import isa
from bpfjit.isa import Insn

from . import jumps, kptrs, map_ptr
from .alu import MAX_VAR_OFF
from .log import Rejected
from .scalar import Scalar, sign_extend, truncate
from .sockets import SOCKET_TYPES, readable
from .state import (PACKET_TYPES, SLOT_SIZE, NOT_INIT, Frame, FuncSlot, Reg, RegType, Slot, SlotKind, State,
                    const, require_init, scalar, spill_slot)


@dataclass(frozen=True)
class Access:
    """One access to check: through register `regno`, at insn offset `off`, of `size` bytes."""
    regno: int
    off: int
    size: int
    write: bool
    signed: bool = False  # a sign-extending load (ldsx)
    kind: str = "mem"  # the instruction: "mem" (ldx, stx), "st" (an immediate) or "atomic"
    helper: bool = False  # a helper reads or writes the memory (an argument), not an instruction
    value_regno: int = -1  # a store's source register


# The context's rules: (offset, size, write) -> what a load gives (a pointer for data, data_end,
# data_meta), or None where the program type allows no such access.
CtxField = Callable[[int, int, bool], "Reg | None"]
# The detail line the kernel prints before "min/max value is outside of the allowed memory range",
# for each kind of sized memory.
_OUT_OF_BOUNDS = {"map value": "invalid access to map value, value_size={limit} off={off} size={size}",
                  "memory": "invalid access to memory, mem_size={limit} off={off} size={size}",
                  "map key": "invalid access to map key, key_size={limit} off={off} size={size}"}


class MemoryChecker:
    """The memory rules of one program: its context and whether it may write its packet."""

    def __init__(self, ctx_field: CtxField, packet_writable: bool, new_id: Callable[[], int]):
        self.ctx_field = ctx_field
        self.new_id = new_id
        self.packet_writable = packet_writable
        # (function start, slot) of stack slots some path reads before writing (privileged
        # programs may): the JIT zeroes them on entry, as the interpreter's stack starts zeroed.
        self.uninit_reads: set[tuple[int, int]] = set()

    def note_read(self, frame: Frame, low: int, high: int) -> None:
        """A read of the frame's bytes [fp + low, fp + high): remember slots not written yet."""
        for number in range((-high) // SLOT_SIZE, (-low - 1) // SLOT_SIZE + 1):
            if SlotKind.INVALID in frame.slot(number).kinds:
                self.uninit_reads.add((frame.subprog, number))

    # --- instructions ---------------------------------------------------------------------------
    def load(self, state: State, insn: Insn) -> None:
        access = Access(insn.src, insn.off, isa.SIZE_BYTES[insn.size], False, insn.mode == isa.MEMSX)
        state.regs[insn.dst] = self.access(state, access, None)

    def store(self, state: State, insn: Insn) -> None:
        size = isa.SIZE_BYTES[insn.size]
        kind = "st" if insn.cls == isa.ST else "mem"
        if insn.cls == isa.ST:
            value = const(insn.imm)
        else:
            value = state.regs[insn.src]
            require_init(value, insn.src)
            target = state.regs[insn.dst]
            if target.type == RegType.PTR_TO_STACK and _spills_with_id(value, size):
                # The spilled copy and the register stay linked: a later comparison of either
                # refines both (the kernel's assign_scalar_id_before_mov).
                value = value.evolve(id=self.new_id())
                state.regs[insn.src] = value
        self.access(state, Access(insn.dst, insn.off, size, True, kind=kind, value_regno=insn.src), value)

    def atomic(self, state: State, insn: Insn) -> None:
        size = isa.SIZE_BYTES[insn.size]
        if insn.imm == isa.LOAD_ACQ:
            state.regs[insn.dst] = self.access(state, Access(insn.src, insn.off, size, False), None)
            return
        if insn.imm == isa.STORE_REL:
            self.store(state, replace(insn, opcode=isa.STX | isa.MEM | insn.size))
            return
        # Privileged programs may put a pointer into memory this way (the kernel's "leaks addr
        # into mem" is for unprivileged ones); it must be initialised all the same.
        require_init(state.regs[insn.src], insn.src)
        if insn.imm == isa.CMPXCHG:
            require_init(state.regs[0], 0)
        target = state.regs[insn.dst]
        if target.type not in (RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_STACK, RegType.PTR_TO_MEM) \
                or target.maybe_null:
            raise Rejected(f"BPF_ATOMIC stores into R{insn.dst} {target.type_name()} is not allowed")
        self.access(state, Access(insn.dst, insn.off, size, False, kind="atomic"), None)
        self.access(state, Access(insn.dst, insn.off, size, True, kind="atomic"), scalar())
        if insn.imm & isa.FETCH:
            fetched = scalar(Scalar.from_load(size, False))
            state.regs[0 if insn.imm == isa.CMPXCHG else insn.src] = fetched

    # --- one access -----------------------------------------------------------------------------
    def access(self, state: State, access: Access, value: Reg | None) -> Reg:
        """Check an access; for a load return what the destination register receives."""
        reg = state.regs[access.regno]
        require_init(reg, access.regno)
        if reg.maybe_null or not reg.is_pointer:
            raise Rejected(f"R{access.regno} invalid mem access '{reg.type_name()}'")
        kind = reg.type
        if kind == RegType.PTR_TO_STACK:
            return self._stack(state, reg, access, value)
        if kind == RegType.PTR_TO_MAP_VALUE:
            return self._map_value(reg, access, value)
        if kind == RegType.PTR_TO_CTX:
            return self._ctx(reg, access)
        if kind in PACKET_TYPES:
            return self._packet(reg, access)
        if kind == RegType.PTR_TO_MEM:
            if reg.is_raw:  # a raw program's memory: its size is known only at run time
                return self._loaded(access)
            if access.write and reg.rdonly:
                raise Rejected(f"R{access.regno} cannot write into {reg.type_name()}")
            self._region(reg, access, reg.mem_size, "memory")
            return self._loaded(access)
        if kind == RegType.PTR_TO_MAP_KEY:
            if access.write:
                raise Rejected(f"R{access.regno} cannot write into {reg.type_name()}")
            self._region(reg, access, reg.map.key_size, "map key")
            return self._loaded(access)
        if kind in SOCKET_TYPES:
            return self._socket(reg, access)
        if kind == RegType.PTR_TO_BTF_ID and reg.obj is not None:
            return kptrs.object_access(reg, access)
        if kind == RegType.CONST_PTR_TO_MAP:
            return map_ptr.load(reg, access.regno, reg.off + access.off, access.size, access.write)
        raise Rejected(f"R{access.regno} invalid mem access '{reg.type_name()}'")

    @staticmethod
    def _loaded(access: Access) -> Reg:
        return scalar(Scalar.from_load(access.size, access.signed)) if not access.write else NOT_INIT

    def _region(self, reg: Reg, access: Access, size: int, what: str) -> None:
        """check_mem_region_access: fixed plus variable offset inside [0, size)."""
        off = reg.off + access.off
        var = reg.value
        if var.smin < 0 and (var.smin + off < 0 or var.smin <= -(1 << 63) + 1):
            raise _negative_min(access.regno)
        # As the kernel's check_mem_region_access: the failed access (__check_mem_access's line),
        # then which end of the variable offset broke the bounds.
        if not _inside(var.smin + off, access.size, size):
            detail = _OUT_OF_BOUNDS[what].format(limit=size, off=var.smin + off, size=access.size)
            raise Rejected(f"{detail}\nR{access.regno} min value is outside of the allowed memory range")
        if var.umax >= MAX_VAR_OFF:
            raise Rejected(f"R{access.regno} unbounded memory access, make sure to bounds check any such access")
        if not _inside(var.umax + off, access.size, size):
            detail = _OUT_OF_BOUNDS[what].format(limit=size, off=var.umax + off, size=access.size)
            raise Rejected(f"{detail}\nR{access.regno} max value is outside of the allowed memory range")

    # --- map values -----------------------------------------------------------------------------
    def _map_value(self, reg: Reg, access: Access, value: Reg | None) -> Reg:
        info = reg.map
        off = reg.off + access.off
        if access.write and jumps.is_jump_table(info):
            raise Rejected("writes into insn_array not allowed")
        if access.write and info.read_only:
            raise Rejected(f"write into map forbidden, value_size={info.value_size} off={off} size={access.size}")
        if not access.write and info.write_only:
            raise Rejected(f"read from map forbidden, value_size={info.value_size} off={off} size={access.size}")
        self._region(reg, access, info.value_size, "map value")
        lock = info.lock_offset
        if lock is not None:
            low, high = reg.value.smin + off, reg.value.umax + off + access.size
            if low < lock + 4 and lock < high:
                raise Rejected("bpf_spin_lock cannot be accessed directly by load/store")
        if jumps.is_jump_table(info):
            return jumps.table_load(reg, access.off, access.size)
        if info.kptrs:
            loaded = kptrs.map_field_access(reg, access, off, value, self.new_id)
            if loaded is not None:
                return loaded
        if info.func_slots:
            if access.write:
                _check_func_slot_write(reg, access, off, value)
            else:
                loaded = self._func_slot_load(reg, access, off)
                if loaded is not None:
                    return loaded
        if not access.write and reg.value.is_const and info.frozen_read is not None:
            data = info.frozen_read(off + reg.value.const_value, access.size)
            if data is not None:
                number = int.from_bytes(data, "little")
                return const(isa.sign_extend(number, 8 * access.size) if access.signed else number)
        return self._loaded(access)

    def _func_slot_load(self, reg: Reg, access: Access, off: int) -> Reg | None:
        """A load of whole function-pointer slots (one, or any of an array's by a variable
        index): a PTR_TO_FUNC that may be any function fitting them, NULL unless the slots are
        initialised with a function or frozen non-zero. None for a load that is not of whole slots (it
        gives a scalar)."""
        slots = _slots_at(reg, access.size, off)
        if slots is None:
            return None
        info = reg.map
        frozen = [info.frozen_read(slot.offset, SLOT_SIZE) if info.frozen_read is not None else None
                  for slot in slots]
        if frozen and all(data == bytes(SLOT_SIZE) for data in frozen):
            return const(0)
        maybe_null = any(slot.nullable and (data is None or data == bytes(SLOT_SIZE))
                         for slot, data in zip(slots, frozen))
        targets = frozenset().union(*(slot.targets for slot in slots))
        return Reg(RegType.PTR_TO_FUNC, subprog=-1, targets=targets, maybe_null=maybe_null,
                   id=self.new_id() if maybe_null else 0)

    # --- the context ----------------------------------------------------------------------------
    def _ctx(self, reg: Reg, access: Access) -> Reg:
        check_ctx_base(reg, access.regno, f"off={access.off} size={access.size}")
        loaded = self.ctx_field(access.off, access.size, access.write)
        if loaded is None:
            raise Rejected(f"invalid bpf_context access off={access.off} size={access.size}")
        if access.write:
            return NOT_INIT
        if access.signed and loaded.is_pointer:
            raise Rejected(f"invalid bpf_context access off={access.off} size={access.size}")
        if loaded.is_scalar and access.signed:
            return scalar(sign_extend(loaded.value, access.size))
        return loaded

    # --- sockets --------------------------------------------------------------------------------
    def _socket(self, reg: Reg, access: Access) -> Reg:
        """check_sock_access: read-only, and only the fields of the socket view (verifier/sockets.py)."""
        if access.write:
            raise Rejected(f"R{access.regno} cannot write into {reg.type_name()}")
        if reg.value.smin < 0:
            raise _negative_min(access.regno)
        off = reg.off + access.off + (reg.value.const_value if reg.value.is_const else MAX_VAR_OFF)
        if not readable(reg.type, off, access.size):
            raise Rejected(f"R{access.regno} invalid {reg.type_name()} access off={off} size={access.size}")
        return self._loaded(access)

    # --- the packet -----------------------------------------------------------------------------
    def _packet(self, reg: Reg, access: Access) -> Reg:
        if access.write and not self.packet_writable:
            raise Rejected("cannot write into packet")
        off = reg.off + access.off
        if reg.value.smin < 0:
            raise _negative_min(access.regno)
        if not _inside(off, access.size, reg.range):
            raise Rejected(f"invalid access to packet, off={off} size={access.size}, "
                           f"R{access.regno}(id={reg.id},off={reg.off},r={reg.range})\n"
                           f"R{access.regno} offset is outside of the packet")
        return self._loaded(access)

    # --- the stack ------------------------------------------------------------------------------
    def _stack(self, state: State, reg: Reg, access: Access, value: Reg | None) -> Reg:
        frame = state.frames[reg.frameno]
        off = reg.off + access.off
        var = reg.value
        verb = " write to" if access.write else " read from"
        if var.is_const:
            start = off + isa.s64(var.const_value)
            if start % access.size:
                raise Rejected(f"misaligned stack access off {_offset_text(var)}+{reg.off}+{access.off} "
                               f"size {access.size}")
            if start < -isa.STACK_SIZE or start + access.size > 0:
                raise Rejected(f"invalid{verb} stack R{access.regno} off={off} size={access.size}")
            if access.write:
                write_fixed(frame, start, access.size, value)
                return NOT_INIT
            self.note_read(frame, start, start + access.size)
            return read_fixed(frame, start, access.size, access.signed)
        if var.smax >= MAX_VAR_OFF or var.smin <= -MAX_VAR_OFF:
            raise Rejected(f"invalid unbounded variable-offset{verb} stack R{access.regno}")
        low, high = var.smin + off, var.smax + off + access.size
        if low < -isa.STACK_SIZE or high > 0:
            raise Rejected(f"invalid variable-offset{verb} stack R{access.regno} var_off={var.var_off} "
                           f"off={off} size={access.size}")
        if access.write:  # any of these bytes may now hold data
            mark_written(frame, low, high - low)
            return NOT_INIT
        self.note_read(frame, low, high)
        return scalar(Scalar.from_load(access.size, access.signed))


def _slots_at(reg: Reg, size: int, off: int) -> list[FuncSlot] | None:
    """The function-pointer slots an access of size bytes at reg + off may be exactly (each
    offset its variable part allows is one slot's start), or None if it may be anything else."""
    var = reg.value
    if size != SLOT_SIZE or var.var_off.mask & (SLOT_SIZE - 1) or (var.var_off.value + off) % SLOT_SIZE:
        return None
    if var.umax - var.umin > reg.map.value_size:
        return None
    slots = [reg.map.func_slot(start) for start in range(var.umin + off, var.umax + off + 1, SLOT_SIZE)]
    return None if None in slots else slots


def _check_func_slot_write(reg: Reg, access: Access, off: int, value: Reg | None) -> None:
    """A write that touches a function-pointer slot: only a whole-slot store (BPF_DW, at a
    known offset) of NULL or of a function that fits the slot, as the kernel allows only
    BPF_DW stores of the right type into a kptr slot; helpers may not write one at all."""
    var = reg.value
    low, high = var.smin + off, var.umax + off + access.size
    touched = [slot for slot in reg.map.func_slots if low < slot.offset + SLOT_SIZE and slot.offset < high]
    if not touched:
        return
    slot = touched[0]
    if value is None:
        raise Rejected(f"function pointer {slot.name} cannot be accessed indirectly by helper")
    if not var.is_const:
        raise Rejected(f"function pointer {slot.name} access cannot have variable offset")
    if access.size != SLOT_SIZE:
        raise Rejected(f"function pointer {slot.name} access size must be BPF_DW")
    if low != slot.offset:
        raise Rejected(f"function pointer {slot.name} access misaligned expected={slot.offset} off={low}")
    if value.is_null and slot.nullable:
        return
    if value.is_null or value.maybe_null and not slot.nullable:
        raise Rejected(f"function pointer {slot.name} is initialised with a function: it cannot be NULL")
    if value.type != RegType.PTR_TO_FUNC:
        raise Rejected(f"invalid function pointer access, R{access.regno} type={value.type_name()} "
                       f"expected=func ({slot.name})")
    for start in sorted(value.callees):
        misfit = slot.misfit(start)
        if misfit is not None:
            raise Rejected(misfit)


def check_ctx_base(reg: Reg, regno: int, variable_detail: str) -> None:
    """A context pointer must point at the context's start (the kernel's check_ptr_off_reg, in
    its order); variable_detail ends the message about a variable offset, which the kernel
    words per caller."""
    if reg.off < 0:
        raise Rejected(f"negative offset ctx ptr R{regno} off={reg.off} disallowed")
    if reg.off:
        raise Rejected(f"dereference of modified ctx ptr R{regno} off={reg.off} disallowed")
    if not (reg.value.is_const and reg.value.const_value == 0):
        raise Rejected(f"variable ctx access var_off={reg.value.var_off} {variable_detail}")


def _offset_text(var: Scalar) -> str:
    """A variable offset in an alignment message: its value when known, else the tnum."""
    return str(isa.s64(var.const_value)) if var.is_const else str(var.var_off)


def _negative_min(regno: int) -> Rejected:
    return Rejected(f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.")


def _inside(off: int, size: int, limit: int) -> bool:
    return off >= 0 and off + size <= limit


def _slot_of(byte: int) -> tuple[int, int]:
    """(slot number, byte within the slot from its lowest address) of stack offset `byte` < 0."""
    position = -byte - 1
    return position // SLOT_SIZE, SLOT_SIZE - 1 - position % SLOT_SIZE


def _set_bytes(frame: Frame, start: int, size: int, kind: SlotKind) -> None:
    for byte in range(start, start + size):
        number, within = _slot_of(byte)
        slot = frame.slot(number)
        kinds = list(slot.kinds)
        kinds[within] = kind
        spilled = slot.spilled if kind == SlotKind.SPILL else None
        frame.stack[number] = Slot(tuple(SlotKind.MISC if k == SlotKind.SPILL and spilled is None else k
                                         for k in kinds), spilled)


def mark_written(frame: Frame, start: int, size: int) -> None:
    """Bytes [fp+start, fp+start+size) now hold data the verifier does not know (a helper wrote them)."""
    _set_bytes(frame, start, size, SlotKind.MISC)


def write_fixed(frame: Frame, start: int, size: int, value: Reg) -> None:
    """A store of `size` bytes of `value` at fp+start (start is aligned to size)."""
    number, within = _slot_of(start)
    if value.link is not None:  # a spill keeps no link: links are compared and widened in registers only
        value = value.evolve(link=None)
    if size == SLOT_SIZE:
        if value.is_null:
            frame.stack[number] = Slot((SlotKind.ZERO,) * SLOT_SIZE)
        else:
            frame.stack[number] = spill_slot(value)
        return
    if value.is_pointer:
        raise Rejected("invalid size of register spill")
    kind = SlotKind.ZERO if value.is_null else SlotKind.MISC
    if within == 0 and value.is_scalar and not value.is_null and _fits(value, size):
        # A narrow spill of a value that fits keeps it (a fill of the same size gets it back).
        slot = frame.slot(number)
        kinds = (SlotKind.SPILL,) * size + tuple(
            SlotKind.MISC if k == SlotKind.SPILL else k for k in slot.kinds[size:])
        frame.stack[number] = Slot(kinds, value)
        return
    _set_bytes(frame, start, size, kind)


def _fits(value: Reg, size: int) -> bool:
    return value.value.umax < 1 << (8 * size)


def _spills_with_id(value: Reg, size: int) -> bool:
    return value.is_scalar and not value.value.is_const and value.id == 0 and (size == SLOT_SIZE or _fits(value, size))


def read_fixed(frame: Frame, start: int, size: int, signed: bool) -> Reg:
    """A load of `size` bytes at fp+start: a filled register, a known zero, or an unknown scalar."""
    number, within = _slot_of(start)
    slot = frame.slot(number)
    kinds = slot.kinds[within:within + size]
    if slot.spilled is not None and slot.kinds[0] == SlotKind.SPILL:
        spilled = slot.spilled
        spill_size = sum(1 for k in slot.kinds if k == SlotKind.SPILL)
        if size == SLOT_SIZE and spill_size == SLOT_SIZE:
            if spilled.is_scalar and signed:
                return scalar(sign_extend(spilled.value, size))
            return spilled
        if spilled.is_pointer:
            raise Rejected("invalid size of register fill")
        if within == 0 and size == spill_size and spilled.is_scalar:
            return scalar(sign_extend(spilled.value, size)) if signed else spilled
        if within == 0 and size < spill_size and spilled.is_scalar and not signed:
            # A narrow fill of the low bytes (little endian): the value truncated, still linked
            # to the spilled register when it fits (the kernel's narrowing fill).
            return spilled if _fits(spilled, size) else scalar(truncate(spilled.value, size))
    if all(k == SlotKind.ZERO for k in kinds):
        return const(0)
    return scalar(Scalar.from_load(size, signed))

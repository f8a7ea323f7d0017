"""Conditional jumps: which successors are possible, and what each one proves.

A jump between scalars refines both operands on each edge, and an edge that no value can take is
dropped (a dead branch). A maybe-NULL pointer compared with zero is NULL on one edge and valid on
the other, for every copy of it (same id). A packet pointer compared with ``data_end`` proves on
one edge that the bytes before it are in the packet, for every pointer derived from the same one
(``find_good_pkt_pointers``). Scalars copied from one another share an id and are refined
together (``sync_linked_regs``).

An indirect jump (``gotox rX``, cpu v4) goes through a jump table (runtime/jump_tables.py), as
the kernel's check_indirect_jump has it: the table's map value is read only 8 bytes at a time,
on an entry's boundary, and what is read is a pointer to an instruction that keeps the offset
range it was read at (:func:`table_load`); the gotox takes every distinct entry in that range,
each a path of its own, and refuses a range that leaves the table (:func:`indirect_jump`).
"""
from __future__ import annotations


from bpfjit import isa
from bpfjit.isa import Insn
from bpfjit.runtime import maps as runtime_maps
from bpfjit.runtime.context import MAX_PACKET_LEN
from bpfjit.runtime.jump_tables import ENTRY_SIZE, InsnArray, entries_of
from bpfjit.runtime.map_types import MapType

from . import length
from . import scalar as values
from .log import Rejected
from .state import RAW_LENGTH_ID, MapInfo, Reg, RegType, Slot, State, const, require_init


_NEVER_NULL = (RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_MEM, RegType.PTR_TO_SOCK_COMMON,
               RegType.PTR_TO_SOCKET, RegType.PTR_TO_TCP_SOCK, RegType.PTR_TO_XDP_SOCK)

# For `dst op src` with dst the lower pointer (pkt) and src the end: on which edge (True: the
# taken one) the comparison proves that dst lies before the end, and whether that bound is strict.
_PACKET_EDGES = {isa.JGT: (False, False), isa.JLT: (True, True), isa.JGE: (False, True), isa.JLE: (True, False)}
# The same with the operands the other way round (end op pkt).
_PACKET_EDGES_SWAPPED = {isa.JGT: (True, True), isa.JLT: (False, False), isa.JGE: (True, False),
                         isa.JLE: (False, True)}


def branch(state: State, insn: Insn, index: int, fit_packet: bool = False) -> list[tuple[int, State]]:
    """The possible successors of a conditional jump, each with its refined state (fall-through
    first, as the kernel explores it). fit_packet: a packet pointer proven before data_end also
    gets its variable offset bounded by the longest packet (which the kernel does not do, and
    widened loops need: verifier/widen.py)."""
    regs = state.regs
    dst = regs[insn.dst]
    require_init(dst, insn.dst)
    if insn.source == isa.X:
        src = regs[insn.src]
        require_init(src, insn.src)
    else:
        src = const(insn.imm if insn.cls == isa.JMP else insn.imm & isa.MASK32)
    target, after = insn.jump_target(index), index + 1
    taken = _known_outcome(insn, dst, src)
    if taken is not None:
        return [(target if taken else after, state)]
    other = state.copy()
    edges = []
    for outcome, successor, edge_state in ((False, after, state), (True, target, other)):
        if _refine(edge_state, insn, dst, src, outcome, fit_packet):
            edges.append((successor, edge_state))
    return edges


def _known_outcome(insn: Insn, dst: Reg, src: Reg) -> bool | None:
    if dst.is_scalar and src.is_scalar:
        return values.branch_taken(insn, dst.value, src.value)
    # A pointer the kernel knows is not NULL (reg_not_null) is never equal to zero; the kernel
    # does not decide this for the other pointers (ctx, stack, packet), and explores both edges.
    pointer, other = (dst, src) if dst.is_pointer else (src, dst)
    if insn.cls == isa.JMP and other.is_null and pointer.type in _NEVER_NULL and not pointer.maybe_null \
            and insn.op in (isa.JEQ, isa.JNE):
        return insn.op == isa.JNE
    return None


def _refine(state: State, insn: Insn, dst: Reg, src: Reg, taken: bool, fit_packet: bool) -> bool:
    """Narrow state for one edge; False when no value can take that edge."""
    if dst.is_scalar and src.is_scalar:
        same = insn.source == isa.X and insn.dst == insn.src
        refined = values.refine(insn, dst.value, src.value, taken, same_register=same)
        if refined is None:
            return False
        new_dst, new_src = refined
        _set_scalar(state, insn.dst, dst, new_dst, against_constant=insn.source == isa.K)
        if insn.source == isa.X and not same:
            _set_scalar(state, insn.src, src, new_src, against_constant=False)
            _length_order(state, insn, taken)
        return True
    if insn.cls == isa.JMP and insn.op in (isa.JEQ, isa.JNE):
        # The kernel's NULL check is `if rX ==/!= 0` with rX the maybe-NULL pointer; and of two
        # pointers compared equal, one that may be NULL is not, since the other is not.
        if insn.source == isa.K and insn.imm == 0 and dst.maybe_null:
            _null_check(state, dst, is_null=(insn.op == isa.JEQ) == taken)
            return True
        if insn.source == isa.X and dst.is_pointer and src.is_pointer and dst.maybe_null != src.maybe_null \
                and RegType.PTR_TO_BTF_ID not in (dst.type, src.type) and (insn.op == isa.JEQ) == taken:
            regno = insn.dst if dst.maybe_null else insn.src
            state.regs[regno] = state.regs[regno].evolve(maybe_null=False)
            return True
    if insn.cls == isa.JMP and insn.source == isa.X:
        _packet_range(state, insn, dst, src, taken, fit_packet)
        if dst.is_raw and src.is_raw:
            _length_order(state, insn, taken)
    return True


def _set_scalar(state: State, regno: int, old: Reg, value, against_constant: bool) -> None:
    """A scalar refined on an edge, with its linked copies. One with a bound relative to a raw
    program's length proves the memory as long as its least value needs: the length (or a copy)
    against anything, a value computed from it against a constant (`len / 8 != 0`: 8 bytes). Not
    against a register: a loop's `i < len / 8` would prove 8 more bytes each trip, and its trips,
    walked before its head is widened, would never repeat."""
    new = old.evolve(value=value)
    state.regs[regno] = new
    if old.id:
        _for_each_reg(state, lambda reg: reg.evolve(value=value) if reg.is_scalar and reg.id == old.id else reg)
    if against_constant or old.id == RAW_LENGTH_ID:
        _prove_raw_bytes(state, length.least_length(old.length_bound, value))


def _prove_raw_bytes(state: State, least: int) -> None:
    """A raw program's length is at least `least`: so many bytes of its memory exist, for every
    pointer into it (bpfjit's own rule: the kernel has no raw programs)."""
    if least <= 0:
        return

    def prove(reg: Reg) -> Reg:
        return reg.evolve(range=least) if reg.is_raw and reg.range < least else reg
    _for_each_reg(state, prove)


# For `dst op src` (register operands), on the taken edge: whether dst is the lower one, whether
# strictly, and whether the order is the signed one. The fall-through has the other operand lower,
# and the opposite strictness.
_ORDER = {isa.JLT: (True, True, False), isa.JLE: (True, False, False), isa.JGT: (False, True, False),
          isa.JGE: (False, False, False), isa.JSLT: (True, True, True), isa.JSLE: (True, False, True),
          isa.JSGT: (False, True, True), isa.JSGE: (False, False, True)}


def _length_order(state: State, insn: Insn, taken: bool) -> None:
    """On an edge where one register is below another whose value has a bound relative to a raw
    program's length, the lower one has that bound too (verifier/length.py), and so have its
    linked copies: so `i < len / 2` bounds i, and `p < mem + len` bounds p's offset. The state
    holds both operands as refined for the edge."""
    order = _ORDER.get(insn.op)
    if order is None:
        return
    dst_low, strict, signed = order
    if not taken:
        dst_low, strict = not dst_low, not strict
    regs = state.regs
    low_no, high_no = (insn.dst, insn.src) if dst_low else (insn.src, insn.dst)
    low, high = regs[low_no], regs[high_no]
    if high.length_bound is None:
        return
    low_pair, high_pair = (low.length_bound, low.value), (high.length_bound, high.value)
    if low.is_pointer:  # two pointers into the raw memory: offsets below 2**63 are in the same order
        if signed or low.off or high.off or not (length.nonnegative(*low_pair) and length.nonnegative(*high_pair)):
            return
    derived = length.compared(low_pair, high_pair, strict, signed, insn.cls == isa.JMP32)
    bound = length.tighter(low.length_bound, derived)
    if bound == low.length_bound:
        return
    value = length.narrowed(bound, low.value)
    regs[low_no] = low.evolve(value=value, length_bound=bound)
    if low.is_scalar and low.id:
        _for_each_reg(state, lambda reg: reg.evolve(value=value, length_bound=bound)
                      if reg.is_scalar and reg.id == low.id else reg)


def _null_check(state: State, pointer: Reg, is_null: bool) -> None:
    """Every copy of a maybe-NULL pointer is NULL (a zero scalar) or a valid pointer."""
    def settle(reg: Reg) -> Reg:
        if not (reg.maybe_null and reg.id == pointer.id and reg.type == pointer.type):
            return reg
        return const(0) if is_null else reg.evolve(maybe_null=False)
    _for_each_reg(state, settle)
    if is_null and pointer.ref_obj_id and pointer.ref_obj_id == pointer.id:  # a NULL record needs no release
        state.refs = [ref for ref in state.refs if ref.id != pointer.ref_obj_id]


def _packet_range(state: State, insn: Insn, dst: Reg, src: Reg, taken: bool, fit_packet: bool) -> None:
    pairs = ((dst, src, _PACKET_EDGES), (src, dst, _PACKET_EDGES_SWAPPED))
    for low, high, table in pairs:
        if insn.op not in table or not _packet_pair(low, high):
            continue
        edge, strict = table[insn.op]
        if edge != taken:
            continue
        if low.off < 0 or (low.off == 0 and strict):
            return
        proven = low.off + (1 if strict else 0)
        fit = fit_packet and low.type == RegType.PTR_TO_PACKET
        value = _fit(low.value, MAX_PACKET_LEN - proven) if fit else low.value
        if value.umax > MAX_PACKET_LEN or value.umax + low.off > MAX_PACKET_LEN:
            return
        _widen_range(state, low, proven, fit)
        return


def _widen_range(state: State, pointer: Reg, proven: int, fit_packet: bool) -> None:
    """Every packet pointer derived from the same one (same type and id) has `proven` bytes;
    fit_packet: and its variable offset leaves room for them in the longest packet."""
    def widen(reg: Reg) -> Reg:
        if reg.type == pointer.type and reg.id == pointer.id:
            value = _fit(reg.value, MAX_PACKET_LEN - proven) if fit_packet else reg.value
            return reg.evolve(range=max(reg.range, proven), value=value)
        return reg
    _for_each_reg(state, widen)


def _fit(value: values.Scalar, limit: int) -> values.Scalar:
    """A pointer below data_end says nothing of how far below data it may start: only an offset
    known not to be negative is bounded above by the longest packet."""
    if value.is_const or value.umax <= limit or value.smin < 0:
        return value
    try:
        return values.Scalar.from_range(value.smin, min(value.smax, limit), value.umin, min(value.umax, limit),
                                        value.s32_min, value.s32_max, value.u32_min, value.u32_max,
                                        var_off=value.var_off)
    except ValueError:  # no such pointer: the edge is never taken, and the range says no more
        return value


def _packet_pair(low: Reg, high: Reg) -> bool:
    """pkt against pkt_end, or pkt_meta against pkt (the start of the data)."""
    if low.type == RegType.PTR_TO_PACKET and high.type == RegType.PTR_TO_PACKET_END:
        return True
    return low.type == RegType.PTR_TO_PACKET_META and high.type == RegType.PTR_TO_PACKET


def _for_each_reg(state: State, change) -> None:
    """Apply change to every register and spilled register of every frame."""
    for frame in state.frames:
        frame.regs[:] = [change(reg) for reg in frame.regs]
        for number, slot in list(frame.stack.items()):
            if slot.spilled is not None:  # a whole or a narrow spill: its bytes stay as they are
                changed = change(slot.spilled)
                if changed is not slot.spilled:
                    frame.stack[number] = Slot(slot.kinds, changed)


# --- indirect jumps ------------------------------------------------------------------------------

def is_jump_table(info: MapInfo | None) -> bool:
    """Whether a map is a jump table (BPF_MAP_TYPE_INSN_ARRAY): its value is read only by
    table_load, and never written ("writes into insn_array not allowed")."""
    return info is not None and info.map_type == MapType.INSN_ARRAY


def table_load(reg: Reg, off: int, size: int) -> Reg:
    """What a load of `size` bytes at reg + off from a jump table's value gives (reg: the
    PTR_TO_MAP_VALUE, already checked to stay inside the value): a pointer to the instruction
    of the entry there, with the load's offset range, for gotox to read the targets from."""
    if size != ENTRY_SIZE:
        raise Rejected(f"Invalid read of {size} bytes from insn_array")
    tnum = reg.value.var_off
    if tnum.value % ENTRY_SIZE or tnum.mask % ENTRY_SIZE or (reg.off + off) % ENTRY_SIZE:
        raise Rejected(f"misaligned value access off {tnum}+{reg.off}+{off} size {size}")
    return Reg(RegType.PTR_TO_INSN, reg.value, off=reg.off + off, map=reg.map, id=reg.id)


_INDEX_LIMIT = 0xFFFF_FFFF * ENTRY_SIZE  # the kernel's bound on a table offset (U32_MAX entries)


def indirect_jump(state: State, insn: Insn, allowed: tuple[int, ...]) -> list[tuple[int, State]]:
    """The paths of `gotox rX`: one per distinct entry the offset range of rX can name (the
    kernel's check_indirect_jump), the first entry's path last, as the kernel pushes them.
    allowed: the targets the structure check found for this gotox (its function's tables)."""
    regno = insn.dst
    reg = state.regs[regno]
    require_init(reg, regno)
    if reg.type != RegType.PTR_TO_INSN:
        raise Rejected(f"R{regno} has type {reg.type_name()}, expected PTR_TO_INSN")
    low, high = reg.value.umin + reg.off, reg.value.umax + reg.off
    for name, value, bound in (("umin", reg.value.umin, low), ("umax", reg.value.umax, high)):
        if bound > _INDEX_LIMIT or bound < 0:
            raise Rejected(f"the sum of R{regno} {name}_value {value} is too big")
    entries = reg.map.value_size // ENTRY_SIZE
    first, last = low // ENTRY_SIZE, high // ENTRY_SIZE
    if last >= entries:
        raise Rejected(f"R{regno} points to outside of jump table: [{first},{last}] max_entries {entries}")
    targets = sorted(set(_entries(reg.map)[first:last + 1]))
    for target in targets:
        if target not in allowed:
            raise Rejected(f"gotox at R{regno} reaches insn {target}, which no jump table of its function holds")
    paths = [(target, state.copy()) for target in targets[:-1]]
    return [(targets[-1], state)] + paths[::-1]


def _entries(info: MapInfo) -> tuple[int, ...]:
    """A jump table's entries (instruction slots), read from its map as the kernel reads them."""
    table = runtime_maps.map_from_handle(info.handle)
    if not isinstance(table, InsnArray):
        raise Rejected(f"jump table {info.name} is gone")
    return entries_of(table)

"""Calls and exits: helper arguments and results, bpf-to-bpf frames, callbacks, references, locks.

A helper's prototype (``runtime.helpers.Prototype``: one kind per argument, a return kind) says
what each argument register must hold (``check_func_arg``): the map, a key or value of that map's
size, memory of the size the next argument gives, the context, a function, a ring-buffer record
to release, a spin lock at its exact place, a socket (acquired by a lookup, released by
bpf_sk_release; a cast gives the same object). Map types and helpers must fit each other
(``check_map_func_compatibility``). After the call r1-r5 are unreadable and r0 holds the
result (``check_helper_call``). A bpf-to-bpf call pushes a frame whose r1-r5 are the caller's and
whose stack is new; its exit hands r0 back. A callx (bpfjit's: the kernel has none) enters
each function its register may hold: a tracked function pointer, not NULL, whose functions fit
the prototype of the slot it was loaded from. The main program's exit needs a readable scalar r0,
no reference left unreleased and no lock held.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bpfjit import isa
from bpfjit.isa import Insn
from bpfjit.runtime.btf import Kind
from bpfjit.runtime.btf import functions as btf_functions
from bpfjit.runtime.btf.functions import FunctionPointerFacts
from bpfjit.runtime.kernel_helpers import missing_helper_message, offered
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.status import MAX_CALL_FRAMES

from . import kptrs
from .alu import MAX_VAR_OFF
from .log import Rejected
from .memory import Access, mark_written
from .scalar import Scalar, format_scalar
from .state import (ARG_REGS, CALLER_SAVED, NOT_INIT, PACKET_TYPES, Frame, FuncSlot, Lock, MapInfo, Reference, Reg,
                    RegType, State, require_init, scalar, spill_slot)

if TYPE_CHECKING:
    from bpfjit.runtime.maps import Map

    from .check import Verifier

_MEMORY_TYPES = (RegType.PTR_TO_STACK, RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META, RegType.PTR_TO_MAP_KEY,
                 RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MEM)
_MEMORY_EXPECTED = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"
# Helpers a program may call while it holds a bpf_spin_lock.
_ALLOWED_UNDER_LOCK = {"spin_unlock"}
# check_map_func_compatibility, both of its halves: the helpers each special map type works with
# (other map types work with any helper that takes a map) ...
_SOCKET_MAP_HELPERS = {"map_lookup_elem", "sk_select_reuseport", "map_update_elem", "map_delete_elem"}
_MAP_TYPE_HELPERS = {
    MapType.PROG_ARRAY: {"tail_call"},
    MapType.PERF_EVENT_ARRAY: {"perf_event_read", "perf_event_output", "skb_output", "perf_event_read_value",
                               "xdp_output"},
    MapType.RINGBUF: {"ringbuf_output", "ringbuf_reserve", "ringbuf_query"},
    MapType.STACK_TRACE: {"get_stackid"},
    MapType.CGROUP_ARRAY: {"skb_under_cgroup", "current_task_under_cgroup"},
    MapType.CGROUP_STORAGE: {"get_local_storage"}, MapType.PERCPU_CGROUP_STORAGE: {"get_local_storage"},
    MapType.DEVMAP: {"redirect_map", "map_lookup_elem"}, MapType.DEVMAP_HASH: {"redirect_map", "map_lookup_elem"},
    MapType.CPUMAP: {"redirect_map"},
    MapType.XSKMAP: {"redirect_map", "map_lookup_elem"},
    MapType.ARRAY_OF_MAPS: {"map_lookup_elem"}, MapType.HASH_OF_MAPS: {"map_lookup_elem"},
    MapType.SOCKMAP: {"sk_redirect_map", "sock_map_update", "msg_redirect_map", *_SOCKET_MAP_HELPERS},
    MapType.SOCKHASH: {"sk_redirect_hash", "sock_hash_update", "msg_redirect_hash", *_SOCKET_MAP_HELPERS},
    MapType.REUSEPORT_SOCKARRAY: {"sk_select_reuseport"},
    MapType.QUEUE: {"map_peek_elem", "map_pop_elem", "map_push_elem"},
    MapType.STACK: {"map_peek_elem", "map_pop_elem", "map_push_elem"},
    MapType.BLOOM_FILTER: {"map_peek_elem", "map_push_elem"},
    MapType.SK_STORAGE: {"sk_storage_get", "sk_storage_delete"},
}
# ... and the map types each special helper works with.
_HELPER_MAP_TYPES = {name: {kind for kind, names in _MAP_TYPE_HELPERS.items() if name in names}
                     for name in set().union(*_MAP_TYPE_HELPERS.values())
                     - {"map_lookup_elem", "map_update_elem", "map_delete_elem"}}
# Program types that may update and delete elements of a SOCKMAP or SOCKHASH with the generic map
# helpers (may_update_sockmap; sock_ops programs may only delete), by the kernel's type name.
_SOCKMAP_WRITERS = {"SOCKET_FILTER", "SCHED_CLS", "SCHED_ACT", "XDP", "SK_REUSEPORT", "FLOW_DISSECTOR", "SK_LOOKUP"}
# Socket pointer arguments: which register types each kind takes, and how the log lists them.
_SOCK_COMMON_TYPES = (RegType.PTR_TO_SOCK_COMMON, RegType.PTR_TO_SOCKET, RegType.PTR_TO_TCP_SOCK,
                      RegType.PTR_TO_XDP_SOCK)
_BTF_SOCK_COMMON_TYPES = (*_SOCK_COMMON_TYPES, RegType.PTR_TO_BTF_ID)
_SOCKET_ARGS = {
    "sock_common": (_SOCK_COMMON_TYPES, "sock_common, sock, tcp_sock, xdp_sock"),
    "btf_sock_common": (_BTF_SOCK_COMMON_TYPES, "sock_common, sock, tcp_sock, xdp_sock, ptr_, trusted_ptr_"),
}
_SOCKET_ARGS["btf_sock_common_or_null"] = _SOCKET_ARGS["sock_release"] = _SOCKET_ARGS["btf_sock_common"]
_PACKET_POINTERS = (*PACKET_TYPES, RegType.PTR_TO_PACKET_END)
# Helpers that may move or resize the packet (bpf_helper_changes_pkt_data): every packet pointer
# is invalid after them. A tail call may reach a program that calls one.
_CHANGES_PACKET = {"clone_redirect", "l3_csum_replace", "l4_csum_replace", "lwt_push_encap", "lwt_seg6_action",
                   "lwt_seg6_adjust_srh", "lwt_seg6_store_bytes", "msg_pop_data", "msg_pull_data", "msg_push_data",
                   "skb_adjust_room", "skb_change_head", "skb_change_proto", "skb_change_tail", "skb_pull_data",
                   "skb_store_bytes", "skb_vlan_pop", "skb_vlan_push", "store_hdr_opt", "xdp_adjust_head",
                   "xdp_adjust_meta", "xdp_adjust_tail", "tail_call"}
# Helpers whose result is a new reference the program must release (is_acquire_function), and
# those whose result is the same object as their socket argument (is_ptr_cast_function).
_ACQUIRE = {"sk_lookup_tcp", "sk_lookup_udp", "skc_lookup_tcp"}
_CASTS = {"sk_fullsock", "tcp_sock", "skc_to_tcp6_sock", "skc_to_tcp_sock", "skc_to_tcp_timewait_sock",
          "skc_to_tcp_request_sock", "skc_to_udp6_sock"}
_SOCKET_RESULTS = {"sock_or_null": RegType.PTR_TO_SOCKET, "sock_common_or_null": RegType.PTR_TO_SOCK_COMMON,
                   "tcp_sock_or_null": RegType.PTR_TO_TCP_SOCK, "btf_id_or_null": RegType.PTR_TO_BTF_ID}


@dataclass
class _CallMeta:
    """What earlier arguments tell later ones (the kernel's bpf_call_arg_meta)."""
    map: MapInfo | None = None
    memory: tuple[int, Reg] | None = None  # (regno, reg) of the memory the next size argument sizes
    uninit_memory: bool = False
    release_id: int = 0
    ref_obj_id: int = 0  # the reference an argument is (a cast's result is the same object)
    record_size: int = 0
    callback: int | None = None  # start slot of a callback function argument
    kptr: kptrs.KptrMeta = field(default_factory=kptrs.KptrMeta)  # kptr fields and objects


def helper_call(v: "Verifier", state: State, insn: Insn, index: int) -> None:
    helper = v.helpers.get(insn.imm)
    if helper is None:  # checked where a path reaches it: CO-RE poisons dead code with such calls
        raise Rejected(missing_helper_message(insn.imm))
    name = helper.name
    if not offered(name, v.spec.kernel_type):
        raise Rejected(f"program of this type cannot use helper bpf_{name}#{insn.imm}")
    if state.lock is not None and name not in _ALLOWED_UNDER_LOCK:
        raise Rejected("function calls are not allowed while holding a lock")
    meta = _CallMeta()
    meta.kptr.struct = helper.proto.struct
    for position, kind in enumerate(helper.proto.args):
        _check_arg(v, state, kind, position + 1, meta, insn.imm, name)
    _special_effects(state, name, meta)
    callback_regs = list(state.regs)
    for regno in CALLER_SAVED:
        state.regs[regno] = NOT_INIT
    state.regs[0] = _result(v, helper.proto.ret, name, meta, state, index)
    if meta.callback is not None:
        v.verify_callback(state, meta.callback, callback_regs, name, index)


def _check_arg(v: "Verifier", state: State, kind: str, regno: int, meta: _CallMeta, helper_id: int,
               name: str) -> None:
    reg = state.regs[regno]
    require_init(reg, regno)
    if reg.ref_obj_id:
        meta.ref_obj_id = reg.ref_obj_id
    if kind in ("any", "integer"):
        return
    if kind in ("map", "prog_array"):
        if reg.type != RegType.CONST_PTR_TO_MAP or reg.maybe_null:
            raise Rejected(f"R{regno} type={reg.type_name()} expected=map_ptr")
        meta.map = reg.map
        _map_compatible(v, reg.map, name, helper_id)
        if name == "map_update_elem" and reg.map.func_slots:
            # The helper would copy the value's function pointers from the program's memory,
            # where nothing says they fit their slots.
            raise Rejected(f"map '{reg.map.name}' holds function pointers: bpf_map_update_elem cannot write it")
        return
    if kind == "value" and name == "map_update_elem" and meta.map is not None \
            and meta.map.map_type in (MapType.SOCKMAP, MapType.SOCKHASH):
        kind = "btf_sock_common"  # the value of a socket map is the socket (resolve_map_arg_type)
    if kind == "value_or_null":
        if reg.is_null:
            return
        kind = "value"
    if kind in _SOCKET_ARGS:
        _socket_arg(reg, regno, kind, meta)
        return
    if kind in ("key", "value", "uninit_value"):
        if meta.map is None:
            raise Rejected(f"invalid map_ptr to access map->{'key' if kind == 'key' else 'value'}")
        size = meta.map.key_size if kind == "key" else meta.map.value_size
        _memory(v, state, regno, reg, size, write=kind == "uninit_value")
        return
    if kind in ("mem", "uninit_mem"):
        if reg.is_null:
            meta.memory = (regno, reg)
            return
        if reg.type not in _MEMORY_TYPES or reg.maybe_null:
            raise Rejected(f"R{regno} type={reg.type_name()} expected={_MEMORY_EXPECTED}")
        meta.memory, meta.uninit_memory = (regno, reg), kind == "uninit_mem"
        return
    if kind in ("size", "size_or_zero", "const_size"):
        v.demand_precise(state, [regno])
    if kind in ("size", "size_or_zero"):
        _size(v, state, regno, reg, meta, zero_ok=kind == "size_or_zero")
        return
    if kind == "const_size":
        if not (reg.is_scalar and reg.value.is_const):
            raise Rejected(f"R{regno} is not a known constant'")
        meta.record_size = reg.value.const_value
        return
    if kind == "ctx":
        if reg.type != RegType.PTR_TO_CTX:
            raise Rejected(f"R{regno} type={reg.type_name()} expected=ctx")
        if reg.off < 0:  # the kernel's __check_ptr_off_reg, in its order
            raise Rejected(f"negative offset ctx ptr R{regno} off={reg.off} disallowed")
        if reg.off:
            raise Rejected(f"dereference of modified ctx ptr R{regno} off={reg.off} disallowed")
        if not (reg.value.is_const and reg.value.const_value == 0):
            raise Rejected(f"variable ctx access var_off={reg.value.var_off} disallowed")
        return
    if kind == "func":
        if reg.type != RegType.PTR_TO_FUNC:
            raise Rejected(f"R{regno} type={reg.type_name()} expected=func")
        if reg.subprog < 0:
            raise Rejected(f"R{regno} is a function pointer loaded from memory: a callback must be a known function")
        meta.callback = reg.subprog
        return
    if kind == "stack_or_null":
        if not (reg.is_null or reg.type == RegType.PTR_TO_STACK):
            raise Rejected(f"R{regno} type={reg.type_name()} expected=fp")
        return
    if kind == "ringbuf_mem":
        if reg.type != RegType.PTR_TO_MEM or not reg.ringbuf or reg.maybe_null:
            raise Rejected(f"R{regno} type={reg.type_name()} expected=ringbuf_mem")
        if not reg.ref_obj_id:
            raise Rejected(f"R{regno} must be referenced when passed to release function")
        if reg.off or not reg.value.is_const or reg.value.const_value:
            raise Rejected(f"R{regno} must have zero offset when passed to release func")
        meta.release_id = reg.ref_obj_id
        return
    if kind == "spin_lock":
        _spin_lock_arg(reg, regno)
        return
    if kind in kptrs.ARG_KINDS:
        released = kptrs.check_arg(kind, reg, regno, meta.kptr, v.spec.btf,
                                   lambda regnos: v.demand_precise(state, regnos))
        meta.release_id = released or meta.release_id
        return
    raise Rejected(f"unsupported arg type {kind} of helper {name}#{helper_id}")


def _map_compatible(v: "Verifier", info: MapInfo, name: str, helper_id: int) -> None:
    helpers = _MAP_TYPE_HELPERS.get(info.map_type)
    types = _HELPER_MAP_TYPES.get(name)
    fits = (helpers is None or name in helpers) and (types is None or info.map_type in types)
    if fits and name in ("map_update_elem", "map_delete_elem") \
            and info.map_type in (MapType.SOCKMAP, MapType.SOCKHASH):
        program = v.spec.kernel_type
        if not (program in _SOCKMAP_WRITERS or (program == "SOCK_OPS" and name == "map_delete_elem")):
            raise Rejected("cannot update sockmap in this context\n"
                           f"cannot pass map_type {info.map_type} into func bpf_{name}#{helper_id}")
    if not fits:
        raise Rejected(f"cannot pass map_type {info.map_type} into func bpf_{name}#{helper_id}")


def _socket_arg(reg: Reg, regno: int, kind: str, meta: _CallMeta) -> None:
    """A socket pointer argument (ARG_PTR_TO_SOCK_COMMON, ARG_PTR_TO_BTF_ID_SOCK_COMMON, the
    latter maybe NULL or released)."""
    if kind == "btf_sock_common_or_null" and reg.is_null:
        return
    types, expected = _SOCKET_ARGS[kind]
    if reg.type not in types or reg.maybe_null:
        raise Rejected(f"R{regno} type={reg.type_name()} expected={expected}")
    if kind == "sock_release":
        if not reg.ref_obj_id:
            raise Rejected(f"R{regno} must be referenced when passed to release function")
        meta.release_id = reg.ref_obj_id


def _size(v: "Verifier", state: State, regno: int, reg: Reg, meta: _CallMeta, zero_ok: bool) -> None:
    if not reg.is_scalar:
        raise Rejected(f"R{regno} type={reg.type_name()} expected=scalar")
    value = reg.value
    if value.smin < 0:
        raise Rejected(f"R{regno} min value is negative, either use unsigned or 'var &= const'")
    if value.umin == 0 and not zero_ok:
        raise Rejected(f"R{regno} invalid zero-sized read: u64=[{value.umin},{value.umax}]")
    if value.umax >= MAX_VAR_OFF:
        raise Rejected(f"R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'")
    if meta.memory is None:
        return
    mem_regno, mem = meta.memory
    if mem.is_null:
        if value.umax:
            raise Rejected(f"R{mem_regno} type=scalar expected={_MEMORY_EXPECTED}")
        return
    if value.umax:
        _memory(v, state, mem_regno, mem, value.umax, write=meta.uninit_memory)


def _memory(v: "Verifier", state: State, regno: int, reg: Reg, size: int, write: bool) -> None:
    """check_helper_mem_access: [reg, reg + size) is memory the helper may read (or write)."""
    if reg.is_raw:
        v.helper_args_proven = False  # a raw program's memory: the helper checks it itself
    if reg.type not in _MEMORY_TYPES or reg.maybe_null:
        raise Rejected(f"R{regno} type={reg.type_name()} expected={_MEMORY_EXPECTED}")
    if reg.type == RegType.PTR_TO_STACK:
        _stack_range(v, state, regno, reg, size, write)
        return
    if reg.type == RegType.PTR_TO_MAP_VALUE and write and reg.map.read_only:
        raise Rejected(f"write into map forbidden, value_size={reg.map.value_size} off={reg.off} size={size}")
    # Every other kind is checked like a load (a store, when the helper writes it) of `size`
    # bytes through the argument register.
    v.memory.access(state, Access(regno, 0, size, write, helper=True), None)


def _stack_range(v: "Verifier", state: State, regno: int, reg: Reg, size: int, write: bool) -> None:
    frame = state.frames[reg.frameno]
    var = reg.value
    low = reg.off + var.smin
    high = reg.off + var.smax + size
    if var.is_const:
        low = reg.off + isa.s64(var.const_value)
        high = low + size
    if low < -isa.STACK_SIZE or high > 0 or var.smax >= MAX_VAR_OFF:
        if var.is_const:
            raise Rejected(f"invalid indirect access to stack R{regno} off={low} size={size}")
        raise Rejected(f"invalid variable-offset indirect access to stack R{regno} var_off={var.var_off} "
                       f"off={reg.off} size={size}")
    if write:
        mark_written(frame, low, high - low)
    else:
        v.memory.note_read(frame, low, high)


def _spin_lock_arg(reg: Reg, regno: int) -> None:
    if reg.type != RegType.PTR_TO_MAP_VALUE or reg.maybe_null:
        raise Rejected(f"R{regno} type={reg.type_name()} expected=map_value")
    if not reg.value.is_const:
        raise Rejected(f"R{regno} doesn't have constant offset. bpf_spin_lock has to be at the constant offset")
    if reg.map.lock_offset is None:
        raise Rejected(f"map '{reg.map.name}' has no valid bpf_spin_lock")
    offset = reg.off + reg.value.const_value
    if offset != reg.map.lock_offset:
        raise Rejected(f"off {offset} doesn't point to 'struct bpf_spin_lock' that is at {reg.map.lock_offset}")


def _special_effects(state: State, name: str, meta: _CallMeta) -> None:
    """What a helper does to the state beyond its result: locks taken and released, references
    released."""
    regs = state.regs
    if name == "spin_lock":
        if state.lock is not None:
            raise Rejected("Locking two bpf_spin_locks are not allowed")
        reg = regs[1]
        state.lock = Lock(reg.map.handle, reg.off + reg.value.const_value, reg.id)
    elif name == "spin_unlock":
        reg = regs[1]
        if state.lock is None:
            raise Rejected("bpf_spin_unlock without taking a lock")
        # As the kernel: the same map, through a pointer of the same id (two lookups of one key
        # give two ids, and their locks count as different ones).
        if (state.lock.map_handle, state.lock.reg_id) != (reg.map.handle, reg.id):
            raise Rejected("bpf_spin_unlock of different lock")
        state.lock = None
    if name in _CHANGES_PACKET:
        _forget_packet_pointers(state)
    if meta.release_id:
        if not any(ref.id == meta.release_id for ref in state.refs):
            raise Rejected("R1 must be referenced when passed to release function")
        state.refs = [ref for ref in state.refs if ref.id != meta.release_id]
        for frame in state.frames:  # every copy, in a register or spilled, is gone with it
            frame.regs[:] = [scalar() if r.ref_obj_id == meta.release_id else r for r in frame.regs]
            for number, slot in list(frame.stack.items()):
                if slot.is_spill and slot.spilled.ref_obj_id == meta.release_id:
                    frame.stack[number] = spill_slot(scalar())


def _forget_packet_pointers(state: State) -> None:
    """clear_all_pkt_pointers: every packet pointer, in a register or spilled, becomes an unknown
    number (what the kernel makes of an invalidated pointer in a privileged program)."""
    for frame in state.frames:
        frame.regs[:] = [scalar() if reg.type in _PACKET_POINTERS else reg for reg in frame.regs]
        for number, slot in list(frame.stack.items()):
            if slot.is_spill and slot.spilled.type in _PACKET_POINTERS:
                frame.stack[number] = spill_slot(scalar())


def _result(v: "Verifier", ret: str, name: str, meta: _CallMeta, state: State, index: int) -> Reg:
    if ret == "void":
        return NOT_INIT
    if ret == "map_value_or_null":
        info = meta.map
        if info is not None and info.inner is not None and info.map_type in (MapType.ARRAY_OF_MAPS,
                                                                             MapType.HASH_OF_MAPS):
            return Reg(RegType.CONST_PTR_TO_MAP, map=info.inner, maybe_null=True, id=v.new_id())
        # The kernel gives these their socket type at the NULL check; bpfjit at the call.
        if info is not None and info.map_type == MapType.XSKMAP:
            return Reg(RegType.PTR_TO_XDP_SOCK, maybe_null=True, id=v.new_id())
        if info is not None and info.map_type in (MapType.SOCKMAP, MapType.SOCKHASH):
            return _acquired(v, state, index, RegType.PTR_TO_SOCKET)
        return Reg(RegType.PTR_TO_MAP_VALUE, map=info, maybe_null=True, id=v.new_id())
    if ret in _SOCKET_RESULTS:
        kind = _SOCKET_RESULTS[ret]
        if name in _ACQUIRE:
            return _acquired(v, state, index, kind)
        return Reg(kind, maybe_null=True, id=v.new_id(), ref_obj_id=meta.ref_obj_id if name in _CASTS else 0)
    if ret == "ringbuf_mem_or_null":
        reference = v.new_id()
        state.refs.append(Reference(reference, index))
        return Reg(RegType.PTR_TO_MEM, mem_size=meta.record_size, maybe_null=True, ringbuf=True,
                   id=reference, ref_obj_id=reference)
    obj = kptrs.result(ret, meta.kptr, v.spec.btf,
                       frozenset(h.proto.struct for h in v.helpers if h.proto.ret == "host_or_null"))
    if obj is not None:
        return _acquired(v, state, index, RegType.PTR_TO_BTF_ID).evolve(obj=obj)
    return scalar(Scalar.unknown() if ret != "u32" else Scalar.from_load(4, False))


def _acquired(v: "Verifier", state: State, index: int, kind: RegType) -> Reg:
    """A maybe-NULL pointer to a new reference (a socket a lookup took): the kernel numbers the
    NULL check first, then the reference, and the pointer carries the reference's id."""
    v.new_id()
    reference = v.new_id()
    state.refs.append(Reference(reference, index))
    return Reg(kind, maybe_null=True, id=reference, ref_obj_id=reference)


# --- bpf-to-bpf calls and exits -------------------------------------------------------------------

def callx(v: "Verifier", state: State, insn: Insn, index: int) -> list[tuple[int, State]]:
    """callx rX (bpfjit's indirect call: the kernel has none): one path into each function the
    register may hold, each with the caller's r1-r5.

    A function pointer the verifier tracked (an ld_imm64 of a function, a load of a
    function-pointer slot) reaches the functions it may be, and must not be NULL: a pointer
    loaded from a writable slot is checked first (``if (hook) hook(ctx);``). A number (a pointer
    in memory BTF does not type) may be any function whose address the object takes; the
    engines end the run at any other value."""
    regno = insn.callx_reg
    target = state.regs[regno]
    require_init(target, regno)
    if target.type == RegType.PTR_TO_FUNC and not target.maybe_null:
        starts = sorted(target.callees)
    elif target.is_scalar and v.spec.callx_targets:
        starts = list(v.spec.callx_targets)
    else:
        raise Rejected(f"callx R{regno} type={target.type_name()} expected=func")
    if not starts:
        raise Rejected(f"callx R{regno}: no function of the program fits the pointer's prototype")
    v.callx_sites.setdefault(index, set()).update(starts)
    paths = [state] + [state.copy() for _ in starts[1:]]
    return [(local_call(v, path, start, index), path) for start, path in zip(starts, paths)]


def function_slots(found: "Map", facts: FunctionPointerFacts | None) -> tuple[FuncSlot, ...]:
    """The function-pointer slots of a global-data section (a map whose BTF value type is a
    DATASEC), each with the program's functions that fit it (facts: what the loader knows of
    them; None: a program without function names has no typed slots).

    Only global data: Python writes it through ``obj.globals``, which checks what it stores;
    other maps' function pointers stay numbers."""
    btf, type_id = found.btf, found.value_type_id
    if btf is None or not type_id or facts is None or btf.resolved(type_id).kind != Kind.DATASEC:
        return ()
    pointers = btf_functions.function_pointers(btf, type_id)
    if not pointers:
        return ()
    prototypes = btf_functions.function_prototypes(btf)
    initialised = facts.initialised.get(found.handle, frozenset())
    slots = []
    for pointer in pointers:
        fits, misfits = set(), []
        for start, name in sorted(facts.names.items()):
            why = (btf_functions.prototype_mismatch(btf, name, prototypes[name], pointer.name, pointer.proto_id)
                   if name in prototypes else f"{name}() has no BTF prototype")
            if why is None:
                fits.add(start)
            else:
                misfits.append((start, why))
        slots.append(FuncSlot(pointer.offset, pointer.name, frozenset(fits), tuple(misfits),
                              pointer.offset not in initialised))
    return tuple(slots)


def local_call(v: "Verifier", state: State, target: int, index: int) -> int:
    """Enter the function at slot `target`: a new frame with the caller's r1-r5; return `target`."""
    if state.lock is not None:
        raise Rejected("function calls are not allowed while holding a lock")
    if len(state.frames) >= MAX_CALL_FRAMES:
        raise Rejected(f"the call stack of {len(state.frames) + 1} frames is too deep !")
    push_frame(state, target, [state.regs[regno] for regno in ARG_REGS], index)
    return target


def exit_insn(v: "Verifier", state: State, index: int) -> int | None:
    """Leave the current function: the slot the caller continues at, or None at program exit."""
    r0 = state.regs[0]
    frame = state.frame
    if len(state.frames) > 1:
        if r0.type == RegType.PTR_TO_STACK and r0.frameno == frame.frameno:
            raise Rejected("cannot return stack pointer to the caller")
        if frame.callback_ret is not None:  # the helper's caller goes on along its own path
            require_init(r0, 0)
            v.demand_precise(state, [0])
            _check_range(r0, frame.callback_ret, "At callback return")
            return None
        state.frames.pop()
        caller = state.frame
        for regno in CALLER_SAVED:
            caller.regs[regno] = NOT_INIT
        caller.regs[0] = r0  # as the kernel, even unset: only the caller's use of it is refused
        return frame.callsite + 1
    require_init(r0, 0)
    if state.lock is not None:
        raise Rejected("bpf_spin_unlock is missing")
    if state.refs:
        raise Rejected(f"Unreleased reference id={state.refs[0].id} alloc_insn={state.refs[0].insn}")
    if r0.is_pointer:
        return None  # privileged programs may return a pointer (the kernel allows the leak)
    if v.spec.return_range is not None:
        v.demand_precise(state, [0])
        _check_range(r0, v.spec.return_range, "At program exit")
    return None


def _check_range(r0: Reg, allowed: tuple[int, int], where: str) -> None:
    low, high = allowed
    if not r0.is_scalar:
        raise Rejected(f"{where} the register R0 is not a known value ({r0.type_name()})")
    value = r0.value
    if value.smin < low or value.smax > high:
        raise Rejected(f"{where} the register R0 has {format_scalar(value)[len('scalar'):] or 'unknown'} "
                       f"should have been in [{low}, {high}]")


def push_frame(state: State, start: int, args: list[Reg], callsite: int,
               callback_ret: tuple[int, int] | None = None) -> None:
    """A new frame for the function at `start`: r1-r5 = args, r10 its own empty stack."""
    frameno = len(state.frames)
    regs = [NOT_INIT] * 11
    for regno, reg in zip(ARG_REGS, args):
        regs[regno] = reg
    regs[isa.FRAME_POINTER] = Reg(RegType.PTR_TO_STACK, Scalar.const(0), frameno=frameno)
    state.frames.append(Frame(regs, {}, frameno, start, callsite=callsite, callback_ret=callback_ret))

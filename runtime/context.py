"""Program types and their contexts: what r1 points at, and how the program's view maps to memory.

A packet program reads ``struct xdp_md`` or ``struct __sk_buff``, whose ``data``/``data_end``
fields are 32 bits wide in the program's view but are real pointers at run time. As in the kernel,
the program's accesses are rewritten before it runs (``bpfjit.verifier.ctx_access``) to reach a
native context whose pointer fields are 64 bits wide. Each :class:`CtxField` says where a field of
the program's view lives in the native context, and which loads and stores the program type
allows (the rules of the kernel's ``*_is_valid_access`` functions, include/uapi/linux/bpf.h for
the layouts). An access to no allowed field fails at load with the kernel's "invalid
bpf_context access" message.

Each packet program type sees the ``struct __sk_buff`` fields its kernel type may read (socket
filters, for example, may not read ``data``/``data_end`` and may only write ``cb``); the ones
with no meaning in userspace read as BPF_PROG_TEST_RUN leaves them for a fresh skb on the
loopback device (mostly zero; ``sk`` is NULL: there are no sockets). Tracing program types read
their context (a tracepoint record, raw tracepoint arguments, ``struct pt_regs``,
``struct bpf_perf_event_data``) without any rewriting. See docs/semantics.md#test-run.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from bpfjit.errors import BPFError, TestRunError

XDP_HEADROOM = 256  # XDP_PACKET_HEADROOM: room in front of the packet for bpf_xdp_adjust_head
# The head of the headroom holds a struct xdp_frame (40 bytes on x86-64) that neither the packet
# nor its metadata may grow into.
XDP_FRAME_SIZE = 40
XDP_META_MAX = 255  # metadata is at most skb_shared_info.meta_len's (u8) largest value
ETH_HLEN = 14
# The longest packet a program sees (the kernel's MAX_PACKET_OFF): the verifier proves no packet
# range past it, and bounds a pointer checked against data_end by it; test runs refuse more.
MAX_PACKET_LEN = 0xFFFF

# The runtime's own words in a packet program's native context, after the fields of its layout
# (runtime/run_memory.py writes them, jit/native_packet.py's helpers read them; no program can
# reach them: the context region ends at the layout's native_size). Every context buffer a run
# makes is at least CTX_RUNTIME_END bytes, so a native helper may read them from any context.
CTX_RUNTIME = 224  # past the largest packet layout's native_size (__sk_buff's 216)
CTX_TAG = CTX_RUNTIME  # u64: the context's address ^ a secret of the process ^ its kind (below)
CTX_PAGE = CTX_RUNTIME + 8  # u64: an XDP run's page (xdp_buff's data_hard_start)
CTX_REGION_ENTRY = CTX_RUNTIME + 16  # u64: the packet's (start, size) in the run's region table, or 0
CTX_FRAGS = CTX_RUNTIME + 24  # u64: an XDP run's number of frags (the first entries of its frag table)
# An skb run's sk_buff state (runtime/run_memory.py SkbBuffer), which the resizing helpers read
# and change: where its storage starts and ends (the most data and data_end can move without a
# bigger one, which only Python allocates), its mac and network headers (signed offsets from
# data) and whether it carries an encapsulation (0 or 1).
CTX_SKB_HEAD = CTX_RUNTIME + 32
CTX_SKB_END = CTX_RUNTIME + 40
CTX_SKB_MAC = CTX_RUNTIME + 48
CTX_SKB_NETWORK = CTX_RUNTIME + 56
CTX_SKB_ENCAP = CTX_RUNTIME + 64
# The tunnel an skb is to be sent through (bpf_skb_set_tunnel_key): a u64 that is 1 once a program
# set one, then its key as the kernel keeps it in ip_tunnel_info: id, tos, ttl, the tunnel's flags,
# the flow label, the remote (destination) and local (source) addresses, whether they are IPv6.
CTX_SKB_TUNNEL = CTX_RUNTIME + 72
SKB_TUNNEL_INFO = struct.Struct("<IBBHI16s16sB")
# u64: an XDP run's frag table: MAX_SKB_FRAGS entries of (address, size) u64 pairs.
CTX_FRAG_TABLE = CTX_RUNTIME + 128
FRAG_ENTRY = struct.Struct("<QQ")
# An skb run's headroom and transport header as the kernel's sk_buff has them, for the rules that
# read them (runtime/skb_helpers.py): the headroom starts at NET_SKB_PAD and grows in steps of it
# when a push needs more (pskb_expand_head); the transport header is a signed offset from data,
# or SKB_TRANSPORT_UNSET.
CTX_SKB_HEADROOM = CTX_RUNTIME + 136
CTX_SKB_TRANSPORT = CTX_RUNTIME + 144
SKB_TRANSPORT_UNSET = -(1 << 62)
CTX_RUNTIME_END = CTX_RUNTIME + 152
CTX_KIND_XDP, CTX_KIND_SKB = 1, 2  # xor'ed into the tag: a helper of one kind never takes the other

# What a pointer field holds, named after the register type the kernel verifier gives its value.
PACKET, PACKET_END, PACKET_META = "packet", "packet_end", "packet_meta"
SOCK_COMMON_OR_NULL = "sock_common_or_null"
PACKET_POINTERS = (PACKET, PACKET_END, PACKET_META)

# How much of a field one access may cover (every access is also aligned to its own size).
WHOLE = "whole"    # only the whole field
NARROW = "narrow"  # loads of an aligned part; stores of the whole field (the kernel's default)
REGION = "region"  # any aligned part, loads and stores alike (cb[], a tracepoint record)


@dataclass(frozen=True)
class CtxField:
    name: str
    offset: int  # in the program's view (the uapi struct)
    size: int
    native_offset: int
    native_size: int  # 8 for the pointer fields the kernel rewrites
    writable: bool = False
    pointer: str | None = None  # a runtime-filled pointer: PACKET, PACKET_END, ... (whole loads only)
    access: str = NARROW
    visible: bool = True  # False: in the native context only (packet pointers a socket filter may not read)


@dataclass(frozen=True)
class ContextLayout:
    struct_name: str
    size: int  # size of the uapi struct (the ctx a user passes to test_run)
    native_size: int
    fields: tuple[CtxField, ...]

    def field_at(self, offset: int, size: int, write: bool = False) -> CtxField | None:
        """The field a load (or, with write, a store) of `size` bytes at `offset` may reach, if any."""
        if size <= 0 or offset % size:
            return None  # every program type's *_is_valid_access wants accesses aligned to their size
        for field in self.fields:
            if not (field.visible and field.offset <= offset and offset + size <= field.offset + field.size):
                continue
            whole = (offset, size) == (field.offset, field.size)
            if write and not field.writable:
                return None
            if field.pointer or field.access == WHOLE or (write and field.access == NARROW):
                return field if whole else None
            return field
        return None

    def field(self, name: str) -> CtxField:
        return next(f for f in self.fields if f.name == name)


def _fields(*specs: tuple) -> tuple[CtxField, ...]:
    return tuple(CtxField(*spec) for spec in specs)


# struct xdp_md: six u32, every one read whole (__is_valid_xdp_access); nothing is writable.
# Without an ingress_ifindex the run happens on the loopback device's queue 0, so the program
# reads ifindex 1; ctx_out gives back the value the user passed, kept in a hidden slot.
XDP_MD = ContextLayout("xdp_md", 24, 40, tuple(
    CtxField(name, offset, 4, native, native_size, pointer=pointer, access=WHOLE, visible=visible)
    for name, offset, native, native_size, pointer, visible in (
        ("data", 0, 0, 8, PACKET, True),
        ("data_end", 4, 8, 8, PACKET_END, True),
        ("data_meta", 8, 16, 8, PACKET_META, True),
        ("ingress_ifindex", 12, 24, 4, None, True),
        ("rx_queue_index", 16, 28, 4, None, True),
        ("egress_ifindex", 20, 32, 4, None, True),
        ("ingress_ifindex as given", 12, 36, 4, None, False),
    )))

# struct __sk_buff (192 bytes): the native copy keeps every value field at its uapi offset and
# appends the packet pointers after it. (name, offset, size, access, pointer).
_SKB_SIZE = 192
_SKB_POINTER_SLOTS = {"data": 192, "data_end": 200, "data_meta": 208}
_SKB_NATIVE_SIZE = 216
_SKB_FIELDS = (
    ("len", 0, 4, NARROW, None), ("pkt_type", 4, 4, NARROW, None), ("mark", 8, 4, NARROW, None),
    ("queue_mapping", 12, 4, NARROW, None), ("protocol", 16, 4, NARROW, None),
    ("vlan_present", 20, 4, NARROW, None), ("vlan_tci", 24, 4, NARROW, None),
    ("vlan_proto", 28, 4, NARROW, None), ("priority", 32, 4, NARROW, None),
    ("ingress_ifindex", 36, 4, NARROW, None), ("ifindex", 40, 4, NARROW, None),
    ("tc_index", 44, 4, NARROW, None), ("cb", 48, 20, REGION, None), ("hash", 68, 4, NARROW, None),
    ("tc_classid", 72, 4, NARROW, None), ("data", 76, 4, WHOLE, PACKET),
    ("data_end", 80, 4, WHOLE, PACKET_END), ("napi_id", 84, 4, NARROW, None),
    ("family", 88, 4, NARROW, None), ("remote_ip4", 92, 4, WHOLE, None), ("local_ip4", 96, 4, WHOLE, None),
    *((f"remote_ip6[{i}]", 100 + 4 * i, 4, WHOLE, None) for i in range(4)),
    *((f"local_ip6[{i}]", 116 + 4 * i, 4, WHOLE, None) for i in range(4)),
    ("remote_port", 132, 4, NARROW, None), ("local_port", 136, 4, NARROW, None),
    ("data_meta", 140, 4, WHOLE, PACKET_META),
    # flow_keys (144) only flow dissectors read; tstamp_type (180) and the padding up to 184 nobody.
    ("tstamp", 152, 8, WHOLE, None), ("wire_len", 160, 4, NARROW, None), ("gso_segs", 164, 4, NARROW, None),
    ("sk", 168, 8, WHOLE, SOCK_COMMON_OR_NULL), ("gso_size", 176, 4, NARROW, None),
    ("hwtstamp", 184, 8, WHOLE, None),
)
_SKB_SPANS = {name: (offset, size) for name, offset, size, _, _ in _SKB_FIELDS}
# The __sk_buff fields a test run takes from ctx_in (convert___skb_to_skb); every other byte of
# ctx_in must be zero. ctx_out is ctx_in with SKB_CTX_OUT written back (convert_skb_to___skb).
SKB_CTX_IN = ("mark", "priority", "ingress_ifindex", "ifindex", "cb", "tstamp", "wire_len", "gso_segs",
              "gso_size", "hwtstamp")
SKB_CTX_OUT = ("mark", "priority", "ingress_ifindex", "ifindex", "cb", "tstamp", "wire_len", "gso_segs",
               "hwtstamp")
GSO_MAX_SEGS = 0xFFFF
GSO_LEGACY_MAX_SIZE = 0x10000  # the largest wire_len a test run takes
# The socket fields (family .. local_port): only program types with a socket behind the skb.
_SOCKET_FIELDS = frozenset({"family", "remote_ip4", "local_ip4", "remote_port", "local_port",
                            *(f"{side}_ip6[{i}]" for side in ("remote", "local") for i in range(4))})


def _skb_layout(denied: frozenset[str], writable: frozenset[str]) -> ContextLayout:
    """struct __sk_buff as one program type sees it: fields it may not touch are left out (the
    packet pointers stay in the native context, hidden, for the runtime's own use)."""
    fields = []
    for name, offset, size, access, pointer in _SKB_FIELDS:
        if name in denied and name not in _SKB_POINTER_SLOTS:
            continue
        if pointer in PACKET_POINTERS:
            native, native_size = _SKB_POINTER_SLOTS[name], 8
        else:
            native, native_size = offset, size
        fields.append(CtxField(name, offset, size, native, native_size, name in writable, pointer, access,
                               visible=name not in denied))
    return ContextLayout("__sk_buff", _SKB_SIZE, _SKB_NATIVE_SIZE, tuple(fields))


_NO_SOCKET_NO_TIME = _SOCKET_FIELDS | {"tc_classid", "data_meta", "tstamp", "wire_len", "hwtstamp"}
# sk_filter_is_valid_access: no direct packet access, only cb[] written.
SOCKET_SK_BUFF = _skb_layout(_NO_SOCKET_NO_TIME | {"data", "data_end"}, frozenset({"cb"}))
# tc_cls_act_is_valid_access.
TC_SK_BUFF = _skb_layout(_SOCKET_FIELDS, frozenset({"mark", "tc_index", "priority", "tc_classid", "cb",
                                                    "tstamp", "queue_mapping"}))
# cg_skb_is_valid_access, privileged (CAP_BPF for data, CAP_SYS_ADMIN to write tstamp).
CGROUP_SK_BUFF = _skb_layout(frozenset({"tc_classid", "data_meta", "wire_len"}),
                             frozenset({"mark", "priority", "cb", "tstamp"}))
# lwt_is_valid_access.
LWT_SK_BUFF = _skb_layout(_NO_SOCKET_NO_TIME, frozenset({"mark", "priority", "cb"}))
# sk_skb_is_valid_access: mark is neither read nor written.
SK_SKB_SK_BUFF = _skb_layout(frozenset({"tc_classid", "data_meta", "tstamp", "wire_len", "hwtstamp", "mark"}),
                             frozenset({"tc_index", "priority"}))
SK_BUFF = TC_SK_BUFF  # the fullest view, as tc programs have it


def _read_only_region(struct_name: str, start: int, size: int) -> ContextLayout:
    """A context the program reads in place (any aligned load inside [start, size)), never writes."""
    return ContextLayout(struct_name, size, size, (CtxField(struct_name, start, size - start, start,
                                                            size - start, access=REGION),))


# tp_prog_is_valid_access: the tracepoint's record, past its 8-byte common header, up to
# PERF_MAX_TRACE_SIZE; read only.
TRACEPOINT_RECORD = _read_only_region("tracepoint record", 8, 2048)
# raw_tp_prog_is_valid_access: u64 args[MAX_BPF_FUNC_ARGS]; read only.
RAW_TP_ARGS = _read_only_region("raw tracepoint args", 0, 12 * 8)
# kprobe_prog_is_valid_access: struct pt_regs (x86-64: 21 u64); read only.
PT_REGS_SIZE = 21 * 8
PT_REGS = _read_only_region("pt_regs", 0, PT_REGS_SIZE)
# pe_prog_is_valid_access: the registers are read a whole long at a time; sample_period and addr
# may be read in part.
_PT_REG_NAMES = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx",
                 "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")
PERF_EVENT_DATA = ContextLayout("bpf_perf_event_data", PT_REGS_SIZE + 16, PT_REGS_SIZE + 16, (
    *(CtxField(f"regs.{name}", 8 * i, 8, 8 * i, 8, access=WHOLE) for i, name in enumerate(_PT_REG_NAMES)),
    CtxField("sample_period", PT_REGS_SIZE, 8, PT_REGS_SIZE, 8),
    CtxField("addr", PT_REGS_SIZE + 8, 8, PT_REGS_SIZE + 8, 8),
))
# syscall_prog_is_valid_access: the user's buffer, read and written at any aligned offset below
# U16_MAX; the test run copies it in and back out.
SYSCALL_CTX_LIMIT = 0xFFFF
SYSCALL_CTX = ContextLayout("syscall ctx", SYSCALL_CTX_LIMIT, SYSCALL_CTX_LIMIT, (
    CtxField("syscall ctx", 0, SYSCALL_CTX_LIMIT, 0, SYSCALL_CTX_LIMIT, True, access=REGION),))

# How BPF_PROG_TEST_RUN runs a program type (net/bpf/test_run.c).
RUN_MEMORY = "memory"  # bpfjit's raw programs: r1 = the data, r2 = its length
RUN_PACKET = "packet"  # xdp and skb programs: a context around a copy of the data
RUN_CTX = "ctx"        # raw_tp and syscall: r1 = a copy of the ctx; no data. bpfjit also runs
                       # tracepoint, kprobe and perf_event programs so (the kernel cannot test-run
                       # them): tracing logic runs on the record, registers or sample you give it
RUN_NONE = "none"      # sk_skb: the kernel has no test run, and a stream parser needs a socket


@dataclass(frozen=True)
class ProgramType:
    name: str
    layout: ContextLayout | None  # None: raw (r1 = memory, r2 = its length)
    min_data: int = 0
    # False for socket filters: as BPF_PROG_TEST_RUN does, the Ethernet header is pulled before
    # the run (the program sees the packet from the network header on) and zeroed afterwards.
    sees_l2: bool = True
    test_run: str = RUN_PACKET
    kernel_type: str = ""  # enum bpf_prog_type, without BPF_PROG_TYPE_


RAW = ProgramType("raw", None, test_run=RUN_MEMORY)
XDP = ProgramType("xdp", XDP_MD, ETH_HLEN, kernel_type="XDP")
SOCKET = ProgramType("socket", SOCKET_SK_BUFF, ETH_HLEN, sees_l2=False, kernel_type="SOCKET_FILTER")
TC = ProgramType("tc", TC_SK_BUFF, ETH_HLEN, kernel_type="SCHED_CLS")
ACTION = ProgramType("action", TC_SK_BUFF, ETH_HLEN, kernel_type="SCHED_ACT")
CGROUP_SKB = ProgramType("cgroup_skb", CGROUP_SK_BUFF, ETH_HLEN, sees_l2=False, kernel_type="CGROUP_SKB")
LWT_IN = ProgramType("lwt_in", LWT_SK_BUFF, ETH_HLEN, sees_l2=False, kernel_type="LWT_IN")
LWT_OUT = ProgramType("lwt_out", LWT_SK_BUFF, ETH_HLEN, sees_l2=False, kernel_type="LWT_OUT")
LWT_XMIT = ProgramType("lwt_xmit", LWT_SK_BUFF, ETH_HLEN, sees_l2=False, kernel_type="LWT_XMIT")
SK_SKB = ProgramType("sk_skb", SK_SKB_SK_BUFF, test_run=RUN_NONE, kernel_type="SK_SKB")
RAW_TP = ProgramType("raw_tp", RAW_TP_ARGS, test_run=RUN_CTX, kernel_type="RAW_TRACEPOINT")
SYSCALL = ProgramType("syscall", SYSCALL_CTX, test_run=RUN_CTX, kernel_type="SYSCALL")
TRACEPOINT = ProgramType("tracepoint", TRACEPOINT_RECORD, test_run=RUN_CTX, kernel_type="TRACEPOINT")
KPROBE = ProgramType("kprobe", PT_REGS, test_run=RUN_CTX, kernel_type="KPROBE")
PERF_EVENT = ProgramType("perf_event", PERF_EVENT_DATA, test_run=RUN_CTX, kernel_type="PERF_EVENT")
LOOPBACK_IFINDEX = 1  # test runs happen on the loopback device
PROGRAM_TYPES = {t.name: t for t in (RAW, XDP, SOCKET, TC, ACTION, CGROUP_SKB, LWT_IN, LWT_OUT, LWT_XMIT,
                                     SK_SKB, RAW_TP, SYSCALL, TRACEPOINT, KPROBE, PERF_EVENT)}

# libbpf's section names (section_defs in libbpf.c) for the types above. "name+" matches the name
# alone or followed by "/extras"; other names match exactly. bpfjit also takes "xdp/...",
# "socket/..." and "tc/..."-style extras for its packet types, as it always has.
_SECTIONS: tuple[tuple[str, ProgramType], ...] = (
    ("socket+", SOCKET), ("xdp+", XDP), ("xdp.frags+", XDP),
    ("tc+", TC), ("tcx+", TC), ("classifier+", TC), ("netkit/primary", TC), ("netkit/peer", TC),
    ("action+", ACTION),
    ("cgroup_skb/ingress", CGROUP_SKB), ("cgroup_skb/egress", CGROUP_SKB), ("cgroup/skb", CGROUP_SKB),
    ("lwt_in", LWT_IN), ("lwt_out", LWT_OUT), ("lwt_xmit", LWT_XMIT),
    ("sk_skb", SK_SKB), ("sk_skb/stream_parser", SK_SKB), ("sk_skb/stream_verdict", SK_SKB),
    ("sk_skb/verdict", SK_SKB),
    ("raw_tracepoint+", RAW_TP), ("raw_tp+", RAW_TP),
    ("tracepoint+", TRACEPOINT), ("tp+", TRACEPOINT),
    ("kprobe+", KPROBE), ("kretprobe+", KPROBE), ("uprobe+", KPROBE), ("uretprobe+", KPROBE),
    ("uprobe.s+", KPROBE), ("uretprobe.s+", KPROBE), ("kprobe.multi+", KPROBE),
    ("kretprobe.multi+", KPROBE), ("uprobe.multi+", KPROBE), ("uretprobe.multi+", KPROBE),
    ("ksyscall+", KPROBE), ("kretsyscall+", KPROBE), ("usdt+", KPROBE),
    ("perf_event", PERF_EVENT),
    ("syscall", SYSCALL),
)


def section_matches(pattern: str, section: str) -> bool:
    if pattern.endswith("+"):
        stem = pattern[:-1]
        return section == stem or section.startswith(stem + "/")
    return section == pattern


def program_type_for_section(section: str) -> ProgramType:
    """libbpf's section-name conventions; unknown sections run as raw programs.

    A leading "?" (libbpf: do not load automatically) does not change the type.
    """
    name = section.removeprefix("?")
    for pattern, ptype in _SECTIONS:
        if section_matches(pattern, name):
            return ptype
    return RAW


def skb_metadata(frame: bytes) -> dict[str, int]:
    """What eth_type_trans derives from the Ethernet header, as __sk_buff fields."""
    destination = frame[:6]
    if destination == b"\xff" * 6:
        pkt_type = 1  # PACKET_BROADCAST
    elif destination[0] & 1:
        pkt_type = 2  # PACKET_MULTICAST
    elif any(destination):
        pkt_type = 3  # PACKET_OTHERHOST: the loopback device's address is all zeros
    else:
        pkt_type = 0  # PACKET_HOST
    # skb->protocol is the big-endian ethertype; the program reads it as a host-order u32.
    return {"protocol": int.from_bytes(frame[12:14], "little"), "pkt_type": pkt_type}


_NO_PACKET_RUN = {
    RUN_NONE: "neither the kernel nor bpfjit can test-run them",
    RUN_CTX: "they run on a ctx alone, with no data",
    RUN_MEMORY: "r1 is their memory",
}


def build_native_ctx(ptype: ProgramType, ctx: bytes | None, data_start: int, data_len: int,
                     frame: bytes = b"", meta_len: int = 0) -> bytes:
    """The native context of a packet program's run: the user's ctx values, pointers filled in
    (``data_meta`` meta_len bytes before ``data``).

    Like BPF_PROG_TEST_RUN, a ctx given by the user may only set the input fields the program
    type accepts: the pointer fields must be zero and bytes past the struct must be zero. (An
    xdp_md's offsets are taken apart by :func:`xdp_input` first.)
    """
    layout = ptype.layout
    if ptype.test_run != RUN_PACKET or layout is None:
        raise BPFError(f"{ptype.name} programs are not test-run on a packet: {_NO_PACKET_RUN[ptype.test_run]}")
    user = _user_bytes(layout, ctx)
    native = bytearray(layout.native_size)
    if layout.struct_name == "__sk_buff":
        _check_skb_input(user, data_len)
        for name in SKB_CTX_IN:  # at their uapi offsets, also those the program type cannot read
            offset, size = _SKB_SPANS[name]
            native[offset:offset + size] = user[offset:offset + size]
        if ctx is not None and not struct.unpack_from("<I", user, _SKB_SPANS["wire_len"][0])[0]:
            struct.pack_into("<I", native, _SKB_SPANS["wire_len"][0], data_len)
    else:
        for field in layout.fields:
            value = user[field.offset:field.offset + field.size]
            if field.pointer:
                if field.visible and any(value):
                    raise BPFError(f"ctx: {layout.struct_name}.{field.name} is set by the runtime and must be zero")
                continue
            native[field.native_offset:field.native_offset + field.size] = value
    pointers = {PACKET: data_start, PACKET_END: data_start + data_len, PACKET_META: data_start - meta_len,
                SOCK_COMMON_OR_NULL: 0}
    for field in layout.fields:
        if field.pointer:
            struct.pack_into("<Q", native, field.native_offset, pointers[field.pointer])
    if layout.struct_name == "__sk_buff":
        struct.pack_into("<I", native, layout.field("len").native_offset, data_len)  # the packet's length
        for name, value in skb_metadata(frame).items():
            struct.pack_into("<I", native, layout.field(name).native_offset, value)
    device = layout.field("ifindex" if layout.struct_name == "__sk_buff" else "ingress_ifindex")
    if not struct.unpack_from("<I", native, device.native_offset)[0]:
        struct.pack_into("<I", native, device.native_offset, LOOPBACK_IFINDEX)
    return bytes(native)


def _check_skb_input(user: bytes, skb_len: int) -> None:
    """The kernel's checks of an __sk_buff ctx_in (bpf_prog_test_run_skb, convert___skb_to_skb):
    only the SKB_CTX_IN fields may be set, the device must exist (the loopback is the only one),
    and wire_len, when given, covers the packet and fits a legacy GSO packet."""
    ifindex, wire_len, gso_segs = (struct.unpack_from("<I", user, _SKB_SPANS[name][0])[0]
                                   for name in ("ifindex", "wire_len", "gso_segs"))
    if ifindex > LOOPBACK_IFINDEX:
        raise TestRunError(f"ctx: __sk_buff.ifindex {ifindex}: no such device; a test run has only the loopback "
                           f"device, ifindex {LOOPBACK_IFINDEX}", errno.ENODEV, "ctx.ifindex")
    allowed = {offset + i for name in SKB_CTX_IN for offset, size in [_SKB_SPANS[name]] for i in range(size)}
    bad = next((i for i, byte in enumerate(user) if byte and i not in allowed), None)
    if bad is not None:
        name = next((n for n, (offset, size) in _SKB_SPANS.items() if offset <= bad < offset + size), None)
        raise TestRunError(f"ctx: __sk_buff.{name or f'byte {bad}'} must be 0: a test run takes only "
                           f"{', '.join(SKB_CTX_IN)}", errno.EINVAL, f"ctx.{name}" if name else "ctx_in")
    if wire_len and not skb_len <= wire_len <= GSO_LEGACY_MAX_SIZE:
        raise TestRunError(f"ctx: __sk_buff.wire_len {wire_len} must be between the packet's {skb_len} bytes and "
                           f"{GSO_LEGACY_MAX_SIZE}", errno.EINVAL, "ctx.wire_len")
    if gso_segs > GSO_MAX_SEGS:
        raise TestRunError(f"ctx: __sk_buff.gso_segs {gso_segs} is over {GSO_MAX_SEGS}", errno.EINVAL, "ctx.gso_segs")


def skb_ctx_out(native: bytes, ctx: bytes | None) -> bytes:
    """An skb program's ctx_out: the ctx_in given (zeros without one) with the SKB_CTX_OUT fields
    as the run left them (convert_skb_to___skb copies back nothing else)."""
    out = bytearray(_user_bytes(SK_BUFF, ctx))
    for name in SKB_CTX_OUT:
        offset, size = _SKB_SPANS[name]
        out[offset:offset + size] = native[offset:offset + size]
    return bytes(out)


@dataclass(frozen=True)
class XdpInput:
    """How BPF_PROG_TEST_RUN splits an XDP program's data_in, as its xdp_md ctx_in says."""
    meta_len: int  # the first meta_len bytes are metadata, in front of data
    end: int  # data_in up to here is the linear part; the rest goes to frags
    ctx: bytes  # the ctx with its offsets cleared: the input fields build_native_ctx takes


def xdp_input(ctx: bytes | None, data_len: int) -> XdpInput:
    """The kernel's reading of an XDP ctx_in (bpf_prog_test_run_xdp, xdp_convert_md_to_buff):
    ``data`` is the metadata's length and ``data_end`` the linear part's end, both offsets into
    data_in; ``data_meta`` must be 0; ``egress_ifindex`` must be 0; an ``rx_queue_index`` needs
    an ``ingress_ifindex``, and the only device is the loopback (ifindex 1, one rx queue). Each
    refusal is a TestRunError with the kernel's errno."""
    user = _user_bytes(XDP_MD, ctx)
    data, data_end, data_meta, ingress, rx_queue, egress = struct.unpack("<6I", user)
    if ctx is None:
        data_end = data_len
    meta_room = XDP_HEADROOM - XDP_FRAME_SIZE
    if data_meta:
        raise TestRunError("ctx: xdp_md.data_meta must be 0: the metadata starts data_in", errno.EINVAL,
                           "ctx.data_meta")
    if data_end > data_len:
        raise TestRunError(f"ctx: xdp_md.data_end ({data_end}) is past the {data_len} bytes of data", errno.EINVAL,
                           "ctx.data_end")
    if data > data_end:
        raise TestRunError(f"ctx: xdp_md.data ({data}) is past xdp_md.data_end ({data_end})", errno.EINVAL,
                           "ctx.data")
    if data % 4 or data > min(XDP_META_MAX, meta_room):
        raise TestRunError(f"ctx: xdp_md.data ({data}) is the metadata's length: a multiple of 4, at most "
                           f"{meta_room // 4 * 4}", errno.EINVAL, "ctx.data")
    if data_len - data < ETH_HLEN:
        raise TestRunError(f"xdp programs need at least {ETH_HLEN} bytes of data after the metadata, got "
                           f"{data_len - data}", errno.EINVAL, "data_in")
    if egress:
        raise TestRunError("ctx: xdp_md.egress_ifindex must be 0", errno.EINVAL, "ctx.egress_ifindex")
    if rx_queue and not ingress:
        raise TestRunError("ctx: xdp_md.rx_queue_index needs an ingress_ifindex", errno.EINVAL, "ctx.rx_queue_index")
    if ingress and ingress != LOOPBACK_IFINDEX:
        raise TestRunError(f"ctx: xdp_md.ingress_ifindex {ingress}: no such device; a test run has only the "
                           f"loopback device, ifindex {LOOPBACK_IFINDEX}", errno.ENODEV, "ctx.ingress_ifindex")
    if rx_queue:
        raise TestRunError(f"ctx: xdp_md.rx_queue_index {rx_queue}: the loopback device has only rx queue 0",
                           errno.EINVAL, "ctx.rx_queue_index")
    return XdpInput(data, data_end, bytes(12) + user[12:])


def _user_bytes(layout: ContextLayout, ctx: bytes | None) -> bytes:
    """The user's ctx as exactly `layout.size` bytes (shorter is zero-padded; longer must be zeros)."""
    user = bytes(ctx or b"")
    if len(user) > layout.size:
        if any(user[layout.size:]):
            # bpf_ctx_init: bpf_check_uarg_tail_zero's E2BIG.
            raise TestRunError(f"ctx: bytes past the {layout.size}-byte struct {layout.struct_name} must be zero",
                               errno.E2BIG, "ctx_in")
        user = user[:layout.size]
    return user.ljust(layout.size, b"\0")


def ctx_only_image(ptype: ProgramType, ctx: bytes | None) -> bytes:
    """The memory r1 points at in a ctx-only test run (raw_tp, syscall; tracepoint, kprobe and
    perf_event in bpfjit): a copy of the user's ctx.

    As in bpf_prog_test_run_raw_tp, raw tracepoint args are at most 12 u64 and the rest reads
    as zero; a syscall program gets the buffer as given (bpf_prog_test_run_syscall), of which
    the first len(ctx) bytes are copied back out afterwards.
    """
    layout = ptype.layout
    if ptype.test_run != RUN_CTX or layout is None:
        raise BPFError(f"{ptype.name} programs are not test-run on a ctx alone")
    user = bytes(ctx or b"")
    if len(user) > layout.size:
        # bpf_prog_test_run_raw_tp / _syscall: ctx_size_in past the args / U16_MAX is EINVAL; the
        # types the kernel cannot test-run (tracepoint, kprobe, perf_event) are refused alike.
        raise TestRunError(f"ctx: {ptype.name} programs take at most {layout.size} bytes of {layout.struct_name}, "
                           f"got {len(user)}", errno.EINVAL, "ctx_in")
    return user.ljust(layout.size, b"\0")


def user_ctx(ptype: ProgramType, native: bytes, data_start: int) -> bytes:
    """The program's view of a native context after a run (ctx_out), packet pointers as offsets
    from data_start (an XDP run's data_meta, as xdp_convert_buff_to_md reports them).

    A hidden value field at a visible field's offset holds what the user passed in; it comes
    after that field in the layout and so wins.
    """
    layout = ptype.layout
    assert layout is not None
    out = bytearray(layout.size)
    for field in layout.fields:
        if not field.visible and field.pointer:
            continue
        raw = native[field.native_offset:field.native_offset + field.native_size]
        if field.pointer in PACKET_POINTERS:
            value = struct.unpack("<Q", raw)[0] - data_start
            raw = (value & 0xFFFF_FFFF).to_bytes(4, "little")
        elif field.pointer:
            raw = bytes(field.size)  # not an address the user can use
        out[field.offset:field.offset + field.size] = raw[:field.size]
    return bytes(out)

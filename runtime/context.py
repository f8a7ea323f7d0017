"""Program types and their contexts: what r1 points at, and how the program's view maps to memory.

A packet program reads ``struct xdp_md`` or ``struct __sk_buff``, whose ``data``/``data_end``
fields are 32 bits wide in the program's view but are real pointers at run time. As in the kernel,
the program's accesses are rewritten before it runs (``bpfjit.verifier.ctx_access``) to reach a
native context whose pointer fields are 64 bits wide. Each :class:`CtxField` says where a field of
the program's view lives in the native context.

Supported subset of ``struct __sk_buff`` (for ``socket``/``tc``/``classifier`` programs): len,
pkt_type, mark, queue_mapping, protocol, priority, ingress_ifindex, ifindex, tc_index, cb[0..4],
hash, tc_classid, data, data_end. Other fields are rejected at load with the kernel's
"invalid bpf_context access" message.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from bpfjit.errors import BPFError

XDP_HEADROOM = 256  # XDP_PACKET_HEADROOM: room in front of the packet for bpf_xdp_adjust_head
ETH_HLEN = 14


@dataclass(frozen=True)
class CtxField:
    name: str
    offset: int  # in the program's view (the uapi struct)
    size: int
    native_offset: int
    native_size: int  # 8 for the pointer fields the kernel rewrites
    writable: bool = False
    pointer: bool = False  # data/data_end/data_meta: filled with packet addresses


@dataclass(frozen=True)
class ContextLayout:
    struct_name: str
    size: int  # size of the uapi struct (the ctx a user passes to test_run)
    native_size: int
    fields: tuple[CtxField, ...]

    def field_at(self, offset: int, size: int) -> CtxField | None:
        """The field a load/store of `size` bytes at `offset` reads or writes, if it is allowed."""
        for field in self.fields:
            if field.offset <= offset and offset + size <= field.offset + field.size:
                # Pointer fields must be read whole (the kernel rejects partial reads of them).
                if field.pointer and (offset, size) != (field.offset, field.size):
                    return None
                return field
        return None


def _fields(*specs: tuple) -> tuple[CtxField, ...]:
    return tuple(CtxField(*spec) for spec in specs)


XDP_MD = ContextLayout("xdp_md", 24, 40, _fields(
    ("data", 0, 4, 0, 8, False, True),
    ("data_end", 4, 4, 8, 8, False, True),
    ("data_meta", 8, 4, 16, 8, False, True),
    ("ingress_ifindex", 12, 4, 24, 4),
    ("rx_queue_index", 16, 4, 28, 4),
    ("egress_ifindex", 20, 4, 32, 4),
))

# struct __sk_buff is 192 bytes; the native copy keeps every value field at its uapi offset and
# appends the two packet pointers after it.
_SKB_DATA, _SKB_DATA_END = 192, 200
SK_BUFF = ContextLayout("__sk_buff", 192, 208, _fields(
    ("len", 0, 4, 0, 4),
    ("pkt_type", 4, 4, 4, 4),
    ("mark", 8, 4, 8, 4, True),
    ("queue_mapping", 12, 4, 12, 4, True),
    ("protocol", 16, 4, 16, 4),
    ("priority", 32, 4, 32, 4, True),
    ("ingress_ifindex", 36, 4, 36, 4),
    ("ifindex", 40, 4, 40, 4),
    ("tc_index", 44, 4, 44, 4, True),
    ("cb", 48, 20, 48, 20, True),
    ("hash", 68, 4, 68, 4),
    ("tc_classid", 72, 4, 72, 4, True),
    ("data", 76, 4, _SKB_DATA, 8, False, True),
    ("data_end", 80, 4, _SKB_DATA_END, 8, False, True),
))


@dataclass(frozen=True)
class ProgramType:
    name: str
    layout: ContextLayout | None  # None: raw (r1 = memory, r2 = its length)
    min_data: int = 0
    # False for socket filters: as BPF_PROG_TEST_RUN does, the Ethernet header is pulled before
    # the run (the program sees the packet from the network header on) and zeroed afterwards.
    sees_l2: bool = True


RAW = ProgramType("raw", None)
XDP = ProgramType("xdp", XDP_MD, ETH_HLEN)
SOCKET = ProgramType("socket", SK_BUFF, ETH_HLEN, sees_l2=False)
TC = ProgramType("tc", SK_BUFF, ETH_HLEN)
LOOPBACK_IFINDEX = 1  # test runs happen on the loopback device
PROGRAM_TYPES = {t.name: t for t in (RAW, XDP, SOCKET, TC)}


def program_type_for_section(section: str) -> ProgramType:
    """libbpf's section-name conventions; unknown sections run as raw programs."""
    head = section.split("/", 1)[0]
    if head in ("xdp", "xdp.frags"):
        return XDP
    if head == "socket":
        return SOCKET
    if head in ("tc", "classifier", "tcx", "action"):
        return TC
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


def build_native_ctx(ptype: ProgramType, ctx: bytes | None, data_start: int, data_len: int,
                     frame: bytes = b"") -> bytes:
    """The native context for a run: the user's ctx values, packet pointers filled in.

    Like BPF_PROG_TEST_RUN, a ctx given by the user may only set the input fields the program
    type accepts: the pointer fields must be zero and bytes past the struct must be zero.
    """
    layout = ptype.layout
    assert layout is not None
    user = bytes(ctx or b"")
    if len(user) > layout.size:
        if any(user[layout.size:]):
            raise BPFError(f"ctx: bytes past the {layout.size}-byte struct {layout.struct_name} must be zero")
        user = user[:layout.size]
    user = user.ljust(layout.size, b"\0")
    native = bytearray(layout.native_size)
    for field in layout.fields:
        value = user[field.offset:field.offset + field.size]
        if field.pointer:
            if any(value):
                raise BPFError(f"ctx: {layout.struct_name}.{field.name} is set by the runtime and must be zero")
            continue
        native[field.native_offset:field.native_offset + field.size] = value
    pointers = {"data": data_start, "data_end": data_start + data_len, "data_meta": data_start}
    for field in layout.fields:
        if field.pointer:
            struct.pack_into("<Q", native, field.native_offset, pointers[field.name])
    if layout is SK_BUFF:
        struct.pack_into("<I", native, 0, data_len)  # len is the packet's length
        for name, value in skb_metadata(frame).items():
            struct.pack_into("<I", native, next(f.native_offset for f in layout.fields if f.name == name), value)
        ifindex = next(f for f in layout.fields if f.name == "ifindex")
        if not struct.unpack_from("<I", native, ifindex.native_offset)[0]:
            struct.pack_into("<I", native, ifindex.native_offset, LOOPBACK_IFINDEX)
    return bytes(native)


def user_ctx(ptype: ProgramType, native: bytes, data_start: int) -> bytes:
    """The program's view of a native context after a run (ctx_out), pointers as offsets."""
    layout = ptype.layout
    assert layout is not None
    out = bytearray(layout.size)
    for field in layout.fields:
        raw = native[field.native_offset:field.native_offset + field.native_size]
        if field.pointer:
            value = struct.unpack("<Q", raw)[0] - data_start
            raw = (value & 0xFFFF_FFFF).to_bytes(4, "little")
        out[field.offset:field.offset + field.size] = raw[:field.size]
    return bytes(out)

"""The memory one test run gives a program, as BPF_PROG_TEST_RUN builds it per program type: raw
programs get a copy of the data (r1, r2 = its length); skb programs a context around a copy of
the packet, with headroom in front; XDP programs the kernel's xdp_buff (:class:`XdpBuffer`): one
page with 256 bytes of headroom and the shared-info tail reserved, the rest of a long input in
page-sized frags, metadata in front of the packet; ctx-only types (raw_tp, syscall, tracing) a
copy of the context alone. After the run, ``read_out`` gives data_out and ctx_out."""
from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass, field
from typing import Callable

from bpfjit.errors import BPFError

from .context import (ETH_HLEN, MAX_PACKET_LEN, RUN_CTX, XDP_FRAME_SIZE, XDP_HEADROOM, XDP_MD, ProgramType,
                      build_native_ctx, ctx_only_image, user_ctx, xdp_input)
from .memory import Buffer, Region

PAGE_SIZE = 4096  # an XDP test run's frame size, and the size of each frag
SHARED_INFO_SIZE = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info)): reserved at a page's end
XDP_LINEAR_MAX = PAGE_SIZE - XDP_HEADROOM - SHARED_INFO_SIZE  # 3520 bytes of packet in the page
MAX_SKB_FRAGS = 17  # more frags than this and the kernel's test run fails with -ENOMEM
_DATA, _DATA_END, _DATA_META = (XDP_MD.field(name).native_offset for name in ("data", "data_end", "data_meta"))


@dataclass
class RunMemory:
    """The memory of one test run: r1/r2, the regions the program may touch, how to read results."""
    r1: int
    r2: int
    regions: list[Region]
    buffers: list[Buffer]  # kept alive for the run
    read_out: Callable[[], tuple[bytes, bytes | None]]
    xdp: "XdpBuffer | None" = None  # an XDP run's xdp_buff (the helpers find it by its ctx)


def run_memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None) -> RunMemory:
    """The memory program `name` of type `ptype` runs on, for this data and ctx (BPFError for
    input the kernel's test run refuses)."""
    if ptype.layout is None:
        if ctx:
            raise BPFError(f"{name}: raw programs take no ctx (r1 is the data)")
        buffer = Buffer(len(data), data)
        region = Region(buffer.address, buffer.size, True, "program memory")
        return RunMemory(buffer.address, buffer.size, [region], [buffer], lambda: (buffer.read(), None))
    if ptype.test_run == RUN_CTX:
        return _ctx_only_memory(ptype, name, data, ctx)
    if ptype.layout is XDP_MD:
        return _xdp_memory(ptype, data, ctx)
    return _packet_memory(ptype, name, data, ctx)


def _ctx_only_memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None) -> RunMemory:
    """r1 = a copy of the ctx and nothing else; a syscall program's ctx comes back as ctx_out, as
    BPF_PROG_TEST_RUN copies it back."""
    if data:
        raise BPFError(f"{name}: {ptype.name} programs run on a ctx alone: pass ctx=..., no data")
    image = Buffer(ptype.layout.size, ctx_only_image(ptype, ctx))
    writable = any(f.writable for f in ptype.layout.fields)
    region = Region(image.address, image.size, writable, "context")
    given = len(ctx or b"")
    read_out = (lambda: (b"", image.read()[:given])) if writable else (lambda: (b"", None))
    return RunMemory(image.address, 0, [region], [image], read_out)


def _packet_memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None) -> RunMemory:
    """r1 = the native context around a copy of the packet, XDP_HEADROOM bytes after its buffer's
    start; a type that does not see layer 2 starts at the network header."""
    if len(data) < ptype.min_data:
        raise BPFError(f"{name}: {ptype.name} programs need at least {ptype.min_data} bytes of data")
    if len(data) > MAX_PACKET_LEN:
        raise BPFError(f"{name}: a packet of {len(data)} bytes is longer than the {MAX_PACKET_LEN} "
                       "a program may see")
    packet = Buffer(XDP_HEADROOM + len(data), bytes(XDP_HEADROOM) + data)
    pulled = 0 if ptype.sees_l2 else ETH_HLEN
    start = packet.address + XDP_HEADROOM + pulled
    native = Buffer(ptype.layout.native_size, build_native_ctx(ptype, ctx, start, len(data) - pulled, data))
    layout = ptype.layout

    def read_out() -> tuple[bytes, bytes | None]:
        fields = {f.name: f for f in layout.fields}
        image = native.read()
        begin = int.from_bytes(image[fields["data"].native_offset:][:8], "little")
        end = int.from_bytes(image[fields["data_end"].native_offset:][:8], "little")
        # A pulled Ethernet header comes back zeroed, as the kernel pushes it back.
        return bytes(pulled) + ctypes.string_at(begin, max(0, end - begin)), user_ctx(ptype, image, start)

    regions = [Region(start, len(data) - pulled, True, "packet"),
               Region(native.address, native.size, True, "context")]
    return RunMemory(native.address, 0, regions, [packet, native], read_out)


@dataclass(eq=False)
class XdpBuffer:
    """An XDP test run's xdp_buff, as bpf_prog_test_run_xdp builds it: the packet starts
    XDP_HEADROOM bytes into one page (metadata taken from ctx_in just before it) and may reach up
    to the page's reserved shared-info tail; input past the linear part sits in page-sized frags.

    ``data``, ``data_end`` and ``data_meta`` live in the native context, where the program reads
    them; the XDP helpers (runtime/xdp_helpers.py) move them, and keep ``region``, the run's
    "packet" region, on [data_meta, data_end) so that sandbox and helper checks follow.
    """
    page: Buffer
    ctx: Buffer
    region: Region
    frags: list[Buffer] = field(default_factory=list)
    frag_sizes: list[int] = field(default_factory=list)

    @property
    def hard_start(self) -> int:
        return self.page.address

    @property
    def frame_end(self) -> int:
        """The lowest address data or metadata may start at (the struct xdp_frame is below)."""
        return self.page.address + XDP_FRAME_SIZE

    @property
    def hard_end(self) -> int:
        """Where the linear part must end: the page's shared-info tail starts here."""
        return self.page.address + PAGE_SIZE - SHARED_INFO_SIZE

    def _pointer(self, offset: int) -> int:
        return ctypes.c_uint64.from_address(self.ctx.address + offset).value

    def _set_pointer(self, offset: int, value: int) -> None:
        ctypes.c_uint64.from_address(self.ctx.address + offset).value = value

    data = property(lambda self: self._pointer(_DATA), lambda self, v: self._set_pointer(_DATA, v))
    data_end = property(lambda self: self._pointer(_DATA_END), lambda self, v: self._set_pointer(_DATA_END, v))
    data_meta = property(lambda self: self._pointer(_DATA_META), lambda self, v: self._set_pointer(_DATA_META, v))

    def length(self) -> int:
        """xdp_get_buff_len: the linear part from data, and every frag."""
        return self.data_end - self.data + sum(self.frag_sizes)

    def pieces(self) -> list[tuple[int, int]]:
        """(address, size) of the packet's parts in order: the linear part from data, the frags."""
        return [(self.data, self.data_end - self.data),
                *((frag.address, size) for frag, size in zip(self.frags, self.frag_sizes))]

    def copy(self, offset: int, address: int, size: int, into_packet: bool) -> None:
        """Copy size bytes between the packet at offset (across its parts) and address."""
        for start, length in self.pieces():
            if offset < length and size:
                part = min(size, length - offset)
                source, target = (address, start + offset) if into_packet else (start + offset, address)
                ctypes.memmove(target, source, part)
                address, size, offset = address + part, size - part, 0
            else:
                offset -= length

    def contents(self) -> bytes:
        """data_out: from data_meta (the metadata comes first) to data_end, then the frags."""
        linear = ctypes.string_at(self.data_meta, self.data_end - self.data_meta)
        return linear + b"".join(ctypes.string_at(frag.address, size)
                                 for frag, size in zip(self.frags, self.frag_sizes))


_XDP_BUFFERS: "weakref.WeakValueDictionary[int, XdpBuffer]" = weakref.WeakValueDictionary()


def xdp_buffer(ctx: int) -> XdpBuffer | None:
    """The xdp_buff of the XDP run whose native context is at ctx (None: no XDP run's)."""
    return _XDP_BUFFERS.get(ctx)


def _xdp_memory(ptype: ProgramType, data: bytes, ctx: bytes | None) -> RunMemory:
    """r1 = an xdp_md around the kernel's xdp_buff for this data (and ctx_in: metadata, linear
    end, input fields); BPFError, with the kernel's errno, for input the kernel refuses."""
    split = xdp_input(ctx, len(data))
    # The metadata is carved out of the headroom: data itself always starts XDP_HEADROOM in.
    linear_end = min(split.end, split.meta_len + XDP_LINEAR_MAX)
    rest = data[linear_end:]
    frag_count = -(-len(rest) // PAGE_SIZE)
    if frag_count > MAX_SKB_FRAGS:
        raise BPFError(f"a packet of {len(data)} bytes needs {frag_count} frags; the kernel's test run "
                       f"allows {MAX_SKB_FRAGS} (ENOMEM)")
    page = Buffer(PAGE_SIZE)
    meta_start = page.address + XDP_HEADROOM - split.meta_len
    page.write(data[:linear_end], XDP_HEADROOM - split.meta_len)
    start = page.address + XDP_HEADROOM
    native = Buffer(XDP_MD.native_size, build_native_ctx(ptype, split.ctx, start, linear_end - split.meta_len,
                                                          meta_len=split.meta_len))
    region = Region(meta_start, linear_end, True, "packet")
    xdp = XdpBuffer(page, native, region)
    for at in range(0, len(rest), PAGE_SIZE):
        chunk = rest[at:at + PAGE_SIZE]
        xdp.frags.append(Buffer(PAGE_SIZE, chunk))
        xdp.frag_sizes.append(len(chunk))
    _XDP_BUFFERS[native.address] = xdp

    def read_out() -> tuple[bytes, bytes | None]:
        return xdp.contents(), user_ctx(ptype, native.read(), xdp.data_meta)

    regions = [region, Region(native.address, native.size, True, "context")]
    return RunMemory(native.address, 0, regions, [page, native], read_out, xdp)

"""The memory one test run gives a program, as BPF_PROG_TEST_RUN builds it per program type: raw
programs get a copy of the data (r1, r2 = its length); skb programs a context around a copy of
the packet, with headroom in front; XDP programs the kernel's xdp_buff (:class:`XdpBuffer`): one
page with 256 bytes of headroom and the shared-info tail reserved, the rest of a long input in
page-sized frags, metadata in front of the packet; ctx-only types (raw_tp, syscall, tracing) a
copy of the context alone. After the run, ``read_out`` gives data_out and ctx_out, and
``output`` what of them fits the caller's buffers (``data_size_out``, ``ctx_size_out``).

The packet helpers move and resize the packet (runtime/xdp_helpers.py, runtime/skb_helpers.py,
and their native twins, jit/native_packet.py): :class:`XdpBuffer` and :class:`SkbBuffer` say
where it is. Its truth is the pointers in the native context, which both kinds of helper move;
the run's "packet" region (:class:`PacketRegion`) reads them at every look. The native context
ends with the runtime's own words (runtime/context.py ``CTX_RUNTIME``), which tell a native
helper what kind of context it was handed and where the page and the region table entry are."""
from __future__ import annotations

import ctypes
import errno
import os
import weakref
from dataclasses import dataclass, field
from typing import Callable

from bpfjit.errors import BPFError, TestRunError

from .context import (CTX_FRAG_TABLE, CTX_FRAGS, CTX_KIND_SKB, CTX_KIND_XDP, CTX_PAGE, CTX_REGION_ENTRY,
                      CTX_RUNTIME_END, CTX_SKB_ENCAP, CTX_SKB_END, CTX_SKB_HEAD, CTX_SKB_HEADROOM, CTX_SKB_MAC,
                      CTX_SKB_NETWORK, CTX_SKB_TRANSPORT, CTX_SKB_TUNNEL, CTX_TAG, ETH_HLEN, FRAG_ENTRY, RUN_CTX,
                      RUN_MEMORY, SKB_TRANSPORT_UNSET, SKB_TUNNEL_INFO,
                      XDP_FRAME_SIZE, XDP_HEADROOM, XDP_MD,
                      ContextLayout, ProgramType, build_native_ctx, ctx_only_image, skb_ctx_out, user_ctx, xdp_input)
from .memory import Buffer, Region

PAGE_SIZE = 4096  # an XDP test run's frame size, and the size of each frag
SHARED_INFO_SIZE = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info)): reserved at a page's end
NET_SKB_PAD = 64  # an skb's headroom: max(32, L1_CACHE_BYTES)
# The longest frame an skb test run takes: bpf_prog_test_run_skb's one page, less the headroom and
# the shared info at its end (bpf_test_init refuses more with EINVAL): 3,712 bytes on x86-64.
SKB_TEST_MAX = PAGE_SIZE - NET_SKB_PAD - SHARED_INFO_SIZE
XDP_LINEAR_MAX = PAGE_SIZE - XDP_HEADROOM - SHARED_INFO_SIZE  # 3520 bytes of packet in the page
MAX_SKB_FRAGS = 17  # more frags than this and the kernel's test run fails with -ENOMEM
# SKB_MAX_ALLOC: the longest packet the skb helpers grow a packet to (BPF_SKB_MAX_LEN).
SKB_MAX_LEN = (PAGE_SIZE << 2) - SHARED_INFO_SIZE
# The secret in every packet context's tag (CTX_TAG): random per process and never 0, so no
# value a user or a program can put in a context of another kind (ctx_in, cb) passes for a tag.
CTX_SECRET = ctypes.c_uint64(int.from_bytes(os.urandom(8), "little") | 1 << 63)


@dataclass
class RunMemory:
    """The memory of one test run: r1/r2, the regions the program may touch, how to read results."""
    r1: int
    r2: int
    regions: list[Region]
    buffers: list[Buffer]  # kept alive for the run
    read_out: Callable[[], tuple[bytes, bytes | None]]
    xdp: "XdpBuffer | None" = None  # an XDP run's xdp_buff (the helpers find it by its ctx)
    skb: "SkbBuffer | None" = None  # an skb program's sk_buff
    sizes: "OutputSizes" = field(default_factory=lambda: OutputSizes())

    def output(self) -> "Output":
        """data_out and ctx_out as BPF_PROG_TEST_RUN copies them into the caller's buffers."""
        data_out, ctx_out = self.read_out()
        frags = sum(self.xdp.frag_sizes) if self.xdp is not None else 0
        return copy_out(data_out, ctx_out, frags, self.sizes)


@dataclass(frozen=True)
class OutputSizes:
    """The caller's output buffers (BPF_PROG_TEST_RUN's data_size_out and ctx_size_out).

    data: None or 0 copies the whole packet (the kernel's "no size hint"), N at most N bytes.
    ctx: None copies the whole context; N at most N bytes; 0 is a ctx_out buffer of no size,
    which the kernel refuses (EINVAL) before it runs anything."""
    data: int | None = None
    ctx: int | None = None


@dataclass(frozen=True)
class Output:
    """What the caller gets back: the bytes copied, the full sizes, and errno.ENOSPC when a
    buffer was too small (the run happened and retval stands, as in the kernel)."""
    data_out: bytes
    data_size_out: int
    ctx_out: bytes | None
    ctx_size_out: int | None
    errno: int = 0


def check_output_sizes(ptype: ProgramType, name: str, sizes: OutputSizes) -> None:
    """Refuse the buffers the kernel refuses before a run (TestRunError: its field and errno); a
    size no u32 holds is a plain BPFError, as it never reaches the kernel."""
    for field_name, size in (("data_size_out", sizes.data), ("ctx_size_out", sizes.ctx)):
        if size is not None and (not isinstance(size, int) or not 0 <= size <= 0xFFFF_FFFF):
            raise BPFError(f"{name}: {field_name} must be an int from 0 to 2**32-1, not {size!r}")
    if sizes.ctx == 0:
        # bpf_prog_test_run refuses a ctx_out pointer whose ctx_size_out is 0.
        raise TestRunError(f"{name}: ctx_size_out is 0: pass None for no ctx_out, or the size of its buffer",
                           errno.EINVAL, "ctx_size_out")
    if ptype.test_run == RUN_CTX and (sizes.data is not None or sizes.ctx is not None):
        # bpf_prog_test_run_raw_tp / _syscall take neither data_out nor ctx_out.
        which = "data_size_out" if sizes.data is not None else "ctx_size_out"
        raise TestRunError(f"{name}: {ptype.name} programs copy nothing out: {which} must be None", errno.EINVAL,
                           which)
    if ptype.test_run == RUN_MEMORY and sizes.ctx is not None:
        raise TestRunError(f"{name}: raw programs have no ctx: ctx_size_out must be None", errno.EINVAL,
                           "ctx_size_out")


def copy_out(data_out: bytes, ctx_out: bytes | None, frags: int, sizes: OutputSizes) -> Output:
    """bpf_test_finish, then bpf_ctx_finish: cut each output to its buffer, report its full size,
    ENOSPC when cut. With XDP frags (`frags` bytes of them) the kernel copies every frag and
    shortens the linear part instead, and refuses (ENOSPC, nothing reported) a buffer that
    cannot hold the frags; data cut short means no ctx_out at all."""
    full = len(data_out)
    if sizes.data and full > sizes.data:
        linear = sizes.data - frags
        if linear < 0:
            raise TestRunError(f"data_size_out {sizes.data} cannot hold the packet's {frags} bytes of frags: "
                               "the kernel copies nothing back", errno.ENOSPC, "data_size_out")
        cut = data_out[:linear] + data_out[full - frags:] if frags else data_out[:sizes.data]
        return Output(cut, full, None, None, errno.ENOSPC)
    if ctx_out is None:
        return Output(data_out, full, None, None)
    if sizes.ctx is not None and len(ctx_out) > sizes.ctx:
        return Output(data_out, full, ctx_out[:sizes.ctx], len(ctx_out), errno.ENOSPC)
    return Output(data_out, full, ctx_out, len(ctx_out))


def _u64(address: int) -> ctypes.c_uint64:
    return ctypes.c_uint64.from_address(address)


def context_buffer(image: bytes, kind: int = 0) -> Buffer:
    """A native context holding image, with room for the runtime's words after it (a packet
    context's tag says its kind; any other context's tag is 0, which no packet helper takes)."""
    buffer = Buffer(max(len(image), CTX_RUNTIME_END), image)
    if kind:
        _u64(buffer.address + CTX_TAG).value = buffer.address ^ CTX_SECRET.value ^ kind
    return buffer


class PacketRegion(Region):
    """The run's "packet" region, read from the native context at every look: [the pointer at
    `start_field`, the one at `end_field`). The helpers, Python's and native ones alike, move the
    packet by moving those pointers, and the region follows with no bookkeeping.

    The run's region table (RunEnv.regions: what the sandboxed JIT and the checked native
    interpreter read) holds a copy of the bounds: :meth:`bind_table` tells the context where the
    packet's entry is (CTX_REGION_ENTRY), and every move rewrites that entry (:meth:`publish`
    here, jit/native_packet.py likewise)."""

    def __init__(self, ctx: int, start_field: int, end_field: int):
        # Region is a frozen dataclass whose start and size are properties here.
        for name, value in (("writable", True), ("name", "packet"), ("_ctx", ctx),
                            ("_start_field", start_field), ("_end_field", end_field)):
            object.__setattr__(self, name, value)

    start = property(lambda self: _u64(self._ctx + self._start_field).value)
    size = property(lambda self: _u64(self._ctx + self._end_field).value - self.start)

    def bind_table(self, table: int, count: int) -> None:
        """Find the packet's entry in the region table at `table` (`count` triples; 0: the run
        has none, or it ended) and remember it in the context."""
        entries = (ctypes.c_uint64 * (3 * count)).from_address(table) if table else ()
        bounds = (self.start, self.size)
        entry = next((table + 8 * i for i in range(0, len(entries), 3)
                      if (entries[i], entries[i + 1]) == bounds), 0)
        _u64(self._ctx + CTX_REGION_ENTRY).value = entry

    def publish(self) -> None:
        """After the packet moved: its entry in the run's region table follows."""
        entry = _u64(self._ctx + CTX_REGION_ENTRY).value
        if entry:
            _u64(entry).value, _u64(entry + 8).value = self.start, self.size


def run_memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None,
               sizes: OutputSizes | None = None) -> RunMemory:
    """The memory program `name` of type `ptype` runs on, for this data and ctx, whose results go
    to buffers of these sizes (TestRunError for input the kernel's test run refuses)."""
    sizes = sizes or OutputSizes()
    check_output_sizes(ptype, name, sizes)
    if ctx is None and sizes.ctx:
        # A ctx_out buffer alone: the kernel runs on a zeroed context (bpf_ctx_init) and copies it out.
        ctx = bytes(ptype.layout.size)
    memory = _memory(ptype, name, data, ctx)
    memory.sizes = sizes
    return memory


def _memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None) -> RunMemory:
    if ptype.layout is None:
        if ctx:
            # No kernel type runs so: refused as a ctx-only type refuses the input it does not take.
            raise TestRunError(f"{name}: raw programs take no ctx (r1 is the data)", errno.EINVAL, "ctx_in")
        buffer = Buffer(len(data), data)
        region = Region(buffer.address, buffer.size, True, "program memory")
        return RunMemory(buffer.address, buffer.size, [region], [buffer], lambda: (buffer.read(), None))
    if ptype.test_run == RUN_CTX:
        return _ctx_only_memory(ptype, name, data, ctx)
    if ctx is not None and not ctx:
        # BPF_PROG_TEST_RUN refuses a ctx_in pointer with ctx_size_in 0.
        raise TestRunError(f"{name}: ctx is empty: pass None for no ctx, or the {ptype.layout.struct_name}",
                           errno.EINVAL, "ctx_in")
    if ptype.layout is XDP_MD:
        return _xdp_memory(ptype, data, ctx)
    return _packet_memory(ptype, name, data, ctx)


def _ctx_only_memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None) -> RunMemory:
    """r1 = a copy of the ctx and nothing else; a syscall program's ctx comes back as ctx_out, as
    BPF_PROG_TEST_RUN copies it back."""
    if data:
        # bpf_prog_test_run_raw_tp / _syscall refuse a data_in.
        raise TestRunError(f"{name}: {ptype.name} programs run on a ctx alone: pass ctx=..., no data", errno.EINVAL,
                           "data_in")
    image = context_buffer(ctx_only_image(ptype, ctx))
    writable = any(f.writable for f in ptype.layout.fields)
    region = Region(image.address, ptype.layout.size, writable, "context")
    given = len(ctx or b"")
    read_out = (lambda: (b"", image.read()[:given])) if writable else (lambda: (b"", None))
    return RunMemory(image.address, 0, [region], [image], read_out)


def context_regions(address: int, layout: ContextLayout) -> list[Region]:
    """A packet program's native context as a program may touch it: all of it read-only, then each
    field the program may write (the layout's writable ones, at their native places). The
    pointer words (data, data_end, data_meta) are the packet region's bounds and what the run's
    outputs are read from: a sandboxed program that could store into them would move its packet
    over any memory, and the host would read the run's output from there."""
    return [Region(address, layout.native_size, False, "context"),
            *(Region(address + f.native_offset, f.native_size, True, "context") for f in layout.fields if f.writable)]


# EtherType -> the network header an skb test run pulls in before the program runs: the kernel
# refuses (EINVAL) a packet that announces one and is too short to hold it.
_L3_HEADERS = {0x0800: ("IPv4", 20), 0x86DD: ("IPv6", 40)}


def network_header_shortfall(frame: bytes) -> int:
    """How many bytes an Ethernet frame lacks of the network header its EtherType announces (0:
    none, or a header it holds): an skb test run refuses a frame that lacks some."""
    header = _L3_HEADERS.get(int.from_bytes(frame[12:14], "big"))
    return max(0, header[1] - (len(frame) - ETH_HLEN)) if header is not None else 0


def _packet_memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None) -> RunMemory:
    """r1 = the native context around the test run's sk_buff (:class:`SkbBuffer`) for a copy of
    the packet; a type that does not see layer 2 starts at the network header."""
    if len(data) < ptype.min_data:
        raise TestRunError(f"{name}: {ptype.name} programs need at least {ptype.min_data} bytes of data",
                           errno.EINVAL, "data_in")
    if len(data) > SKB_TEST_MAX:
        raise TestRunError(f"{name}: a packet of {len(data)} bytes is longer than the {SKB_TEST_MAX} an skb "
                           "test run takes (one page, less its headroom and shared info)", errno.EINVAL, "data_in")
    missing = network_header_shortfall(data)
    if missing:
        ethertype = int.from_bytes(data[12:14], "big")
        kind, size = _L3_HEADERS[ethertype]
        raise TestRunError(f"{name}: the packet's EtherType {ethertype:#06x} announces {kind}, but its "
                           f"{len(data) - ETH_HLEN} bytes after the Ethernet header are shorter than the "
                           f"{size}-byte {kind} header the kernel's test run pulls", errno.EINVAL, "data_in")
    storage = Buffer(XDP_HEADROOM + len(data) + SHARED_INFO_SIZE, bytes(XDP_HEADROOM) + data)
    pulled = 0 if ptype.sees_l2 else ETH_HLEN
    start = storage.address + XDP_HEADROOM + pulled
    layout = ptype.layout
    native = context_buffer(build_native_ctx(ptype, ctx, start, len(data) - pulled, data), CTX_KIND_SKB)
    region = PacketRegion(native.address, layout.field("data").native_offset, layout.field("data_end").native_offset)
    # Under tc the mac header is data and the network header 14 bytes on; a socket filter's data
    # is its network header, with the mac header pulled in front of it.
    skb = SkbBuffer(native, layout, storage, region)
    skb.network, skb.mac = ETH_HLEN - pulled, -pulled
    _SKB_BUFFERS[native.address] = skb

    def read_out() -> tuple[bytes, bytes | None]:
        # A pulled Ethernet header comes back zeroed, as the kernel pushes it back.
        return bytes(pulled) + skb.contents(), skb_ctx_out(native.read()[:layout.native_size], ctx)

    regions = [region, *context_regions(native.address, layout)]
    return RunMemory(native.address, 0, regions, [storage, native], read_out, skb=skb)


class _NativePointers:
    """data, data_end (and data_meta) of a packet, kept where the program reads them: in its
    native context, at the offsets the layout gives."""
    ctx: Buffer
    layout: ContextLayout

    def _pointer(self, name: str) -> int:
        return ctypes.c_uint64.from_address(self.ctx.address + self.layout.field(name).native_offset).value

    def _set_pointer(self, name: str, value: int) -> None:
        ctypes.c_uint64.from_address(self.ctx.address + self.layout.field(name).native_offset).value = value

    data = property(lambda self: self._pointer("data"), lambda self, v: self._set_pointer("data", v))
    data_end = property(lambda self: self._pointer("data_end"), lambda self, v: self._set_pointer("data_end", v))
    data_meta = property(lambda self: self._pointer("data_meta"), lambda self, v: self._set_pointer("data_meta", v))


def _ctx_word(offset: int, signed: bool = False) -> property:
    """A runtime word of the native context (runtime/context.py CTX_SKB_*) as an attribute."""
    kind = ctypes.c_int64 if signed else ctypes.c_uint64

    def get(self) -> int:
        return kind.from_address(self.ctx.address + offset).value

    def put(self, value: int) -> None:
        kind.from_address(self.ctx.address + offset).value = value
    return property(get, put)


@dataclass(eq=False)
class SkbBuffer(_NativePointers):
    """A test run's sk_buff (bpf_prog_test_run_skb): a linear packet with room around it, and the
    state of the skb the skb helpers read and change: where the mac and network headers are
    (offsets from data), whether it carries an encapsulation, the tunnel key a program set.

    ``data`` and ``data_end`` live in the native context, where the program reads them (and
    ``region``, the run's "packet" region, reads them too); so do the headers, the encapsulation,
    the tunnel key, the kernel's headroom and transport header and the storage's bounds, in the
    context's runtime words, where the native helpers (jit/native_skb.py) read and change them as
    these do. A helper that moves data or
    data_end calls :meth:`moved`, which keeps ``len`` and the region table on [data, data_end).
    A packet that outgrows its storage moves to a bigger one, as the kernel's pskb_expand_head
    does (only here: a native helper leaves that to Python); the old storage stays alive (and
    out of the regions) until the run ends.
    """
    ctx: Buffer
    layout: ContextLayout
    storage: Buffer
    region: PacketRegion
    retired: list[Buffer] = field(default_factory=list)

    network = _ctx_word(CTX_SKB_NETWORK, signed=True)  # network header - data
    mac = _ctx_word(CTX_SKB_MAC, signed=True)  # mac header - data
    encapsulation = _ctx_word(CTX_SKB_ENCAP)  # 1: it carries one
    headroom = _ctx_word(CTX_SKB_HEADROOM)  # the kernel's, which decides when its head is reallocated
    transport = _ctx_word(CTX_SKB_TRANSPORT, signed=True)  # transport header - data, or SKB_TRANSPORT_UNSET

    @property
    def tunnel_key(self) -> bytes | None:
        """The tunnel key a program set (runtime/context.py SKB_TUNNEL_INFO), or None."""
        at = self.ctx.address + CTX_SKB_TUNNEL
        return ctypes.string_at(at + 8, SKB_TUNNEL_INFO.size) if _u64(at).value else None

    @tunnel_key.setter
    def tunnel_key(self, info: bytes) -> None:
        at = self.ctx.address + CTX_SKB_TUNNEL
        ctypes.memmove(at + 8, info, SKB_TUNNEL_INFO.size)
        _u64(at).value = 1

    def __post_init__(self) -> None:
        self._bound(self.storage)
        self.headroom, self.transport = NET_SKB_PAD, SKB_TRANSPORT_UNSET

    def _bound(self, storage: Buffer) -> None:
        """The storage the packet lies in, whose bounds the native helpers keep within."""
        _u64(self.ctx.address + CTX_SKB_HEAD).value = storage.address
        _u64(self.ctx.address + CTX_SKB_END).value = storage.address + storage.size

    def length(self) -> int:
        return self.data_end - self.data

    def contents(self) -> bytes:
        return ctypes.string_at(self.data, self.length())

    def value(self, name: str) -> int:
        """A u32 field of the native __sk_buff (skb->protocol, vlan_tci, ...)."""
        return ctypes.c_uint32.from_address(self.ctx.address + self.layout.field(name).native_offset).value

    def set_value(self, name: str, value: int) -> None:
        ctypes.c_uint32.from_address(self.ctx.address + self.layout.field(name).native_offset).value = value

    def _make_room(self, head: int, tail: int) -> None:
        """At least head bytes free in front of data and tail bytes after data_end."""
        start, end = self.storage.address, self.storage.address + self.storage.size
        if self.data - start >= head and end - self.data_end >= tail:
            return
        length = self.length()
        bigger = Buffer(XDP_HEADROOM + head + length + tail + SHARED_INFO_SIZE)
        data = bigger.address + XDP_HEADROOM + head
        ctypes.memmove(data, self.data, length)
        self.retired.append(self.storage)
        self.storage, self.data, self.data_end = bigger, data, data + length
        self._bound(bigger)

    def cow_head(self, needed: int, sets_transport: bool = False) -> None:
        """skb_cow_head: the kernel reallocates the head when a push needs more than its headroom,
        by whole NET_SKB_PADs. After bpf_skb_adjust_room's (sets_transport), Linux 6.18 has an
        unset transport header set, 1 byte before the old head as seen from data (pskb_expand_head
        moves the unset 0xffff along with the other offsets); after bpf_skb_change_head's, not.
        (Which is why, after a large adjust_room, bpf_skb_change_tail refuses to trim the packet
        below that point.)"""
        if needed > self.headroom:
            if sets_transport and self.transport == SKB_TRANSPORT_UNSET:
                self.transport = -1 - self.headroom
            self.headroom += -(-(needed - self.headroom) // NET_SKB_PAD) * NET_SKB_PAD

    def push(self, size: int) -> None:
        """size more bytes in front of data (skb_push); their contents are the caller's to set.
        The mac and network headers, kept as offsets from data, go with it (a caller that leaves
        one in place moves it back); the transport header stays in place (_headers_move)."""
        self._make_room(size, 0)
        self.data -= size
        self._headers_move(size)
        self.moved()

    def pull(self, size: int) -> None:
        self.data += size
        self._headers_move(-size)
        self.moved()

    def _headers_move(self, pushed: int) -> None:
        """data moved back by pushed bytes (forward, if negative): the kernel's headroom follows,
        and the transport header, which stays where it was, is that much further from data."""
        self.headroom -= pushed
        if self.transport != SKB_TRANSPORT_UNSET:
            self.transport += pushed

    def put(self, size: int) -> None:
        """size zeroed bytes after data_end (skb_put)."""
        self._make_room(0, size)
        ctypes.memset(self.data_end, 0, size)
        self.data_end += size
        self.moved()

    def trim(self, size: int) -> None:
        self.data_end -= size
        self.moved()

    def moved(self) -> None:
        """After data or data_end moved: len, data_meta (no metadata in front of an skb's data)
        and the run's region table follow."""
        self.data_meta = self.data
        self.set_value("len", self.length())
        self.region.publish()


_SKB_BUFFERS: "weakref.WeakValueDictionary[int, SkbBuffer]" = weakref.WeakValueDictionary()


def skb_buffer(ctx: int) -> SkbBuffer | None:
    """The sk_buff of the skb program's run whose native context is at ctx (None: no such run)."""
    return _SKB_BUFFERS.get(ctx)


@dataclass(eq=False)
class XdpBuffer(_NativePointers):
    """An XDP test run's xdp_buff, as bpf_prog_test_run_xdp builds it: the packet starts
    XDP_HEADROOM bytes into one page (metadata taken from ctx_in just before it) and may reach up
    to the page's reserved shared-info tail; input past the linear part sits in page-sized frags.

    ``data``, ``data_end`` and ``data_meta`` live in the native context, where the program reads
    them and ``region``, the run's "packet" region, reads [data_meta, data_end); the XDP helpers
    (runtime/xdp_helpers.py, jit/native_packet.py) move them and keep the region table on them.
    The context's runtime words hold the page, the number of frags and the frag table (each
    frag's address and size), which the native helpers read and change as the Python ones do.
    """
    page: Buffer
    ctx: Buffer
    region: PacketRegion
    # Every frag page the run made, alive until it ends: one a helper dropped too (the table's
    # first frag_count entries are the packet's).
    pages: list[Buffer] = field(default_factory=list)
    table: Buffer = field(default_factory=lambda: Buffer(MAX_SKB_FRAGS * FRAG_ENTRY.size))

    def __post_init__(self) -> None:
        _u64(self.ctx.address + CTX_PAGE).value = self.page.address
        _u64(self.ctx.address + CTX_FRAG_TABLE).value = self.table.address

    frag_count = _ctx_word(CTX_FRAGS)

    def frag(self, index: int) -> tuple[int, int]:
        """Frag `index`'s (address, size)."""
        return FRAG_ENTRY.unpack(ctypes.string_at(self.table.address + index * FRAG_ENTRY.size, FRAG_ENTRY.size))

    @property
    def frag_sizes(self) -> list[int]:
        return [self.frag(i)[1] for i in range(self.frag_count)]

    def set_frag_size(self, index: int, size: int) -> None:
        _u64(self.table.address + index * FRAG_ENTRY.size + 8).value = size

    def add_frag(self, chunk: bytes) -> None:
        page = Buffer(PAGE_SIZE, chunk)
        self.pages.append(page)
        entry = self.table.address + self.frag_count * FRAG_ENTRY.size
        ctypes.memmove(entry, FRAG_ENTRY.pack(page.address, len(chunk)), FRAG_ENTRY.size)
        self.frag_count += 1

    def drop_last_frag(self) -> None:
        self.frag_count -= 1

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

    layout: ContextLayout = XDP_MD

    def length(self) -> int:
        """xdp_get_buff_len: the linear part from data, and every frag."""
        return self.data_end - self.data + sum(self.frag_sizes)

    def pieces(self) -> list[tuple[int, int]]:
        """(address, size) of the packet's parts in order: the linear part from data, the frags."""
        return [(self.data, self.data_end - self.data), *(self.frag(i) for i in range(self.frag_count))]

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
        return linear + b"".join(ctypes.string_at(address, size) for address, size in self.pieces()[1:])


_XDP_BUFFERS: "weakref.WeakValueDictionary[int, XdpBuffer]" = weakref.WeakValueDictionary()


def xdp_buffer(ctx: int) -> XdpBuffer | None:
    """The xdp_buff of the XDP run whose native context is at ctx (None: no XDP run's)."""
    return _XDP_BUFFERS.get(ctx)


def _xdp_memory(ptype: ProgramType, data: bytes, ctx: bytes | None) -> RunMemory:
    """r1 = an xdp_md around the kernel's xdp_buff for this data (and ctx_in: metadata, linear
    end, input fields); TestRunError, with the kernel's errno, for input the kernel refuses."""
    split = xdp_input(ctx, len(data))
    # The metadata is carved out of the headroom: data itself always starts XDP_HEADROOM in.
    linear_end = min(split.end, split.meta_len + XDP_LINEAR_MAX)
    rest = data[linear_end:]
    frag_count = -(-len(rest) // PAGE_SIZE)
    if frag_count > MAX_SKB_FRAGS:
        raise TestRunError(f"a packet of {len(data)} bytes needs {frag_count} frags; the kernel's test run "
                           f"allows {MAX_SKB_FRAGS}", errno.ENOMEM, "data_in")
    page = Buffer(PAGE_SIZE)
    page.write(data[:linear_end], XDP_HEADROOM - split.meta_len)
    start = page.address + XDP_HEADROOM
    native = context_buffer(build_native_ctx(ptype, split.ctx, start, linear_end - split.meta_len,
                                             meta_len=split.meta_len), CTX_KIND_XDP)
    region = PacketRegion(native.address, XDP_MD.field("data_meta").native_offset,
                          XDP_MD.field("data_end").native_offset)
    xdp = XdpBuffer(page, native, region)
    for at in range(0, len(rest), PAGE_SIZE):
        xdp.add_frag(rest[at:at + PAGE_SIZE])
    _XDP_BUFFERS[native.address] = xdp

    def read_out() -> tuple[bytes, bytes | None]:
        return xdp.contents(), user_ctx(ptype, native.read()[:XDP_MD.native_size], xdp.data_meta)

    regions = [region, *context_regions(native.address, XDP_MD)]
    return RunMemory(native.address, 0, regions, [page, native], read_out, xdp)

"""The XDP packet helpers, with the kernel's argument checks and error codes (net/core/filter.c)
on the xdp_buff a test run builds (runtime/run_memory.py's :class:`XdpBuffer`).

``xdp_adjust_head`` moves ``data`` (and the metadata with it) within the headroom, never into the
struct xdp_frame at its head and never to less than an Ethernet header; ``xdp_adjust_meta`` moves
``data_meta`` in front of ``data`` (a multiple of 4 bytes, at most 255); ``xdp_adjust_tail`` moves
``data_end`` up to the page's reserved tail (new bytes zeroed), or on a multi-buffer packet grows
the last frag within its page and shrinks from the last frag back, releasing emptied frags.
``xdp_load_bytes`` and ``xdp_store_bytes`` copy across the linear part and the frags. The run's
"packet" region reads [data_meta, data_end) from the context, and after a move the region table
follows, so the interpreter's and the sandboxed JIT's access checks and every helper's pointer
checks see the packet as it now is. The verifier forgets packet pointers after the three adjust
helpers (verifier/calls.py), as the kernel's does.

These functions are the reference: a verified program calls jit/native_packet.py's twins of
the adjust helpers and of ``xdp_get_buff_len``, which make the same moves on the same words
(and hand a multi-buffer packet's tail to these).
"""
from __future__ import annotations

import ctypes
from errno import EACCES, EFAULT, EINVAL

from bpfjit.isa import MASK32

from . import helper_args
from .context import ETH_HLEN, XDP_META_MAX
from .helpers import errno_result
from .kernel_helpers import HELPER_IDS
from .run_memory import PAGE_SIZE, XdpBuffer, xdp_buffer
from .status import HelperFault

XDP_ACCESS_MAX = 0xFFFF  # bpf_xdp_pointer: offsets and lengths past this are -EFAULT


def _s32(value: int) -> int:
    value &= MASK32
    return value - (1 << 32) if value >> 31 else value


def _buffer(ctx: int) -> XdpBuffer:
    found = xdp_buffer(ctx)
    if found is None:
        raise HelperFault(f"{ctx:#x} is not the context of an XDP program's run (arg 1)")
    return found


def xdp_adjust_head(ctx: int, offset: int, *_: int) -> int:
    """Move data by offset (negative: grow into the headroom), the metadata along with it."""
    xdp, offset = _buffer(ctx), _s32(offset)
    meta_len = xdp.data - xdp.data_meta
    data = xdp.data + offset
    if data < xdp.frame_end + meta_len or data > xdp.data_end - ETH_HLEN:
        return errno_result(EINVAL)
    if meta_len:
        ctypes.memmove(xdp.data_meta + offset, xdp.data_meta, meta_len)
    xdp.data_meta += offset
    xdp.data = data
    xdp.region.publish()
    return 0


def xdp_adjust_meta(ctx: int, offset: int, *_: int) -> int:
    """Move data_meta by offset (negative: more metadata); the bytes it takes in are left as
    they are."""
    xdp, offset = _buffer(ctx), _s32(offset)
    meta = xdp.data_meta + offset
    if meta < xdp.frame_end or meta > xdp.data:
        return errno_result(EINVAL)
    meta_len = xdp.data - meta
    if meta_len % 4 or meta_len > XDP_META_MAX:
        return errno_result(EACCES)
    xdp.data_meta = meta
    xdp.region.publish()
    return 0


def xdp_adjust_tail(ctx: int, offset: int, *_: int) -> int:
    """Move the packet's end by offset: grown bytes are zeroed; at least an Ethernet header stays."""
    xdp, offset = _buffer(ctx), _s32(offset)
    if xdp.frag_count:
        return _shrink_frags(xdp, -offset) if offset < 0 else _grow_last_frag(xdp, offset)
    data_end = xdp.data_end + offset
    if data_end > xdp.hard_end or data_end < xdp.data + ETH_HLEN:
        return errno_result(EINVAL)
    if offset > 0:
        ctypes.memset(xdp.data_end, 0, offset)
    xdp.data_end = data_end
    xdp.region.publish()
    return 0


def _grow_last_frag(xdp: XdpBuffer, offset: int) -> int:
    """bpf_xdp_frags_increase_tail: the last frag grows within its page (frags start at 0)."""
    last = xdp.frag_count - 1
    address, size = xdp.frag(last)
    if offset > PAGE_SIZE - size:
        return errno_result(EINVAL)
    ctypes.memset(address + size, 0, offset)
    xdp.set_frag_size(last, size + offset)
    return 0


def _shrink_frags(xdp: XdpBuffer, shrink: int) -> int:
    """bpf_xdp_frags_shrink_tail: take bytes off the frags from the last one back, releasing the
    ones emptied; once none is left, what remains comes off the linear part."""
    if shrink > xdp.length() - ETH_HLEN:
        return errno_result(EINVAL)
    while xdp.frag_count and shrink > 0:
        last = xdp.frag_count - 1
        left = xdp.frag(last)[1]
        taken = min(shrink, left)
        shrink -= taken
        xdp.set_frag_size(last, left - taken)
        if taken == left:
            xdp.drop_last_frag()
    if not xdp.frag_count and shrink:
        xdp.data_end -= shrink
        xdp.region.publish()
    return 0


def xdp_get_buff_len(ctx: int, *_: int) -> int:
    """The packet's whole length: the linear part from data, and the frags."""
    return _buffer(ctx).length()


def _packet_copy(ctx: int, offset: int, buf: int, size: int, into_packet: bool) -> int:
    """bpf_xdp_load_bytes / bpf_xdp_store_bytes: -EFAULT for an offset or size past 0xffff,
    -EINVAL past the packet's end, else the copy (across the frags where it reaches them)."""
    xdp, offset, size = _buffer(ctx), offset & MASK32, size & MASK32
    helper_args.check(buf, size, 3, write=not into_packet)
    if offset > XDP_ACCESS_MAX or size > XDP_ACCESS_MAX:
        return errno_result(EFAULT)
    if offset + size > xdp.length():
        return errno_result(EINVAL)
    xdp.copy(offset, buf, size, into_packet)
    return 0


def xdp_load_bytes(ctx: int, offset: int, to: int, size: int, *_: int) -> int:
    return _packet_copy(ctx, offset, to, size, into_packet=False)


def xdp_store_bytes(ctx: int, offset: int, source: int, size: int, *_: int) -> int:
    return _packet_copy(ctx, offset, source, size, into_packet=True)


# (helper id, implementation, argument kinds, return kind), as runtime/stdhelpers.py's table; the
# kinds are those of the kernel's bpf_xdp_*_proto.
TABLE = [
    (HELPER_IDS["xdp_adjust_head"], xdp_adjust_head, ("ctx", "any"), "integer"),
    (HELPER_IDS["xdp_adjust_meta"], xdp_adjust_meta, ("ctx", "any"), "integer"),
    (HELPER_IDS["xdp_adjust_tail"], xdp_adjust_tail, ("ctx", "any"), "integer"),
    (HELPER_IDS["xdp_get_buff_len"], xdp_get_buff_len, ("ctx",), "integer"),
    (HELPER_IDS["xdp_load_bytes"], xdp_load_bytes, ("ctx", "any", "uninit_mem", "size"), "integer"),
    (HELPER_IDS["xdp_store_bytes"], xdp_store_bytes, ("ctx", "any", "mem", "size"), "integer"),
]

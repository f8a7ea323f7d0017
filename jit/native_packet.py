"""LLVM IR of the native packet helpers a packet program calls per packet: the XDP head, meta and
tail moves, ``bpf_xdp_get_buff_len`` and ``bpf_xdp_load_bytes``/``store_bytes``;
``bpf_skb_load_bytes``/``store_bytes``; the checksum helpers ``bpf_csum_diff``,
``bpf_l3_csum_replace`` and ``bpf_l4_csum_replace``; ``bpf_skb_pull_data`` (a test run's packet is
all linear: only a length past its end fails) and ``bpf_get_hash_recalc`` (the context's hash, as
the Python helper gives it: bpfjit has no flow dissector).

runtime/xdp_helpers.py and runtime/skb_helpers.py stay the reference (the interpreter calls
them): these make the same checks, return the same error codes and move the same words, so both
leave the same packet and context (docs/semantics.md, Test runs). The packet's truth is its
pointers in the native context (data, data_end, data_meta), which Python reads back; the
runtime's words after the context's fields (runtime/context.py ``CTX_RUNTIME``) give what else
a helper needs: the tag saying which kind of context r1 is (a helper handed a context of another
kind, which no verifier rule forbids, leaves it to the Python helper, which says what is wrong),
an XDP run's page, its frag table and number of frags (a multi-buffer packet is its linear part,
then each frag's bytes: ``xdp_len`` and ``xdp_copy`` walk them), and where the run's region
table keeps the packet's bounds (rewritten after every move, as runtime/run_memory.py
``PacketRegion.publish`` does).

Checksums are ones'-complement sums of the bytes as they lie in memory (so of little-endian
words here), as runtime/skb_helpers.py explains.
"""
from __future__ import annotations

import errno
import re
import struct

from bpfjit.runtime import skb_helpers, sock_helpers, xdp_helpers
from bpfjit.runtime.context import (CTX_FRAG_TABLE, CTX_FRAGS, CTX_KIND_SKB, CTX_KIND_XDP, CTX_PAGE, CTX_REGION_ENTRY,
                                    CTX_TAG, ETH_HLEN, FRAG_ENTRY, SK_BUFF, XDP_FRAME_SIZE, XDP_MD, XDP_META_MAX)
from bpfjit.runtime.kernel_helpers import HELPER_IDS
from bpfjit.runtime.run_memory import PAGE_SIZE, SHARED_INFO_SIZE

from .native_maps import PYTHON_PREFIX, twins

CTX_SECRET = "bpfjit_ctx_secret"  # runtime/run_memory.py CTX_SECRET, bound when the module is linked

#: The Python helpers these hand what they cannot do (see the module docstring), by helper id.
PYTHON_FALLBACKS = {HELPER_IDS[impl.__name__]: impl for impl in (
    xdp_helpers.xdp_adjust_head, xdp_helpers.xdp_adjust_meta, xdp_helpers.xdp_adjust_tail,
    xdp_helpers.xdp_get_buff_len, xdp_helpers.xdp_load_bytes, xdp_helpers.xdp_store_bytes,
    skb_helpers.skb_load_bytes, skb_helpers.skb_store_bytes,
    skb_helpers.skb_pull_data, skb_helpers.l3_csum_replace, skb_helpers.l4_csum_replace,
    sock_helpers.get_hash_recalc)}

_XDP_DATA, _XDP_END, _XDP_META = (XDP_MD.field(name).native_offset for name in ("data", "data_end", "data_meta"))
_SKB_DATA, _SKB_END = (SK_BUFF.field(name).native_offset for name in ("data", "data_end"))
_SKB_HASH = SK_BUFF.field("hash").native_offset
_HARD_END = PAGE_SIZE - SHARED_INFO_SIZE  # where an XDP page's linear part must end, from its start
EINVAL, EFAULT, EACCES = -errno.EINVAL, -errno.EFAULT, -errno.EACCES
_INT_MAX, _OFFSET_MAX = skb_helpers.INT_MAX, skb_helpers.OFFSET_MAX
_CSUM_KNOWN_L4 = (skb_helpers.CSUM_MARK_MANGLED_0 | skb_helpers.CSUM_MARK_ENFORCE | skb_helpers.CSUM_PSEUDO_HDR
                  | skb_helpers.CSUM_FIELD_SIZE | skb_helpers.CSUM_IPV6)
_STORE_FLAGS = skb_helpers.STORE_RECOMPUTE_CSUM | skb_helpers.STORE_INVALIDATE_HASH


def field_offsets(layout: struct.Struct, *names: str) -> dict[str, int]:
    """Where each field of a little-endian struct layout starts, named in order (pad bytes,
    ``x``, are no field)."""
    codes = re.findall(r"\d*[a-zA-Z]", layout.format.lstrip("<"))
    fields = iter(names)
    return {next(fields): struct.calcsize("<" + "".join(codes[:i])) for i, code in enumerate(codes)
            if not code.endswith("x")}


def packet_helper(name: str, kind: int | None, body: str) -> str:
    """``@bpfjit_native_<name>``: body (from its label ``%body``) behind the check that r1 is a
    context of this kind (None: the helper takes none); what fails the check goes to the Python
    helper. The exits ``%einval``, ``%efault`` and ``%eacces`` return those errors."""
    checks = ""
    if kind is not None:
        checks = (f"  %kind = call i1 @ctx_is(i64 %r1, i64 {kind})\n"
                  "  br i1 %kind, label %body, label %python\n")
    python = ("python:\n"
              f"  %py = call i64 @{PYTHON_PREFIX}{name}(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5)\n"
              "  ret i64 %py\n") if kind is not None else ""
    return (f"define i64 @bpfjit_native_{name}(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{\n"
            f"entry:\n{checks or '  br label %body'}\n"
            f"body:{body}einval:\n  ret i64 {EINVAL}\nefault:\n  ret i64 {EFAULT}\n"
            f"eacces:\n  ret i64 {EACCES}\n{python}}}\n")


_DECLARATIONS = f"""
@{CTX_SECRET} = external global i64
""" + "".join(f"declare i64 @{PYTHON_PREFIX}{impl.__name__}(i64, i64, i64, i64, i64)\n"
              for impl in PYTHON_FALLBACKS.values())

# Small functions over a context %c (an i64 address); LLVM inlines them into the helpers.
_COMMON = f"""
define internal i64 @ctx_u64(i64 %c, i64 %off) alwaysinline {{
  %a = add i64 %c, %off
  %p = inttoptr i64 %a to ptr
  %v = load i64, ptr %p
  ret i64 %v
}}

define internal void @set_ctx_u64(i64 %c, i64 %off, i64 %v) alwaysinline {{
  %a = add i64 %c, %off
  %p = inttoptr i64 %a to ptr
  store i64 %v, ptr %p
  ret void
}}

; Whether the context at %c is a packet context of this kind (runtime/run_memory.py context_buffer).
define internal i1 @ctx_is(i64 %c, i64 %kind) alwaysinline {{
  %tag = call i64 @ctx_u64(i64 %c, i64 {CTX_TAG})
  %secret = load i64, ptr @{CTX_SECRET}
  %x = xor i64 %c, %secret
  %want = xor i64 %x, %kind
  %ok = icmp eq i64 %tag, %want
  ret i1 %ok
}}

; The packet moved to [%start, %end): its entry in the run's region table follows (PacketRegion.publish).
define internal void @publish(i64 %c, i64 %start, i64 %end) alwaysinline {{
entry:
  %slot = call i64 @ctx_u64(i64 %c, i64 {CTX_REGION_ENTRY})
  %bound = icmp ne i64 %slot, 0
  br i1 %bound, label %write, label %done
write:
  %size = sub i64 %end, %start
  call void @set_ctx_u64(i64 %slot, i64 0, i64 %start)
  call void @set_ctx_u64(i64 %slot, i64 8, i64 %size)
  br label %done
done:
  ret void
}}

; Whether %v is outside [%lo, %hi] (signed).
define internal i1 @outside(i64 %v, i64 %lo, i64 %hi) alwaysinline {{
  %low = icmp slt i64 %v, %lo
  %high = icmp sgt i64 %v, %hi
  %out = or i1 %low, %high
  ret i1 %out
}}

; The helper's offset argument as the kernel's int: the low 32 bits, sign-extended.
define internal i64 @s32(i64 %v) alwaysinline {{
  %t = trunc i64 %v to i32
  %s = sext i32 %t to i64
  ret i64 %s
}}

declare void @llvm.memmove.p0.p0.i64(ptr, ptr, i64, i1)
"""  # llvm.memset is declared by jit/native_maps.py, in the same module

# The XDP moves of runtime/xdp_helpers.py. Addresses compare signed: they are far below 2**63
# and an offset is a 32-bit int, so no sum wraps.
_XDP_POINTERS = f"""
  %off = call i64 @s32(i64 %r2)
  %data = call i64 @ctx_u64(i64 %r1, i64 {_XDP_DATA})
  %end = call i64 @ctx_u64(i64 %r1, i64 {_XDP_END})
  %meta = call i64 @ctx_u64(i64 %r1, i64 {_XDP_META})
  %page = call i64 @ctx_u64(i64 %r1, i64 {CTX_PAGE})
"""

# An XDP packet's pieces: its linear part [data, data_end), then each frag of the frag table
# (runtime/run_memory.py XdpBuffer).
_XDP_PIECES = f"""
; The address of frag %i's entry: (address, size).
define internal i64 @frag_entry(i64 %c, i64 %i) alwaysinline {{
  %table = call i64 @ctx_u64(i64 %c, i64 {CTX_FRAG_TABLE})
  %at = mul i64 %i, {FRAG_ENTRY.size}
  %e = add i64 %table, %at
  ret i64 %e
}}

; xdp_get_buff_len: the linear part and every frag.
define internal i64 @xdp_len(i64 %c) {{
entry:
  %data = call i64 @ctx_u64(i64 %c, i64 {_XDP_DATA})
  %end = call i64 @ctx_u64(i64 %c, i64 {_XDP_END})
  %linear = sub i64 %end, %data
  %count = call i64 @ctx_u64(i64 %c, i64 {CTX_FRAGS})
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %add ]
  %total = phi i64 [ %linear, %entry ], [ %sum, %add ]
  %more = icmp ult i64 %i, %count
  br i1 %more, label %add, label %done
add:
  %e = call i64 @frag_entry(i64 %c, i64 %i)
  %size = call i64 @ctx_u64(i64 %e, i64 8)
  %sum = add i64 %total, %size
  %next = add i64 %i, 1
  br label %loop
done:
  ret i64 %total
}}

; XdpBuffer.copy: %size bytes between the packet at %off (across its pieces) and %buf, into the
; packet if %into; the caller has checked that they lie inside it.
define internal void @xdp_copy(i64 %c, i64 %off, i64 %buf, i64 %size, i1 %into) {{
entry:
  %count = call i64 @ctx_u64(i64 %c, i64 {CTX_FRAGS})
  br label %piece
piece:
  %k = phi i64 [ 0, %entry ], [ %k1, %next ]
  %o = phi i64 [ %off, %entry ], [ %o2, %next ]
  %b = phi i64 [ %buf, %entry ], [ %b2, %next ]
  %s = phi i64 [ %size, %entry ], [ %s2, %next ]
  %left = icmp ne i64 %s, 0
  %pieces = icmp ule i64 %k, %count
  %go = and i1 %left, %pieces
  br i1 %go, label %which, label %done
which:
  %linear = icmp eq i64 %k, 0
  br i1 %linear, label %head, label %frag
head:
  %data = call i64 @ctx_u64(i64 %c, i64 {_XDP_DATA})
  %end = call i64 @ctx_u64(i64 %c, i64 {_XDP_END})
  %head_len = sub i64 %end, %data
  br label %got
frag:
  %index = sub i64 %k, 1
  %e = call i64 @frag_entry(i64 %c, i64 %index)
  %frag_start = call i64 @ctx_u64(i64 %e, i64 0)
  %frag_len = call i64 @ctx_u64(i64 %e, i64 8)
  br label %got
got:
  %start = phi i64 [ %data, %head ], [ %frag_start, %frag ]
  %length = phi i64 [ %head_len, %head ], [ %frag_len, %frag ]
  %inside = icmp ult i64 %o, %length
  br i1 %inside, label %copy, label %skip
copy:
  %avail = sub i64 %length, %o
  %short = icmp ult i64 %s, %avail
  %part = select i1 %short, i64 %s, i64 %avail
  %at = add i64 %start, %o
  %to_int = select i1 %into, i64 %at, i64 %b
  %from_int = select i1 %into, i64 %b, i64 %at
  %to = inttoptr i64 %to_int to ptr
  %from = inttoptr i64 %from_int to ptr
  call void @llvm.memmove.p0.p0.i64(ptr %to, ptr %from, i64 %part, i1 false)
  %b1 = add i64 %b, %part
  %s1 = sub i64 %s, %part
  br label %next
skip:
  %o1 = sub i64 %o, %length
  br label %next
next:
  %o2 = phi i64 [ 0, %copy ], [ %o1, %skip ]
  %b2 = phi i64 [ %b1, %copy ], [ %b, %skip ]
  %s2 = phi i64 [ %s1, %copy ], [ %s, %skip ]
  %k1 = add i64 %k, 1
  br label %piece
done:
  ret void
}}
"""


def _xdp_copy(into_packet: bool) -> str:
    """bpf_xdp_load_bytes / bpf_xdp_store_bytes (runtime/xdp_helpers.py _packet_copy): -EFAULT
    for an offset or size past XDP_ACCESS_MAX, -EINVAL past the packet's end, else the copy
    between the packet at offset (across its frags) and the buffer in r3."""
    return f"""
  %off = and i64 %r2, 4294967295
  %size = and i64 %r4, 4294967295
  %off_far = icmp ugt i64 %off, {xdp_helpers.XDP_ACCESS_MAX}
  %size_far = icmp ugt i64 %size, {xdp_helpers.XDP_ACCESS_MAX}
  %far = or i1 %off_far, %size_far
  br i1 %far, label %efault, label %inside
inside:
  %len = call i64 @xdp_len(i64 %r1)
  %reach = add i64 %off, %size
  %past = icmp ugt i64 %reach, %len
  br i1 %past, label %einval, label %copy
copy:
  call void @xdp_copy(i64 %r1, i64 %off, i64 %r3, i64 %size, i1 {str(into_packet).lower()})
  ret i64 0
"""


# bpf_xdp_adjust_tail of a packet with frags (runtime/xdp_helpers.py _grow_last_frag and
# _shrink_frags): the last frag grows within its page; a shrink takes bytes off the frags from
# the last one back, dropping those it empties, then off the linear part.
_FRAGS_TAIL = f"""frags:
  %shrinks = icmp slt i64 %off, 0
  br i1 %shrinks, label %shrink, label %grow_last
grow_last:
  %last = sub i64 %count, 1
  %last_entry = call i64 @frag_entry(i64 %r1, i64 %last)
  %last_start = call i64 @ctx_u64(i64 %last_entry, i64 0)
  %last_size = call i64 @ctx_u64(i64 %last_entry, i64 8)
  %room = sub i64 {PAGE_SIZE}, %last_size
  %too_far = icmp sgt i64 %off, %room
  br i1 %too_far, label %einval, label %extend
extend:
  %gap = add i64 %last_start, %last_size
  %gap_p = inttoptr i64 %gap to ptr
  call void @llvm.memset.p0.i64(ptr %gap_p, i8 0, i64 %off, i1 false)
  %grown = add i64 %last_size, %off
  call void @set_ctx_u64(i64 %last_entry, i64 8, i64 %grown)
  ret i64 0
shrink:
  %cut = sub i64 0, %off
  %total = call i64 @xdp_len(i64 %r1)
  %most = sub i64 %total, {ETH_HLEN}
  %too_much = icmp sgt i64 %cut, %most
  br i1 %too_much, label %einval, label %trim
trim:
  %n = phi i64 [ %count, %shrink ], [ %n_next, %trim_frag ]
  %rest = phi i64 [ %cut, %shrink ], [ %rest_next, %trim_frag ]
  %frag_left = icmp ne i64 %n, 0
  %cut_left = icmp sgt i64 %rest, 0
  %again = and i1 %frag_left, %cut_left
  br i1 %again, label %trim_frag, label %trimmed
trim_frag:
  %n_last = sub i64 %n, 1
  %trim_entry = call i64 @frag_entry(i64 %r1, i64 %n_last)
  %frag_size = call i64 @ctx_u64(i64 %trim_entry, i64 8)
  %partly = icmp ult i64 %rest, %frag_size
  %taken = select i1 %partly, i64 %rest, i64 %frag_size
  %rest_next = sub i64 %rest, %taken
  %frag_left_size = sub i64 %frag_size, %taken
  call void @set_ctx_u64(i64 %trim_entry, i64 8, i64 %frag_left_size)
  %n_next = select i1 %partly, i64 %n, i64 %n_last
  br label %trim
trimmed:
  call void @set_ctx_u64(i64 %r1, i64 {CTX_FRAGS}, i64 %n)
  %no_frags = icmp eq i64 %n, 0
  %linear_cut = and i1 %no_frags, %cut_left
  br i1 %linear_cut, label %cut_linear, label %trim_done
cut_linear:
  %cut_end = sub i64 %end, %rest
  call void @set_ctx_u64(i64 %r1, i64 {_XDP_END}, i64 %cut_end)
  call void @publish(i64 %r1, i64 %meta, i64 %cut_end)
  br label %trim_done
trim_done:
  ret i64 0"""

_XDP = _XDP_PIECES + packet_helper("xdp_adjust_head", CTX_KIND_XDP, _XDP_POINTERS + f"""
  %meta_len = sub i64 %data, %meta
  %new = add i64 %data, %off
  %frame_end = add i64 %page, {XDP_FRAME_SIZE}
  %lowest = add i64 %frame_end, %meta_len
  %highest = sub i64 %end, {ETH_HLEN}
  %bad = call i1 @outside(i64 %new, i64 %lowest, i64 %highest)
  br i1 %bad, label %einval, label %move
move:
  %new_meta = add i64 %meta, %off
  %to = inttoptr i64 %new_meta to ptr
  %from = inttoptr i64 %meta to ptr
  call void @llvm.memmove.p0.p0.i64(ptr %to, ptr %from, i64 %meta_len, i1 false)
  call void @set_ctx_u64(i64 %r1, i64 {_XDP_META}, i64 %new_meta)
  call void @set_ctx_u64(i64 %r1, i64 {_XDP_DATA}, i64 %new)
  call void @publish(i64 %r1, i64 %new_meta, i64 %end)
  ret i64 0
""") + packet_helper("xdp_adjust_meta", CTX_KIND_XDP, _XDP_POINTERS + f"""
  %new = add i64 %meta, %off
  %frame_end = add i64 %page, {XDP_FRAME_SIZE}
  %bad = call i1 @outside(i64 %new, i64 %frame_end, i64 %data)
  br i1 %bad, label %einval, label %size
size:
  %len = sub i64 %data, %new
  %odd = and i64 %len, 3
  %unaligned = icmp ne i64 %odd, 0
  %long = icmp sgt i64 %len, {XDP_META_MAX}
  %refused = or i1 %unaligned, %long
  br i1 %refused, label %eacces, label %move
move:
  call void @set_ctx_u64(i64 %r1, i64 {_XDP_META}, i64 %new)
  call void @publish(i64 %r1, i64 %new, i64 %end)
  ret i64 0
""") + packet_helper("xdp_adjust_tail", CTX_KIND_XDP, _XDP_POINTERS + f"""
  %count = call i64 @ctx_u64(i64 %r1, i64 {CTX_FRAGS})
  %has_frags = icmp ne i64 %count, 0
  br i1 %has_frags, label %frags, label %linear
{_FRAGS_TAIL}
linear:
  %new = add i64 %end, %off
  %hard_end = add i64 %page, {_HARD_END}
  %shortest = add i64 %data, {ETH_HLEN}
  %bad = call i1 @outside(i64 %new, i64 %shortest, i64 %hard_end)
  br i1 %bad, label %einval, label %grow
grow:
  %grows = icmp sgt i64 %off, 0
  br i1 %grows, label %zero, label %move
zero:
  %tail = inttoptr i64 %end to ptr
  call void @llvm.memset.p0.i64(ptr %tail, i8 0, i64 %off, i1 false)
  br label %move
move:
  call void @set_ctx_u64(i64 %r1, i64 {_XDP_END}, i64 %new)
  call void @publish(i64 %r1, i64 %meta, i64 %new)
  ret i64 0
""") + packet_helper("xdp_get_buff_len", CTX_KIND_XDP, """
  %len = call i64 @xdp_len(i64 %r1)
  ret i64 %len
""") + "".join(
    packet_helper(name, CTX_KIND_XDP, _xdp_copy(into_packet))
    for name, into_packet in (("xdp_load_bytes", False), ("xdp_store_bytes", True)))

# The skb helpers of runtime/skb_helpers.py on a test run's linear packet [data, data_end).
_SKB_COMMON = f"""
define internal i64 @skb_len(i64 %c) alwaysinline {{
  %data = call i64 @ctx_u64(i64 %c, i64 {_SKB_DATA})
  %end = call i64 @ctx_u64(i64 %c, i64 {_SKB_END})
  %len = sub i64 %end, %data
  ret i64 %len
}}

; The packet's address at offset %off, where %size bytes from it are copied (the offset and the
; size as u32), or 0 for bytes outside the packet: an offset past INT_MAX, or an end past the
; packet's (its low 32 bits only, with %wrap, as skb_store_bytes checks it).
define internal i64 @skb_bytes(i64 %c, i64 %off, i64 %size, i1 %wrap) alwaysinline {{
  %len = call i64 @skb_len(i64 %c)
  %far = icmp ugt i64 %off, {_INT_MAX}
  %reach64 = add i64 %off, %size
  %reach32 = and i64 %reach64, 4294967295
  %reach = select i1 %wrap, i64 %reach32, i64 %reach64
  %past = icmp ugt i64 %reach, %len
  %outside = or i1 %far, %past
  %data = call i64 @ctx_u64(i64 %c, i64 {_SKB_DATA})
  %at = add i64 %data, %off
  %r = select i1 %outside, i64 0, i64 %at
  ret i64 %r
}}
"""

_SKB = _SKB_COMMON + packet_helper("skb_load_bytes", CTX_KIND_SKB, """
  %off = and i64 %r2, 4294967295
  %size = and i64 %r4, 4294967295
  %buffer = inttoptr i64 %r3 to ptr
  %at = call i64 @skb_bytes(i64 %r1, i64 %off, i64 %size, i1 false)
  %outside = icmp eq i64 %at, 0
  br i1 %outside, label %zeroed, label %copy
copy:
  %from = inttoptr i64 %at to ptr
  call void @llvm.memmove.p0.p0.i64(ptr %buffer, ptr %from, i64 %size, i1 false)
  ret i64 0
zeroed:
  call void @llvm.memset.p0.i64(ptr %buffer, i8 0, i64 %size, i1 false)
  br label %efault
""") + packet_helper("skb_store_bytes", CTX_KIND_SKB, f"""
  %unknown = and i64 %r5, {~_STORE_FLAGS}
  %bad_flags = icmp ne i64 %unknown, 0
  br i1 %bad_flags, label %einval, label %check
check:
  %off = and i64 %r2, 4294967295
  %size = and i64 %r4, 4294967295
  %at = call i64 @skb_bytes(i64 %r1, i64 %off, i64 %size, i1 true)
  %outside = icmp eq i64 %at, 0
  br i1 %outside, label %efault, label %copy
copy:
  %to = inttoptr i64 %at to ptr
  %from = inttoptr i64 %r3 to ptr
  call void @llvm.memmove.p0.p0.i64(ptr %to, ptr %from, i64 %size, i1 false)
  %invalidate = and i64 %r5, {skb_helpers.STORE_INVALIDATE_HASH}
  %clear = icmp ne i64 %invalidate, 0
  br i1 %clear, label %hash, label %done
hash:
  %ha = add i64 %r1, {_SKB_HASH}
  %hp = inttoptr i64 %ha to ptr
  store i32 0, ptr %hp
  br label %done
done:
  ret i64 0
""") + packet_helper("skb_pull_data", CTX_KIND_SKB, f"""
  %wanted = and i64 %r2, 4294967295
  %data = call i64 @ctx_u64(i64 %r1, i64 {_SKB_DATA})
  %end = call i64 @ctx_u64(i64 %r1, i64 {_SKB_END})
  %length = sub i64 %end, %data
  %past = icmp ugt i64 %wanted, %length
  %result = select i1 %past, i64 {-errno.ENOMEM}, i64 0
  ret i64 %result
""") + packet_helper("get_hash_recalc", CTX_KIND_SKB, f"""
  %hash_at = add i64 %r1, {_SKB_HASH}
  %hash_ptr = inttoptr i64 %hash_at to ptr
  %hash = load i32, ptr %hash_ptr
  %result = zext i32 %hash to i64
  ret i64 %result
""")

# Ones'-complement arithmetic (runtime/skb_helpers.py _add, _fold) and the checksum helpers.
_CSUM = f"""
; csum_add: a + b with the carry out of the low %bits wrapped around (a, b < 2**bits).
define internal i64 @csum_add(i64 %a, i64 %b, i64 %bits) alwaysinline {{
  %t = add i64 %a, %b
  %one = shl i64 1, %bits
  %mask = sub i64 %one, 1
  %lo = and i64 %t, %mask
  %hi = lshr i64 %t, %bits
  %r = add i64 %lo, %hi
  ret i64 %r
}}

; csum_fold: a 32-bit sum folded to 16 bits and complemented.
define internal i64 @csum_fold(i64 %t) alwaysinline {{
  %lo1 = and i64 %t, 65535
  %hi1 = lshr i64 %t, 16
  %t1 = add i64 %lo1, %hi1
  %lo2 = and i64 %t1, 65535
  %hi2 = lshr i64 %t1, 16
  %t2 = add i64 %lo2, %hi2
  %n = xor i64 %t2, -1
  %r = and i64 %n, 65535
  ret i64 %r
}}

; The address of the 16-bit checksum at offset %r2 of the skb's packet, or 0 (-EFAULT) for an odd
; offset, one past 0xffff or one past the packet.
define internal i64 @csum_field(i64 %r1, i64 %r2) alwaysinline {{
entry:
  %off = and i64 %r2, 4294967295
  %len = call i64 @skb_len(i64 %r1)
  %far = icmp ugt i64 %off, {_OFFSET_MAX}
  %oddbit = and i64 %off, 1
  %odd = icmp ne i64 %oddbit, 0
  %reach = add i64 %off, 2
  %past = icmp ugt i64 %reach, %len
  %b1 = or i1 %far, %odd
  %bad = or i1 %b1, %past
  br i1 %bad, label %none, label %at
at:
  %data = call i64 @ctx_u64(i64 %r1, i64 {_SKB_DATA})
  %a = add i64 %data, %off
  ret i64 %a
none:
  ret i64 0
}}

; runtime/skb_helpers.py _replace_field: the checksum at %p updated for a field of %size bytes
; that changed from %old to %new; %sixteen: l3's 16-bit arithmetic for 2-byte fields. 0 or -EINVAL.
define internal i64 @replace_field(ptr %p, i64 %old, i64 %new, i64 %size, i1 %sixteen) alwaysinline {{
entry:
  %cs16 = load i16, ptr %p, align 1
  %cs = zext i16 %cs16 to i64
  %unfolded = xor i64 %cs, 4294967295
  %new32 = and i64 %new, 4294967295
  switch i64 %size, label %einval [ i64 0, label %diff
                                    i64 2, label %two
                                    i64 4, label %four ]
diff:
  %has_old = icmp ne i64 %old, 0
  br i1 %has_old, label %einval, label %by_diff
by_diff:
  %d = call i64 @csum_add(i64 %new32, i64 %unfolded, i64 32)
  %dr = call i64 @csum_fold(i64 %d)
  br label %store
two:
  br i1 %sixteen, label %two16, label %two32
two16:
  %ncs = xor i64 %cs, 65535
  %nold = xor i64 %old, -1
  %nold16 = and i64 %nold, 65535
  %removed = call i64 @csum_add(i64 %ncs, i64 %nold16, i64 16)
  %new16 = and i64 %new, 65535
  %added = call i64 @csum_add(i64 %removed, i64 %new16, i64 16)
  %nadded = xor i64 %added, -1
  %t16 = and i64 %nadded, 65535
  br label %store
two32:
  br label %wide
four:
  br label %wide
wide:
  %mask = phi i64 [ 65535, %two32 ], [ 4294967295, %four ]
  %oldm = and i64 %old, %mask
  %noldm = xor i64 %oldm, 4294967295
  %w1 = call i64 @csum_add(i64 %unfolded, i64 %noldm, i64 32)
  %newm = and i64 %new, %mask
  %w2 = call i64 @csum_add(i64 %w1, i64 %newm, i64 32)
  %wr = call i64 @csum_fold(i64 %w2)
  br label %store
store:
  %result = phi i64 [ %dr, %by_diff ], [ %t16, %two16 ], [ %wr, %wide ]
  %r16 = trunc i64 %result to i16
  store i16 %r16, ptr %p, align 1
  ret i64 0
einval:
  ret i64 {EINVAL}
}}

"""


def _csum_replace(name: str, known_flags: int, body: str) -> str:
    """A checksum replace helper: unknown flags are -EINVAL, a bad checksum offset -EFAULT; body
    (from its label %replace) has the checksum's pointer in %p."""
    return packet_helper(name, CTX_KIND_SKB, f"""
  %unknown = and i64 %r5, {~known_flags}
  %bad_flags = icmp ne i64 %unknown, 0
  br i1 %bad_flags, label %einval, label %field
field:
  %a = call i64 @csum_field(i64 %r1, i64 %r2)
  %none = icmp eq i64 %a, 0
  br i1 %none, label %efault, label %replace
replace:
  %p = inttoptr i64 %a to ptr
  %size = and i64 %r5, {skb_helpers.CSUM_FIELD_SIZE}
{body}""")


_CSUM_REPLACE = _csum_replace("l3_csum_replace", skb_helpers.CSUM_FIELD_SIZE, """
  %r = call i64 @replace_field(ptr %p, i64 %r3, i64 %r4, i64 %size, i1 true)
  ret i64 %r
""") + _csum_replace("l4_csum_replace", _CSUM_KNOWN_L4, f"""
  %m = and i64 %r5, {skb_helpers.CSUM_MARK_MANGLED_0}
  %marks = icmp ne i64 %m, 0
  %e = and i64 %r5, {skb_helpers.CSUM_MARK_ENFORCE}
  %loose = icmp eq i64 %e, 0
  %cs = load i16, ptr %p, align 1
  %zero = icmp eq i16 %cs, 0
  %k1 = and i1 %marks, %loose
  %keep = and i1 %k1, %zero
  br i1 %keep, label %done, label %update
update:
  %r = call i64 @replace_field(ptr %p, i64 %r3, i64 %r4, i64 %size, i1 false)
  %ok = icmp eq i64 %r, 0
  %after = load i16, ptr %p, align 1
  %now_zero = icmp eq i16 %after, 0
  %z1 = and i1 %ok, %marks
  %mark = and i1 %z1, %now_zero
  br i1 %mark, label %mangle, label %result
mangle:
  store i16 {skb_helpers.CSUM_MANGLED_0 - 65536}, ptr %p, align 1
  br label %result
result:
  ret i64 %r
done:
  ret i64 0
""")

_SUM_WORDS = """
; seed + the target's words - the source's, folded to 32 bits (runtime/skb_helpers.py csum_diff).
define internal i64 @sum_words(ptr %p, i64 %size, i64 %flip) alwaysinline {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i4, %add ]
  %t = phi i64 [ 0, %entry ], [ %t1, %add ]
  %more = icmp ult i64 %i, %size
  br i1 %more, label %add, label %done
add:
  %wp = getelementptr i8, ptr %p, i64 %i
  %w32 = load i32, ptr %wp, align 1
  %w = zext i32 %w32 to i64
  %wf = xor i64 %w, %flip
  %t1 = add i64 %t, %wf
  %i4 = add i64 %i, 4
  br label %loop
done:
  ret i64 %t
}

"""

_CSUM_DIFF = _SUM_WORDS + packet_helper("csum_diff", None, f"""
  %from_size = and i64 %r2, 4294967295
  %to_size = and i64 %r4, 4294967295
  %either = or i64 %from_size, %to_size
  %odd = and i64 %either, 3
  %unaligned = icmp ne i64 %odd, 0
  %both = add i64 %from_size, %to_size
  %long = icmp ugt i64 %both, {skb_helpers.CSUM_DIFF_MAX}
  %bad = or i1 %unaligned, %long
  br i1 %bad, label %einval, label %sum
sum:
  %from = inttoptr i64 %r1 to ptr
  %to = inttoptr i64 %r3 to ptr
  %removed = call i64 @sum_words(ptr %from, i64 %from_size, i64 4294967295)
  %added = call i64 @sum_words(ptr %to, i64 %to_size, i64 0)
  %seed = and i64 %r5, 4294967295
  %s1 = add i64 %seed, %removed
  %total = add i64 %s1, %added
  %lo1 = and i64 %total, 4294967295
  %hi1 = lshr i64 %total, 32
  %f1 = add i64 %lo1, %hi1
  %lo2 = and i64 %f1, 4294967295
  %hi2 = lshr i64 %f1, 32
  %f2 = add i64 %lo2, %hi2
  ret i64 %f2
""")

MODULE_IR = _DECLARATIONS + _COMMON + _XDP + _SKB + _CSUM + _CSUM_REPLACE + _CSUM_DIFF

FUNCTIONS = twins(*PYTHON_FALLBACKS.items(), (HELPER_IDS["csum_diff"], skb_helpers.csum_diff))

"""LLVM IR of the native ``bpf_perf_event_output``: a sample written into a PERF_EVENT_ARRAY's
CPU buffer (runtime/maps/perf_event.py) without entering Python.

It makes runtime/stdhelpers.py ``perf_event_output``'s checks in its order and returns its error
codes: the flags' index bits and, from an XDP or skb program (its context's tag says so, as for
jit/native_packet.py), the bits asking for packet bytes after the sample (-EINVAL for any other
bit); -EFAULT when the packet is shorter than asked; then PerfEventArray.output's slot checks
(-E2BIG past max_entries, -ENOENT past the CPU buffers, -EOPNOTSUPP for another CPU's slot) and,
under the map lock, -ENOSPC with the lost count bumped when the sample does not fit. The run's
CPU is the native helpers' cpu_number() modulo the map's possible CPUs, which is what
stdhelpers.current_cpu gives the Python helper.

Packet bytes come from an skb's linear packet [data, data_end), or from an XDP packet across its
frags (jit/native_packet.py ``xdp_copy``). A map of another type goes to the Python helper. The
function lives in the helper module of jit/native_maps.py and uses its small functions and those
of jit/native_packet.py.
"""
from __future__ import annotations

import errno

from bpfjit.runtime import stdhelpers
from bpfjit.runtime.context import CTX_KIND_SKB, CTX_KIND_XDP, SK_BUFF
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps.perf_event import BUFFER_WORDS
from bpfjit.runtime.stdhelpers import BPF_F_CTXLEN_MASK, BPF_F_CURRENT_CPU, BPF_F_INDEX_MASK

from .native_maps import (CPU_STRIDE, ELEM_STRIDE, KEY_BASE, MAX_ENTRIES, NSLOTS, PYTHON_PREFIX, TYPE, VALUE_BASE,
                          error_exits, twins)

PYTHON_FALLBACKS = {stdhelpers.PERF_EVENT_OUTPUT: stdhelpers.perf_event_output}
_SKB_DATA = SK_BUFF.field("data").native_offset
_NAME = stdhelpers.perf_event_output.__name__

MODULE_IR = f"""
declare i64 @{PYTHON_PREFIX}{_NAME}(i64, i64, i64, i64, i64)

define i64 @bpfjit_native_{_NAME}(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
entry:
  %h = inttoptr i64 %r2 to ptr
  %type = call i32 @u32_at(ptr %h, i64 {TYPE})
  %perf = icmp eq i32 %type, {int(MapType.PERF_EVENT_ARRAY)}
  br i1 %perf, label %flags, label %python
flags:
  %xdp = call i1 @ctx_is(i64 %r1, i64 {CTX_KIND_XDP})
  %skb = call i1 @ctx_is(i64 %r1, i64 {CTX_KIND_SKB})
  %packet = or i1 %xdp, %skb
  %allowed = select i1 %packet, i64 {BPF_F_INDEX_MASK | BPF_F_CTXLEN_MASK}, i64 {BPF_F_INDEX_MASK}
  %not_allowed = xor i64 %allowed, -1
  %refused = and i64 %r3, %not_allowed
  %bad = icmp ne i64 %refused, 0
  br i1 %bad, label %einval, label %wanted
wanted:
  %ctxlen = and i64 %r3, {BPF_F_CTXLEN_MASK}
  %want = lshr i64 %ctxlen, 32
  %none = icmp eq i64 %want, 0
  br i1 %none, label %slot, label %packet_bytes
packet_bytes:
  br i1 %xdp, label %xdp_bytes, label %skb_bytes
xdp_bytes:
  %xdp_length = call i64 @xdp_len(i64 %r1)
  br label %measured
skb_bytes:
  %skb_length = call i64 @skb_len(i64 %r1)
  br label %measured
measured:
  %length = phi i64 [ %xdp_length, %xdp_bytes ], [ %skb_length, %skb_bytes ]
  %short = icmp ugt i64 %want, %length
  br i1 %short, label %efault, label %slot
slot:
  %extra = phi i64 [ 0, %wanted ], [ %want, %measured ]
  %possible32 = call i32 @u32_at(ptr %h, i64 {KEY_BASE})
  %possible = zext i32 %possible32 to i64
  %number = call i64 @cpu_number()
  %cpu = urem i64 %number, %possible
  %index_bits = and i64 %r3, {BPF_F_INDEX_MASK}
  %current = icmp eq i64 %index_bits, {BPF_F_CURRENT_CPU}
  %index = select i1 %current, i64 %cpu, i64 %index_bits
  %max32 = call i32 @u32_at(ptr %h, i64 {MAX_ENTRIES})
  %max = zext i32 %max32 to i64
  %past = icmp uge i64 %index, %max
  br i1 %past, label %e2big, label %buffered
buffered:
  %buffers32 = call i32 @u32_at(ptr %h, i64 {NSLOTS})
  %buffers = zext i32 %buffers32 to i64
  %unbuffered = icmp uge i64 %index, %buffers
  br i1 %unbuffered, label %enoent, label %own
own:
  %other = icmp ne i64 %index, %cpu
  br i1 %other, label %eopnotsupp, label %write
write:
  %size = and i64 %r5, {0xFFFF_FFFF}
  %total = add i64 %size, %extra
  %padded = add i64 %total, 11
  %rounded = and i64 %padded, -8
  %footprint = add i64 %rounded, 8
  call void @lock(ptr %h)
  %base_address = call i64 @u64_at(ptr %h, i64 {VALUE_BASE})
  %stride32 = call i32 @u32_at(ptr %h, i64 {ELEM_STRIDE})
  %stride = zext i32 %stride32 to i64
  %offset = mul i64 %index, %stride
  %buffer_address = add i64 %base_address, %offset
  %buffer = inttoptr i64 %buffer_address to ptr
  %used = load i64, ptr %buffer
  %room = call i64 @u64_at(ptr %h, i64 {CPU_STRIDE})
  %after = add i64 %used, %footprint
  %full = icmp ugt i64 %after, %room
  br i1 %full, label %lose, label %store
lose:
  %lost_at = getelementptr i8, ptr %buffer, i64 8
  %lost = load i64, ptr %lost_at
  %lost1 = add i64 %lost, 1
  store i64 %lost1, ptr %lost_at
  call void @unlock(ptr %h)
  ret i64 {-errno.ENOSPC}
store:
  %record_at = add i64 %used, {BUFFER_WORDS}
  %record = getelementptr i8, ptr %buffer, i64 %record_at
  store i64 %total, ptr %record
  %sample_to = getelementptr i8, ptr %record, i64 8
  %sample_from = inttoptr i64 %r4 to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %sample_to, ptr %sample_from, i64 %size, i1 false)
  %packet_to = getelementptr i8, ptr %sample_to, i64 %size
  %no_bytes = icmp eq i64 %extra, 0
  br i1 %no_bytes, label %copied, label %packet_copy
packet_copy:
  br i1 %xdp, label %xdp_copy, label %skb_copy
xdp_copy:
  %packet_to_address = ptrtoint ptr %packet_to to i64
  call void @xdp_copy(i64 %r1, i64 0, i64 %packet_to_address, i64 %extra, i1 false)
  br label %copied
skb_copy:
  %skb_from = call i64 @ctx_u64(i64 %r1, i64 {_SKB_DATA})
  %packet_from = inttoptr i64 %skb_from to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %packet_to, ptr %packet_from, i64 %extra, i1 false)
  br label %copied
copied:
  store i64 %after, ptr %buffer
  call void @unlock(ptr %h)
  ret i64 0
{error_exits("EINVAL", "EFAULT", "E2BIG", "ENOENT", "EOPNOTSUPP")}python:
  %py = call i64 @{PYTHON_PREFIX}{_NAME}(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5)
  ret i64 %py
}}
"""

FUNCTIONS = twins((stdhelpers.PERF_EVENT_OUTPUT, stdhelpers.perf_event_output))

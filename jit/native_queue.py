"""LLVM IR of the native queue and stack helpers: ``bpf_map_push_elem``, ``bpf_map_pop_elem`` and
``bpf_map_peek_elem``, on the ring runtime/maps/queue.py keeps in native memory.

They make the decisions of QueueMap.push and QueueMap._get (the kernel's queue_stack_maps.c) on
the same head and tail words (runtime/maps/native.py), under the same map lock, so a queue that
programs push to while Python pops stays one queue. The verifier allows these helpers on queue,
stack and bloom-filter maps; a bloom filter goes to the Python helper. The functions live in the
helper module of jit/native_maps.py and use its small functions (``u32_at``, ``lock``, ``set_u32``...) and declarations.
"""
from __future__ import annotations

import errno

from bpfjit.runtime import stdhelpers
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import HEADER_SIZE
from bpfjit.runtime.maps import native as layout
from bpfjit.runtime.maps.uapi import BPF_EXIST, BPF_NOEXIST

from .native_maps import MAX_ENTRIES, TYPE, VALUE_BASE, VALUE_SIZE, python_fallback, twins

HEAD = HEADER_SIZE + layout.EXT_QUEUE_HEAD
TAIL = HEADER_SIZE + layout.EXT_QUEUE_TAIL

_COMMON = f"""
; The address of slot %index of the ring (value_size bytes each, from value_base).
define internal ptr @queue_slot(ptr %h, i32 %index) alwaysinline {{
  %p = call ptr @strided(ptr %h, i64 {VALUE_BASE}, i64 {VALUE_SIZE}, i32 %index)
  ret ptr %p
}}

; %index + 1 around the ring of max_entries + 1 slots.
define internal i32 @queue_next(ptr %h, i32 %index) alwaysinline {{
  %max = call i32 @u32_at(ptr %h, i64 {MAX_ENTRIES})
  %n = add i32 %index, 1
  %wrap = icmp ugt i32 %n, %max
  %r = select i1 %wrap, i32 0, i32 %n
  ret i32 %r
}}

define internal void @queue_copy(ptr %h, ptr %dst, ptr %src) alwaysinline {{
  %vs32 = call i32 @u32_at(ptr %h, i64 {VALUE_SIZE})
  %vs = zext i32 %vs32 to i64
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %vs, i1 false)
  ret void
}}

; QueueMap._get: the next element (the oldest of a queue, the newest of a stack) to %out, removed
; when %delete; an empty map zeroes %out and gives -ENOENT.
define internal i64 @queue_get(ptr %h, ptr %out, i1 %delete) {{
entry:
  call void @lock(ptr %h)
  %head = call i32 @u32_at(ptr %h, i64 {HEAD})
  %tail = call i32 @u32_at(ptr %h, i64 {TAIL})
  %empty = icmp eq i32 %head, %tail
  br i1 %empty, label %none, label %some
none:
  %vs32 = call i32 @u32_at(ptr %h, i64 {VALUE_SIZE})
  %vs = zext i32 %vs32 to i64
  call void @llvm.memset.p0.i64(ptr %out, i8 0, i64 %vs, i1 false)
  call void @unlock(ptr %h)
  ret i64 {-errno.ENOENT}
some:
  %type = call i32 @u32_at(ptr %h, i64 {TYPE})
  %is_stack = icmp eq i32 %type, {int(MapType.STACK)}
  br i1 %is_stack, label %stack, label %queue
stack:
  %max = call i32 @u32_at(ptr %h, i64 {MAX_ENTRIES})
  %at_start = icmp eq i32 %head, 0
  %before = sub i32 %head, 1
  %newest = select i1 %at_start, i32 %max, i32 %before
  br i1 %delete, label %stack_take, label %copy
stack_take:
  call void @set_u32(ptr %h, i64 {HEAD}, i32 %newest)
  br label %copy
queue:
  br i1 %delete, label %queue_take, label %copy
queue_take:
  %after = call i32 @queue_next(ptr %h, i32 %tail)
  call void @set_u32(ptr %h, i64 {TAIL}, i32 %after)
  br label %copy
copy:
  %index = phi i32 [ %newest, %stack ], [ %newest, %stack_take ], [ %tail, %queue ], [ %tail, %queue_take ]
  %slot = call ptr @queue_slot(ptr %h, i32 %index)
  call void @queue_copy(ptr %h, ptr %out, ptr %slot)
  call void @unlock(ptr %h)
  ret i64 0
}}
"""

def _queue_or_python(name: str, args: tuple[str, ...] = ("%r1", "%r2", "%r3", "%r4", "%r5")) -> str:
    """IR that goes on at %queue_map for a queue or stack (the map header in %h), and hands any
    other map (a bloom filter) to the Python helper `name`."""
    return f"""  %type = call i32 @u32_at(ptr %h, i64 {TYPE})
  %is_queue = icmp eq i32 %type, {int(MapType.QUEUE)}
  %is_stack = icmp eq i32 %type, {int(MapType.STACK)}
  %ring = or i1 %is_queue, %is_stack
  br i1 %ring, label %queue_map, label %other
other:
{python_fallback(name, args)}"""


def _taker(name: str, delete: bool) -> str:
    """bpf_map_<name>_elem: the next element to r2, removed when `delete` (pop) or not (peek)."""
    return f"""
define i64 @bpfjit_native_map_{name}_elem(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
entry:
  %h = inttoptr i64 %r1 to ptr
{_queue_or_python(f"map_{name}_elem")}
queue_map:
  %out = inttoptr i64 %r2 to ptr
  %r = call i64 @queue_get(ptr %h, ptr %out, i1 {str(delete).lower()})
  ret i64 %r
}}
"""


_HELPERS = f"""
; QueueMap.push: -EINVAL for BPF_NOEXIST or unknown flags; full: -E2BIG, or with BPF_EXIST the
; oldest element makes room.
define i64 @bpfjit_native_map_push_elem(i64 %r1, i64 %r2, i64 %flags, i64 %r4, i64 %r5) {{
entry:
  %h = inttoptr i64 %r1 to ptr
{_queue_or_python("map_push_elem", ("%r1", "%r2", "%flags", "%r4", "%r5"))}
queue_map:
  %value = inttoptr i64 %r2 to ptr
  %has_noexist = call i1 @flag_set(i64 %flags, i64 {BPF_NOEXIST})
  %unknown = icmp ugt i64 %flags, {BPF_EXIST}
  %bad = or i1 %has_noexist, %unknown
  br i1 %bad, label %einval, label %go
einval:
  ret i64 {-errno.EINVAL}
go:
  call void @lock(ptr %h)
  %head = call i32 @u32_at(ptr %h, i64 {HEAD})
  %tail = call i32 @u32_at(ptr %h, i64 {TAIL})
  %following = call i32 @queue_next(ptr %h, i32 %head)
  %full = icmp eq i32 %following, %tail
  br i1 %full, label %when_full, label %write
when_full:
  %replace = call i1 @flag_set(i64 %flags, i64 {BPF_EXIST})
  br i1 %replace, label %drop_oldest, label %e2big
e2big:
  call void @unlock(ptr %h)
  ret i64 {-errno.E2BIG}
drop_oldest:
  %after = call i32 @queue_next(ptr %h, i32 %tail)
  call void @set_u32(ptr %h, i64 {TAIL}, i32 %after)
  br label %write
write:
  %slot = call ptr @queue_slot(ptr %h, i32 %head)
  call void @queue_copy(ptr %h, ptr %slot, ptr %value)
  call void @set_u32(ptr %h, i64 {HEAD}, i32 %following)
  call void @unlock(ptr %h)
  ret i64 0
}}

""" + _taker("pop", delete=True) + _taker("peek", delete=False)

FUNCTIONS = twins((stdhelpers.MAP_PUSH_ELEM, stdhelpers.map_push_elem),
                  (stdhelpers.MAP_POP_ELEM, stdhelpers.map_pop_elem),
                  (stdhelpers.MAP_PEEK_ELEM, stdhelpers.map_peek_elem))

MODULE_IR = _COMMON + _HELPERS

"""LLVM IR of the native ring-buffer helpers: ``bpf_ringbuf_reserve`` / ``submit`` / ``discard`` /
``output`` / ``query``, producing into the memory runtime/maps/ringbuf.py consumes.

Reserve follows RingBuf.reserve (kernel/bpf/ringbuf.c ``__bpf_ringbuf_reserve``) under the map
lock: it walks the pending position past committed records, refuses a record that would put
more than size - 1 bytes in flight, writes the busy header and publishes the producer position.
A commit finds the map from the record alone, as the kernel does: the header's ``pg_off`` leads
to the start of the data area, and the control page before it holds the map's handle. It flips
the header's busy bit (and sets the discard bit) with one atomic exchange, then wakes consumers
by the rule runtime/maps/ringbuf.py describes: bump the wakeup word, and ``futex_wake`` only when
a consumer waits. The verifier allows these helpers only on ring buffers and lets only records
reserved and not yet committed reach submit and discard. The functions live in the helper module
of jit/native_maps.py and use its small functions and declarations.
"""
from __future__ import annotations

import errno

from bpfjit.runtime import stdhelpers
from bpfjit.runtime.maps import HEADER_SIZE
from bpfjit.runtime.maps import native as layout
from bpfjit.runtime.maps.native import FUTEX_WAKE_PRIVATE, SYS_FUTEX
from bpfjit.runtime.maps.uapi import (BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
                                      BPF_RB_PROD_POS, BPF_RB_RING_SIZE, BPF_RINGBUF_BUSY_BIT,
                                      BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ, PAGE_SIZE, RINGBUF_MAX_RECORD_SZ)

from .native_maps import CPU_STRIDE, KEY_BASE, MAX_ENTRIES, VALUE_BASE, twins

EXTERNAL_FUNCTIONS = ("syscall",)
# A ring buffer keeps its consumer and producer positions in these header fields (runtime/maps/base.py).
OFF_CONS_POS, OFF_PROD_POS = CPU_STRIDE, KEY_BASE
WAKEUPS = HEADER_SIZE + layout.EXT_RB_WAKEUPS
PENDING = HEADER_SIZE + layout.EXT_RB_PENDING
WAITERS = HEADER_SIZE + layout.EXT_RB_WAITERS
HDR = BPF_RINGBUF_HDR_SZ
BUSY, DISCARD = BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT

_COMMON = f"""
declare i64 @syscall(i64, ...)

define internal i64 @load_acquire(ptr %h, i64 %off) alwaysinline {{
  %p = getelementptr i8, ptr %h, i64 %off
  %v = load atomic i64, ptr %p acquire, align 8
  ret i64 %v
}}

; The bytes a record of %size takes: its header and data, 8-byte aligned.
define internal i64 @record_length(i64 %size) alwaysinline {{
  %s = add i64 %size, {HDR + 7}
  %r = and i64 %s, -8
  ret i64 %r
}}

; RingBuf.reserve with flags 0: the record's data address, or 0 when there is no room.
define internal i64 @ringbuf_reserve(ptr %h, i64 %size) {{
entry:
  %too_big = icmp ugt i64 %size, {RINGBUF_MAX_RECORD_SZ}
  %len = call i64 @record_length(i64 %size)
  %ring32 = call i32 @u32_at(ptr %h, i64 {MAX_ENTRIES})
  %ring = zext i32 %ring32 to i64
  %mask = sub i64 %ring, 1
  %over = icmp ugt i64 %len, %ring
  %refused = or i1 %too_big, %over
  br i1 %refused, label %none, label %locked
none:
  ret i64 0
locked:
  %data = call i64 @u64_at(ptr %h, i64 {VALUE_BASE})
  %cons = call i64 @load_acquire(ptr %h, i64 {OFF_CONS_POS})
  call void @lock(ptr %h)
  %pend0 = call i64 @u64_at(ptr %h, i64 {PENDING})
  %prod = call i64 @u64_at(ptr %h, i64 {OFF_PROD_POS})
  br label %walk
walk:
  %pend = phi i64 [ %pend0, %locked ], [ %pend1, %committed ]
  %more = icmp ult i64 %pend, %prod
  br i1 %more, label %look, label %walked
look:
  %off = and i64 %pend, %mask
  %ha = add i64 %data, %off
  %hp = inttoptr i64 %ha to ptr
  %hlen = load atomic i32, ptr %hp acquire, align 4
  %busy = and i32 %hlen, {BUSY}
  %is_busy = icmp ne i32 %busy, 0
  br i1 %is_busy, label %walked, label %committed
committed:
  %bare = and i32 %hlen, {~DISCARD & 0xFFFFFFFF}
  %bare64 = zext i32 %bare to i64
  %step = call i64 @record_length(i64 %bare64)
  %pend1 = add i64 %pend, %step
  br label %walk
walked:
  call void @set_u64(ptr %h, i64 {PENDING}, i64 %pend)
  %new_prod = add i64 %prod, %len
  %from_cons = sub i64 %new_prod, %cons
  %from_pend = sub i64 %new_prod, %pend
  %full_cons = icmp ugt i64 %from_cons, %mask
  %full_pend = icmp ugt i64 %from_pend, %mask
  %full = or i1 %full_cons, %full_pend
  br i1 %full, label %no_room, label %room
no_room:
  call void @unlock(ptr %h)
  ret i64 0
room:
  %at = and i64 %prod, %mask
  %hdr = add i64 %data, %at
  %hdrp = inttoptr i64 %hdr to ptr
  %size32 = trunc i64 %size to i32
  %word = or i32 %size32, {BUSY}
  store i32 %word, ptr %hdrp
  %page = udiv i64 %at, {PAGE_SIZE}
  %page32 = trunc i64 %page to i32
  %pgp = getelementptr i8, ptr %hdrp, i64 4
  store i32 %page32, ptr %pgp
  %prodp = getelementptr i8, ptr %h, i64 {OFF_PROD_POS}
  store atomic i64 %new_prod, ptr %prodp release, align 8
  call void @unlock(ptr %h)
  %rec = add i64 %hdr, {HDR}
  ret i64 %rec
}}

; RingBuf._commit for a record the verifier proved reserved: clear busy (set discard), then wake
; consumers as the kernel's bpf_ringbuf_commit decides.
define internal void @ringbuf_commit(i64 %rec, i64 %flags, i1 %discard) {{
entry:
  %hdr = sub i64 %rec, {HDR}
  %hdrp = inttoptr i64 %hdr to ptr
  %pgp = getelementptr i8, ptr %hdrp, i64 4
  %pg32 = load i32, ptr %pgp
  %pg = zext i32 %pg32 to i64
  %pg_bytes = mul i64 %pg, {PAGE_SIZE}
  %hdr_page = and i64 %hdr, {-PAGE_SIZE}
  %data = sub i64 %hdr_page, %pg_bytes
  %control = sub i64 %data, {PAGE_SIZE}
  %controlp = inttoptr i64 %control to ptr
  %handle = load i64, ptr %controlp
  %h = inttoptr i64 %handle to ptr
  %old = load i32, ptr %hdrp
  %unbusy = xor i32 %old, {BUSY}
  %discard_bit = select i1 %discard, i32 {DISCARD}, i32 0
  %new = or i32 %unbusy, %discard_bit
  atomicrmw xchg ptr %hdrp, i32 %new seq_cst
  %force = call i1 @flag_set(i64 %flags, i64 {BPF_RB_FORCE_WAKEUP})
  br i1 %force, label %wake, label %maybe
maybe:
  %quiet = call i1 @flag_set(i64 %flags, i64 {BPF_RB_NO_WAKEUP})
  br i1 %quiet, label %done, label %caught_up
caught_up:
  %cons = call i64 @load_acquire(ptr %h, i64 {OFF_CONS_POS})
  %ring32 = call i32 @u32_at(ptr %h, i64 {MAX_ENTRIES})
  %ring = zext i32 %ring32 to i64
  %mask = sub i64 %ring, 1
  %cons_at = and i64 %cons, %mask
  %rec_at = sub i64 %hdr, %data
  %waited_for = icmp eq i64 %cons_at, %rec_at
  br i1 %waited_for, label %wake, label %done
wake:
  %wordp = getelementptr i8, ptr %h, i64 {WAKEUPS}
  atomicrmw add ptr %wordp, i32 1 seq_cst
  %waitersp = getelementptr i8, ptr %h, i64 {WAITERS}
  %waiters = load atomic i64, ptr %waitersp seq_cst, align 8
  %anyone = icmp ne i64 %waiters, 0
  br i1 %anyone, label %futex, label %done
futex:
  call i64 (i64, ...) @syscall(i64 {SYS_FUTEX}, ptr %wordp, i32 {FUTEX_WAKE_PRIVATE}, i32 2147483647)
  br label %done
done:
  ret void
}}

define internal void @set_u64(ptr %h, i64 %off, i64 %v) alwaysinline {{
  %p = getelementptr i8, ptr %h, i64 %off
  store i64 %v, ptr %p
  ret void
}}
"""

# bpf_ringbuf_submit and bpf_ringbuf_discard.
_COMMITS = "".join(f"""
define i64 @bpfjit_native_ringbuf_{name}(i64 %rec, i64 %flags, i64 %r3, i64 %r4, i64 %r5) {{
  call void @ringbuf_commit(i64 %rec, i64 %flags, i1 {discard})
  ret i64 0
}}
""" for name, discard in (("submit", "false"), ("discard", "true")))

_HELPERS = f"""
define i64 @bpfjit_native_ringbuf_reserve(i64 %r1, i64 %size, i64 %flags, i64 %r4, i64 %r5) {{
entry:
  %any_flags = icmp ne i64 %flags, 0
  br i1 %any_flags, label %none, label %go
none:
  ret i64 0
go:
  %h = inttoptr i64 %r1 to ptr
  %rec = call i64 @ringbuf_reserve(ptr %h, i64 %size)
  ret i64 %rec
}}

{_COMMITS}
; RingBuf.output: -EINVAL for unknown flags, -EAGAIN without room.
define i64 @bpfjit_native_ringbuf_output(i64 %r1, i64 %r2, i64 %size, i64 %flags, i64 %r5) {{
entry:
  %unknown = call i1 @flag_set(i64 %flags, i64 {~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP)})
  br i1 %unknown, label %einval, label %go
einval:
  ret i64 {-errno.EINVAL}
go:
  %h = inttoptr i64 %r1 to ptr
  %rec = call i64 @ringbuf_reserve(ptr %h, i64 %size)
  %none = icmp eq i64 %rec, 0
  br i1 %none, label %eagain, label %fill
eagain:
  ret i64 {-errno.EAGAIN}
fill:
  %dst = inttoptr i64 %rec to ptr
  %src = inttoptr i64 %r2 to ptr
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %size, i1 false)
  call void @ringbuf_commit(i64 %rec, i64 %flags, i1 false)
  ret i64 0
}}

define i64 @bpfjit_native_ringbuf_query(i64 %r1, i64 %flags, i64 %r3, i64 %r4, i64 %r5) {{
entry:
  %h = inttoptr i64 %r1 to ptr
  switch i64 %flags, label %other [
    i64 {BPF_RB_AVAIL_DATA}, label %avail
    i64 {BPF_RB_RING_SIZE}, label %size
    i64 {BPF_RB_CONS_POS}, label %cons
    i64 {BPF_RB_PROD_POS}, label %prod
  ]
other:
  ret i64 0
avail:
  %c = call i64 @load_acquire(ptr %h, i64 {OFF_CONS_POS})
  %p = call i64 @load_acquire(ptr %h, i64 {OFF_PROD_POS})
  %a = sub i64 %p, %c
  ret i64 %a
size:
  %ring32 = call i32 @u32_at(ptr %h, i64 {MAX_ENTRIES})
  %ring = zext i32 %ring32 to i64
  ret i64 %ring
cons:
  %cp = call i64 @load_acquire(ptr %h, i64 {OFF_CONS_POS})
  ret i64 %cp
prod:
  %pp = call i64 @load_acquire(ptr %h, i64 {OFF_PROD_POS})
  ret i64 %pp
}}
"""

FUNCTIONS = twins((stdhelpers.RINGBUF_RESERVE, stdhelpers.ringbuf_reserve),
                  (stdhelpers.RINGBUF_SUBMIT, stdhelpers.ringbuf_submit),
                  (stdhelpers.RINGBUF_DISCARD, stdhelpers.ringbuf_discard),
                  (stdhelpers.RINGBUF_OUTPUT, stdhelpers.ringbuf_output),
                  (stdhelpers.RINGBUF_QUERY, stdhelpers.ringbuf_query))

MODULE_IR = _COMMON + _HELPERS

"""The native loop that runs a verified XDP program once per packet of a batch, jitted or on the
native interpreter, for runs over captured traffic (bpfjit/capture.py): at a million packets a
second, a Python call per packet would cost more than the program.

Each packet gets the memory a test run of its own would give it (runtime/run_memory.py): the one
page of the batch's xdp_buff, its headroom zeroed again, the packet copied in XDP_HEADROOM bytes
from the start, data_meta = data and data_end set in the native context, and the packet's entry
in the run's region table moved with it. A packet's run is an invocation of its own (the tail-call
count starts again). After each run the loop records r0, where the program left data_meta,
data and data_end (offsets from the page) and the redirect record of the RunEnv (cleared before
each packet: the kernel's record lasts one test run), and, when asked, copies the packet out (from
data_meta to data_end, as a test run's data_out) into a page-sized slot of its own. A run that
ends in anything but Status.OK (a tail call left to Python, a failure) ends the batch: the caller
finishes that packet and starts the next batch after it.

Only linear packets (at most XDP_LINEAR_MAX bytes) of programs given no ctx_in take this path:
metadata from ctx_in and frags are the test run's (bpfjit.program) to build.
"""
from __future__ import annotations

import ctypes

from bpfjit.runtime.context import CTX_REGION_ENTRY, XDP_HEADROOM, XDP_MD
from bpfjit.runtime.run_memory import PAGE_SIZE
from bpfjit.runtime.status import FIELD_REDIRECT_KIND, FIELD_STATUS, FIELD_TAIL_CALLS, RunEnv, Status

from .engine import record_stack_top, shared_function, store_elapsed

# Per packet, the loop's record: r0, then data_meta, data and data_end as offsets from the page,
# then RunEnv's four words of redirect record (kind, target, key, flags: runtime/run_context.py).
RESULT_WORDS = 8
REDIRECT_WORDS = 4
OUT_SLOT = PAGE_SIZE  # a packet out is at most the page: each gets a slot of this size

BATCH_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(RunEnv),
                              ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p,
                              ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64))
# How each engine's loop runs a packet: the jitted main function (r1 = ctx), or the native
# interpreter's repeat entry (jit/native_interp.py) once, on the program's image.
_RUN_ONE = {
    "jit": "%r = call i64 %fn(ptr %env, i64 %ctx, i64 0, i64 0, i64 0, i64 0)",
    "interp": "%r = call i64 %fn(ptr %image, ptr %env, i64 %ctx, i64 0, i64 1, ptr %runs)",
}

_META, _DATA, _END = (XDP_MD.field(name).native_offset for name in ("data_meta", "data", "data_end"))


def _batch_ir(engine: str) -> str:
    return f"""
declare i32 @clock_gettime(i32, ptr)
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)

define i64 @bpfjit_xdp_batch(ptr %fn, ptr %image, ptr %env, i64 %ctx, i64 %page_addr, ptr %spans, i64 %n,
                             ptr %results, ptr %out, ptr %elapsed) {{
entry:
  %runs = alloca i64
  %before = alloca [2 x i64]
  %after = alloca [2 x i64]{record_stack_top()}
  %status_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_STATUS}
  %tail_calls_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_TAIL_CALLS}
  %redirect_field = getelementptr inbounds i64, ptr %env, i64 {FIELD_REDIRECT_KIND}
  %page = inttoptr i64 %page_addr to ptr
  %data = getelementptr inbounds i8, ptr %page, i64 {XDP_HEADROOM}
  %data_addr = ptrtoint ptr %data to i64
  %c = inttoptr i64 %ctx to ptr
  %meta_field = getelementptr inbounds i8, ptr %c, i64 {_META}
  %data_field = getelementptr inbounds i8, ptr %c, i64 {_DATA}
  %end_field = getelementptr inbounds i8, ptr %c, i64 {_END}
  %entry_field = getelementptr inbounds i8, ptr %c, i64 {CTX_REGION_ENTRY}
  %copies = icmp ne ptr %out, null
  call i32 @clock_gettime(i32 1, ptr %before)
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop_end ]
  store volatile i64 0, ptr %tail_calls_field
  store volatile i64 0, ptr %redirect_field
  %span = getelementptr inbounds [2 x i64], ptr %spans, i64 %i
  %source_addr = load i64, ptr %span
  %length_at = getelementptr inbounds i64, ptr %span, i64 1
  %length = load i64, ptr %length_at
  %source = inttoptr i64 %source_addr to ptr
  call void @llvm.memset.p0.i64(ptr %page, i8 0, i64 {XDP_HEADROOM}, i1 false)
  call void @llvm.memcpy.p0.p0.i64(ptr %data, ptr %source, i64 %length, i1 false)
  %end_addr = add i64 %data_addr, %length
  store i64 %data_addr, ptr %meta_field
  store i64 %data_addr, ptr %data_field
  store i64 %end_addr, ptr %end_field
  %table_entry = load i64, ptr %entry_field
  %bound = icmp ne i64 %table_entry, 0
  br i1 %bound, label %publish, label %run
publish:
  %entry_start = inttoptr i64 %table_entry to ptr
  store i64 %data_addr, ptr %entry_start
  %entry_size = getelementptr inbounds i64, ptr %entry_start, i64 1
  store i64 %length, ptr %entry_size
  br label %run
run:
  {_RUN_ONE[engine]}
  %meta_now = load i64, ptr %meta_field
  %data_now = load i64, ptr %data_field
  %end_now = load i64, ptr %end_field
  %record = getelementptr inbounds [{RESULT_WORDS} x i64], ptr %results, i64 %i
  store i64 %r, ptr %record
  %record_meta = getelementptr inbounds i64, ptr %record, i64 1
  %meta_off = sub i64 %meta_now, %page_addr
  store i64 %meta_off, ptr %record_meta
  %record_data = getelementptr inbounds i64, ptr %record, i64 2
  %data_off = sub i64 %data_now, %page_addr
  store i64 %data_off, ptr %record_data
  %record_end = getelementptr inbounds i64, ptr %record, i64 3
  %end_off = sub i64 %end_now, %page_addr
  store i64 %end_off, ptr %record_end
  %record_redirect = getelementptr inbounds i64, ptr %record, i64 4
  call void @llvm.memcpy.p0.p0.i64(ptr %record_redirect, ptr %redirect_field, i64 {8 * REDIRECT_WORDS}, i1 false)
  br i1 %copies, label %copy, label %loop_end
copy:
  %slot_at = mul i64 %i, {OUT_SLOT}
  %slot = getelementptr inbounds i8, ptr %out, i64 %slot_at
  %meta_ptr = inttoptr i64 %meta_now to ptr
  %out_length = sub i64 %end_now, %meta_now
  call void @llvm.memcpy.p0.p0.i64(ptr %slot, ptr %meta_ptr, i64 %out_length, i1 false)
  br label %loop_end
loop_end:
  %next = add i64 %i, 1
  %more = icmp ult i64 %next, %n
  %status = load volatile i64, ptr %status_field
  %fine = icmp eq i64 %status, {int(Status.OK)}
  %go = and i1 %more, %fine
  br i1 %go, label %loop, label %done
done:
  call i32 @clock_gettime(i32 1, ptr %after){store_elapsed()}
  ret i64 %next
}}
"""


def xdp_batch_loop(engine: str):
    """The batch loop of `engine` ("jit" or "interp"; compiled on first use, shared by every
    program of the process)."""
    return shared_function(f"bpfjit_xdp_batch ({engine})", _batch_ir(engine), BATCH_TYPE, "bpfjit_xdp_batch")

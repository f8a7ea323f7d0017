"""LLVM IR of the native helpers that are not map operations: ``bpf_spin_lock`` /
``bpf_spin_unlock``, the clocks, ``bpf_get_prandom_u32`` and ``bpf_get_smp_processor_id``.

The spin lock runs the protocol of runtime/stdhelpers.py ``spin_lock`` (an atomic 0 -> 1 on the
lock word, 0 to release) on the same word. It spins a bounded number of times; a lock still held
after that is handed to the Python helper itself through a process-wide callback, which waits
out ``SPIN_LOCK_PATIENCE`` and fails the run if the lock never comes free (a verified program
never gets there: its locks are always released). Only that slow path enters Python.

``bpf_get_prandom_u32`` is splitmix64 over one process-wide 64-bit word, advanced atomically (so
threads never share a value), seeded from the OS at start: as the kernel's per-cpu prandom,
statistically random and not for secrets.

``bpf_get_smp_processor_id`` is the slot a program's per-CPU map helpers use on this thread: the
thread's cpu number (jit/native_maps.py ``cpu_number``, runtime/maps/native.py) modulo the number
of per-CPU slots its object was loaded with. That number is a constant of the program's helper
registry, not of the helper module, so each count gets its own one-function module
(:func:`processor_id_ir`) calling the helper module's ``cpu_number``.

``bpf_probe_read_kernel(_str)`` stay Python: they may read only the run's memory (its regions, and
its stack frames up to RunEnv.stack_top), which a native helper, handed r1-r5 and no RunEnv,
cannot see.
"""
from __future__ import annotations

import ctypes
import functools
import os
import time

from bpfjit.runtime import stdhelpers
from bpfjit.runtime.helpers import Helper
from bpfjit.runtime.maps.native import processor_id

from .native_maps import twins

EXTERNAL_FUNCTIONS = ("clock_gettime",)
SLOW_SPIN_LOCK = "bpfjit_spin_lock_slow"
PRANDOM_STATE = "bpfjit_prandom_state"
GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # splitmix64's increment
SPINS = 1 << 20  # pause-spins before the slow path: tens of milliseconds
CPU_NUMBER = "bpfjit_native_cpu_number"
PROCESSOR_ID = "bpfjit_native_get_smp_processor_id"

MODULE_IR = f"""
declare i32 @clock_gettime(i32, ptr)
declare i64 @{SLOW_SPIN_LOCK}(i64, i64, i64, i64, i64)
@{PRANDOM_STATE} = external global i64

define i64 @bpfjit_native_spin_lock(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
entry:
  %word = inttoptr i64 %r1 to ptr
  br label %try
try:
  %n = phi i64 [ 0, %entry ], [ %n1, %wait ]
  %r = cmpxchg ptr %word, i32 0, i32 1 acquire monotonic
  %taken = extractvalue {{ i32, i1 }} %r, 1
  br i1 %taken, label %done, label %wait
wait:
  call void asm sideeffect "pause", ""()
  %n1 = add i64 %n, 1
  %patient = icmp ult i64 %n1, {SPINS}
  br i1 %patient, label %try, label %slow
slow:
  %s = call i64 @{SLOW_SPIN_LOCK}(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5)
  ret i64 %s
done:
  ret i64 0
}}

define i64 @bpfjit_native_spin_unlock(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
  %word = inttoptr i64 %r1 to ptr
  store atomic i32 0, ptr %word release, align 4
  ret i64 0
}}

define internal i64 @clock(i32 %id) alwaysinline {{
  %ts = alloca {{ i64, i64 }}
  call i32 @clock_gettime(i32 %id, ptr %ts)
  %sp = getelementptr {{ i64, i64 }}, ptr %ts, i32 0, i32 0
  %np = getelementptr {{ i64, i64 }}, ptr %ts, i32 0, i32 1
  %s = load i64, ptr %sp
  %ns = load i64, ptr %np
  %sns = mul i64 %s, 1000000000
  %t = add i64 %sns, %ns
  ret i64 %t
}}

define i64 @bpfjit_native_ktime_get_ns(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
  %t = call i64 @clock(i32 {time.CLOCK_MONOTONIC})
  ret i64 %t
}}

define i64 @bpfjit_native_ktime_get_boot_ns(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
  %t = call i64 @clock(i32 {time.CLOCK_BOOTTIME})
  ret i64 %t
}}

define i64 @bpfjit_native_get_prandom_u32(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
  %old = atomicrmw add ptr @{PRANDOM_STATE}, i64 {GOLDEN_GAMMA} monotonic
  %z0 = add i64 %old, {GOLDEN_GAMMA}
  %a = lshr i64 %z0, 30
  %z1 = xor i64 %z0, %a
  %z2 = mul i64 %z1, {0xBF58476D1CE4E5B9}
  %b = lshr i64 %z2, 27
  %z3 = xor i64 %z2, %b
  %z4 = mul i64 %z3, {0x94D049BB133111EB}
  %c = lshr i64 %z4, 31
  %z5 = xor i64 %z4, %c
  %r = and i64 %z5, 4294967295
  ret i64 %r
}}

; The thread's cpu number, for the modules of processor_id_ir.
define i64 @{CPU_NUMBER}() {{
  %c = call i64 @cpu_number()
  ret i64 %c
}}
"""


def processor_id_ir(ncpus: int) -> str:
    """The module of ``bpf_get_smp_processor_id`` for programs whose per-CPU maps have `ncpus`
    slots: the slot jit/native_maps.py ``map_cpu`` gives those maps on this thread."""
    return f"""
declare i64 @{CPU_NUMBER}()

define i64 @{PROCESSOR_ID}(i64 %r1, i64 %r2, i64 %r3, i64 %r4, i64 %r5) {{
  %c = call i64 @{CPU_NUMBER}()
  %slot = urem i64 %c, {ncpus}
  ret i64 %slot
}}
"""


def processor_id_slots(helper: Helper) -> int | None:
    """The per-CPU slot count of a standard ``bpf_get_smp_processor_id`` (runtime/maps/native.py
    ``processor_id`` bound to it), or None for any other implementation."""
    impl = helper.impl
    if isinstance(impl, functools.partial) and impl.func is processor_id and len(impl.args) == 1 \
            and isinstance(impl.args[0], int) and impl.args[0] >= 1:
        return impl.args[0]
    return None


FUNCTIONS = twins((stdhelpers.SPIN_LOCK, stdhelpers.spin_lock), (stdhelpers.SPIN_UNLOCK, stdhelpers.spin_unlock),
                  (stdhelpers.KTIME_GET_NS, stdhelpers.ktime_get_ns),
                  (stdhelpers.KTIME_GET_BOOT_NS, stdhelpers.ktime_get_boot_ns),
                  (stdhelpers.GET_PRANDOM_U32, stdhelpers.get_prandom_u32))

_slow_path: list[object] = []  # the callback, alive as long as the process (the module is never freed)
_prandom_state = ctypes.c_uint64(int.from_bytes(os.urandom(8), "little"))  # likewise


def symbols() -> dict[str, int]:
    """The module's own symbols: the slow path of the spin lock (the Python helper, through the
    engine's callback wrapper, which reports its failure in the run's RunEnv) and prandom's word."""
    from .engine import helper_callback  # engine imports native_helpers, which imports this
    if not _slow_path:
        _slow_path.append(helper_callback(Helper(stdhelpers.SPIN_LOCK, "spin_lock", stdhelpers.wait_for_spin_lock)))
    return {SLOW_SPIN_LOCK: ctypes.cast(_slow_path[0], ctypes.c_void_p).value,
            PRANDOM_STATE: ctypes.addressof(_prandom_state)}

"""The standard helpers a clang-built program calls, implemented in Python over native memory.

``standard_helpers(trace)`` returns a :class:`HelperRegistry` with the kernel's ids. Map helpers
find the map from the handle in r1 (``maps.map_from_handle``) and work on raw keys and values
read from the program's memory. Helpers that call back into BPF code (``bpf_loop``,
``for_each_map_elem``) or change control flow (``tail_call``) reach the running engine through
:mod:`~bpfjit.runtime.run_context`.

Every pointer a program hands a helper is checked, for the exact size the helper reads or writes,
against the memory of the run (runtime/helper_args.py): a bad one is a clean error, never a crash.
"""
from __future__ import annotations

import ctypes
import functools
import random
import time
from typing import Callable

from bpfjit.isa import MASK32, MASK64

from . import helper_args, maps, run_context
from . import skb_helpers, sock_helpers, xdp_helpers
from .helpers import Helper, HelperRegistry, Prototype, errno_result
from .kernel_helpers import helper_name
from .map_types import MapType
from .maps.native import ATOMICS, processor_id
from .maps.perf_event import PerfEventArray
from .printk import format_printk
from .run_memory import skb_buffer, xdp_buffer
from .status import BPF_MAX_LOOPS, MAX_TAIL_CALLS, HelperFault, Status

EINVAL, ENOENT, E2BIG, EFAULT = 22, 2, 7, 14

# The kernel's ids (uapi ___BPF_FUNC_MAPPER).
MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, PROBE_READ = 1, 2, 3, 4
KTIME_GET_NS, TRACE_PRINTK, GET_PRANDOM_U32, GET_SMP_PROCESSOR_ID = 5, 6, 7, 8
TAIL_CALL, MAP_PUSH_ELEM, MAP_POP_ELEM, MAP_PEEK_ELEM = 12, 87, 88, 89
SPIN_LOCK, SPIN_UNLOCK = 93, 94
PROBE_READ_KERNEL, PROBE_READ_KERNEL_STR = 113, 115
KTIME_GET_BOOT_NS = 125
RINGBUF_OUTPUT, RINGBUF_RESERVE, RINGBUF_SUBMIT, RINGBUF_DISCARD, RINGBUF_QUERY = 130, 131, 132, 133, 134
FOR_EACH_MAP_ELEM, LOOP = 164, 181
REDIRECT, REDIRECT_MAP, PERF_EVENT_OUTPUT = 23, 51, 25


def current_cpu(ncpus: int) -> int:
    """The "CPU" a run is on: one slot per worker thread, numbered as threads first run (the same
    number the native helpers see: runtime/maps/native.py)."""
    return processor_id(ncpus)


def _map(handle: int, kind: type[maps.Map] = maps.Map, arg: int = 1) -> maps.Map:
    """The map (of the given kind) a handle names; the handle is the helper's argument `arg`."""
    found = maps.map_from_handle(handle)
    if not isinstance(found, kind):
        what = "a map" if kind is maps.Map else f"a {kind.type_name} map"
        raise HelperFault(f"{handle:#x} is not {what} (arg {arg})")
    return found


# --- maps ---------------------------------------------------------------------------------------

def map_lookup_elem(handle, key, *_):
    m = _map(handle)
    return m.lookup(helper_args.read(key, m.key_size, 2), current_cpu(m.ncpus))


def map_update_elem(handle, key, value, flags, *_):
    m = _map(handle)
    key_bytes = helper_args.read(key, m.key_size, 2)
    return m.update(key_bytes, helper_args.read(value, m.value_size, 3), flags, current_cpu(m.ncpus)) & MASK64


def map_delete_elem(handle, key, *_):
    m = _map(handle)
    return m.delete(helper_args.read(key, m.key_size, 2)) & MASK64


def map_push_elem(handle, value, flags, *_):
    m = _map(handle)
    return m.push(helper_args.read(value, m.value_size, 2), flags) & MASK64


def map_pop_elem(handle, out, *_):
    m = _map(handle)
    helper_args.check(out, m.value_size, 2, write=True)
    return m.pop(out) & MASK64


def map_peek_elem(handle, out, *_):
    m = _map(handle)
    helper_args.check(out, m.value_size, 2, write=True)
    return m.peek(out) & MASK64


# --- time, randomness, cpu ----------------------------------------------------------------------

def ktime_get_ns(*_):
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def ktime_get_boot_ns(*_):
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def get_prandom_u32(*_):
    return random.getrandbits(32)


# --- probe_read: bounded copies -----------------------------------------------------------------
# There is no kernel memory here: "kernel" addresses are the program's own memory (its maps,
# stack, packet and context). A source outside it fails with -EFAULT and a zeroed destination,
# as the kernel's copy_from_kernel_nofault does for a bad address; a destination outside it is
# the program's error (the verifier would have rejected it).

def probe_read_kernel(dst, size, src, *_):
    size &= 0xFFFF_FFFF
    helper_args.check(dst, size, 1, write=True)
    if not helper_args.accessible(src, size):
        ctypes.memset(dst, 0, size)
        return errno_result(EFAULT)
    ctypes.memmove(dst, src, size)
    return 0


def probe_read_kernel_str(dst, size, src, *_):
    """Copy a NUL-terminated string, at most size bytes including the NUL; returns its length + 1."""
    size &= 0xFFFF_FFFF
    if size == 0:
        return errno_result(EINVAL)
    helper_args.check(dst, size, 1, write=True)
    if not helper_args.accessible(src, 1):
        ctypes.memset(dst, 0, size)
        return errno_result(EFAULT)
    text = helper_args.string(src, size - 1, 3)
    ctypes.memmove(dst, text + b"\0", len(text) + 1)
    return len(text) + 1


# --- ring buffers -------------------------------------------------------------------------------

def ringbuf_output(handle, data, size, flags, *_):
    ring = _map(handle, maps.RingBuf)
    return ring.output(helper_args.read(data, size, 2), flags) & MASK64


def ringbuf_reserve(handle, size, flags, *_):
    return _map(handle, maps.RingBuf).reserve(size, flags)


def _commit(address: int, flags: int, discard: bool) -> None:
    """Submit or discard the record at address: it must be one reserved and not yet committed."""
    ring = maps.ringbuf_from_record(address)
    if ring is None or (ring.discard if discard else ring.submit)(address, flags):
        raise HelperFault(f"{address:#x} is not the start of a ring buffer record reserved and not yet "
                          "submitted or discarded (arg 1)")


def ringbuf_submit(address, flags, *_):
    _commit(address, flags, discard=False)
    return 0


def ringbuf_discard(address, flags, *_):
    _commit(address, flags, discard=True)
    return 0


def ringbuf_query(handle, flags, *_):
    return _map(handle, maps.RingBuf).query(flags)


# --- spin locks: a real lock word in the map value ----------------------------------------------

SPIN_LOCK_PATIENCE = 1.0  # seconds a bpf_spin_lock may wait before the run fails


def spin_lock(address, *_):
    """Take the bpf_spin_lock at address: an atomic 0 -> 1 on the word, spinning while held.

    The native helper (jit/native_misc.py) runs the same protocol with its own cmpxchg, and calls
    this function when the lock stays held past its own spins; both agree on the memory word.
    """
    helper_args.check(address, 4, 1, write=True)
    return wait_for_spin_lock(address)


def wait_for_spin_lock(address, *_):
    """Spin (yielding the GIL) until the lock word goes 0 -> 1. Also the native lock's slow path
    (its address proven by the verifier), which may come from a thread no run is on."""
    run = run_context.current_or_none()
    give_up = time.monotonic() + SPIN_LOCK_PATIENCE
    while True:
        if ATOMICS.cmpxchg32(address, 0, 1) == 0:
            return 0
        # A verified program never waits long: a lock still held this long was taken and never
        # released (the verifier's pairing rule, absent for an unverified program).
        if (run is not None and run.env.stop) or time.monotonic() > give_up:
            raise HelperFault(f"the bpf_spin_lock at {address:#x} is still held: taken and never released")
        time.sleep(0)


def spin_unlock(address, *_):
    helper_args.check(address, 4, 1, write=True)
    ctypes.c_uint32.from_address(address).value = 0  # an aligned store: atomic, and a release on x86
    return 0


# --- helpers that run BPF code: tail calls and callbacks ---------------------------------------

def tail_call(ctx, handle, index, *_):
    """Switch to the program in slot `index`: on success the caller never resumes.

    The helper only records the target and sets the run's status to TAIL_CALL; the engine
    unwinds the caller's frames and bpfjit.program starts the target with the same ctx. On
    failure (bad slot, empty slot, 33 tail calls already) the caller continues, r0 = -ENOENT.
    The JIT makes the call natively once the slot's native entry is filled (jit/lower.py), and
    comes here while it is not: from such code, the helper fills it.
    """
    run = run_context.current()
    prog_array = _map(handle, maps.ProgArray, arg=2)
    index &= 0xFFFF_FFFF
    target = prog_array.program(index) if index < prog_array.max_entries else None
    if target is None or run.env.tail_calls >= MAX_TAIL_CALLS:
        return errno_result(ENOENT)
    if run.native_tail_calls:
        prog_array.publish_entry(index)
    run.env.tail_calls += 1
    run.tail_call_target = target
    run.env.status = Status.TAIL_CALL
    return 0


def _callback_start(token: int) -> int:
    start = run_context.current().environment.function_of(token)
    if start is None:
        raise HelperFault(f"{token:#x} is not a BPF function (arg 2)")
    return start


def loop(count, callback, ctx, flags, *_):
    """bpf_loop: callback(i, ctx) for i in 0..count-1 until it returns 1; returns iterations run."""
    if flags:
        return errno_result(EINVAL)
    if count > BPF_MAX_LOOPS:
        return errno_result(E2BIG)
    run, start = run_context.current(), _callback_start(callback)
    for i in range(count):
        stop = run.call_function(start, [i, ctx, 0, 0, 0])
        if run.env.status != Status.OK:
            return 0
        if stop == 1:
            return i + 1
    return count


def for_each_map_elem(handle, callback, ctx, flags, *_):
    """callback(map, key, value, ctx) for each element until it returns 1; returns elements visited."""
    if flags:
        return errno_result(EINVAL)
    m = _map(handle)
    run, start = run_context.current(), _callback_start(callback)
    visited = 0
    for key, value in m.elements(current_cpu(m.ncpus)):
        visited += 1
        stop = run.call_function(start, [handle, key, value, ctx, 0])
        if run.env.status != Status.OK:
            return 0
        if stop == 1:
            break
    return visited


# --- redirects (net/core/filter.c): record the target in the run, return the action -------------

XDP_ABORTED, XDP_REDIRECT, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 4, 2, 7
BPF_F_INGRESS, BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS = 1, 1 << 3, 1 << 4
# bpf_redirect_map's fallback: the low bits of its flags, an action among XDP_ABORTED..XDP_TX.
REDIRECT_FALLBACK_MASK = 3
# The flags beyond the fallback each redirect map type accepts.
REDIRECT_MAP_FLAGS = {MapType.DEVMAP: BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS,
                      MapType.DEVMAP_HASH: BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS,
                      MapType.CPUMAP: 0, MapType.XSKMAP: 0}


def redirect_rule(program_type: str) -> tuple[int, int, int]:
    """bpf_redirect for a kernel program type: (the flags it takes, its result for any other flag,
    its result once it recorded the target). XDP's (bpf_xdp_redirect) takes no flag; the skb
    programs' takes BPF_F_INGRESS."""
    if program_type == "XDP":
        return 0, XDP_ABORTED, XDP_REDIRECT
    return BPF_F_INGRESS, TC_ACT_SHOT, TC_ACT_REDIRECT


def redirect(ifindex, flags, *_):
    """bpf_redirect by the running program's type (redirect_rule): a flag it does not take
    records nothing."""
    run = run_context.current()
    taken, refused, redirected = redirect_rule(run.environment.program_type)
    if flags & ~taken:
        return refused
    run_context.record_redirect(run.env, run_context.RECORD_IFINDEX, ifindex & MASK32, 0, flags)
    return redirected


def redirect_map(handle, key, flags, *_):
    """bpf_redirect_map: XDP_REDIRECT when the map holds the key (or for a DEVMAP broadcast),
    else the fallback action in the flags' low bits; XDP_ABORTED for flags the map does not take."""
    m = _map(handle)
    allowed = REDIRECT_MAP_FLAGS.get(MapType(m.map_type)) if m.map_type in REDIRECT_MAP_FLAGS else None
    if allowed is None:
        raise HelperFault(f"map {m.name} is not a redirect map (DEVMAP, DEVMAP_HASH, CPUMAP or XSKMAP) (arg 1)")
    if flags & ~(REDIRECT_FALLBACK_MASK | allowed):
        return XDP_ABORTED
    run = run_context.current()
    index = key & MASK32  # the maps' keys are u32: the kernel passes the u64 argument as one
    if not m.lookup(index.to_bytes(4, "little")) and not flags & BPF_F_BROADCAST:
        run_context.record_redirect(run.env, run_context.RECORD_CLEARED)
        return flags & REDIRECT_FALLBACK_MASK
    run_context.record_redirect(run.env, run_context.RECORD_MAP, m.handle, index, flags & allowed)
    return XDP_REDIRECT


# --- perf event output (kernel/trace/bpf_trace.c, net/core/filter.c) ------------------------------

BPF_F_INDEX_MASK, BPF_F_CURRENT_CPU = 0xFFFF_FFFF, 0xFFFF_FFFF
BPF_F_CTXLEN_MASK = 0xFFFFF << 32


def perf_event_output(ctx, handle, flags, data, size):
    """bpf_perf_event_output: a sample of `size` bytes at `data` into the map's slot for the flags'
    index (BPF_F_CURRENT_CPU: this CPU's). From an XDP or skb program the flags' bits 32-51 ask
    for that many bytes of the packet after the data (bpf_xdp_event_output,
    bpf_skb_event_output): -EFAULT when the packet is shorter."""
    events = _map(handle, PerfEventArray, arg=2)
    sample = helper_args.read(data, size & MASK32, 4)
    xdp, skb = xdp_buffer(ctx), skb_buffer(ctx)
    packet_program = xdp is not None or skb is not None
    if flags & ~(BPF_F_INDEX_MASK | (BPF_F_CTXLEN_MASK if packet_program else 0)):
        return errno_result(EINVAL)
    wanted = (flags & BPF_F_CTXLEN_MASK) >> 32
    if wanted:
        length = xdp.length() if xdp is not None else skb.length()
        if wanted > length:
            return errno_result(EFAULT)
        if xdp is not None:
            copied = ctypes.create_string_buffer(wanted)
            xdp.copy(0, ctypes.addressof(copied), wanted, into_packet=False)
            sample += copied.raw
        else:
            sample += ctypes.string_at(skb.data, wanted)
    cpu = current_cpu(events.possible_cpus)
    index = flags & BPF_F_INDEX_MASK
    return events.output(cpu if index == BPF_F_CURRENT_CPU else index, cpu, sample) & MASK64


# --- trace_printk -------------------------------------------------------------------------------

def trace_printk_helper(sink: Callable[[str], None]) -> Helper:
    def trace_printk(fmt, size, a1, a2, a3):
        raw = helper_args.read(fmt, size & 0xFFFF_FFFF, 1)
        if b"\0" not in raw:  # the kernel's bpf_bprintf_prepare wants the NUL inside fmt_size
            return errno_result(EINVAL)
        printed = format_printk(raw, [a1, a2, a3])
        sink(printed.text.decode(errors="replace"))
        return printed.length
    # The kernel declares only fmt and its size: r3-r5 may be unset when the format uses fewer.
    return Helper(TRACE_PRINTK, "trace_printk", trace_printk, Prototype("integer", ("mem", "size")))


# Map types whose program-side operations only these Python helpers implement: the native twins of
# the map helpers (jit/native_maps.py, native_queue.py) know arrays, hashes, queues, stacks and the
# always-empty maps of kernel objects, and would answer "absent" (or worse) for these.
def standard_helpers(trace: Callable[[str], None], ncpus: int = 1) -> HelperRegistry:
    """The kernel helpers bpfjit implements in Python; trace receives bpf_printk messages."""
    table = [
        (MAP_LOOKUP_ELEM, map_lookup_elem, ("map", "key"), "map_value_or_null"),
        (MAP_UPDATE_ELEM, map_update_elem, ("map", "key", "value", "integer"), "integer"),
        (MAP_DELETE_ELEM, map_delete_elem, ("map", "key"), "integer"),
        (MAP_PUSH_ELEM, map_push_elem, ("map", "value", "integer"), "integer"),
        (MAP_POP_ELEM, map_pop_elem, ("map", "uninit_value"), "integer"),
        (MAP_PEEK_ELEM, map_peek_elem, ("map", "uninit_value"), "integer"),
        (KTIME_GET_NS, ktime_get_ns, (), "integer"),
        (KTIME_GET_BOOT_NS, ktime_get_boot_ns, (), "integer"),
        (GET_PRANDOM_U32, get_prandom_u32, (), "integer"),
        (PROBE_READ, probe_read_kernel, ("uninit_mem", "size_or_zero", "any"), "integer"),
        (PROBE_READ_KERNEL, probe_read_kernel, ("uninit_mem", "size_or_zero", "any"), "integer"),
        (PROBE_READ_KERNEL_STR, probe_read_kernel_str, ("uninit_mem", "size_or_zero", "any"), "integer"),
        (RINGBUF_OUTPUT, ringbuf_output, ("map", "mem", "size_or_zero", "integer"), "integer"),
        (RINGBUF_RESERVE, ringbuf_reserve, ("map", "const_size", "integer"), "ringbuf_mem_or_null"),
        (RINGBUF_SUBMIT, ringbuf_submit, ("ringbuf_mem", "integer"), "void"),
        (RINGBUF_DISCARD, ringbuf_discard, ("ringbuf_mem", "integer"), "void"),
        (RINGBUF_QUERY, ringbuf_query, ("map", "integer"), "integer"),
        (SPIN_LOCK, spin_lock, ("spin_lock",), "void"),
        (SPIN_UNLOCK, spin_unlock, ("spin_lock",), "void"),
        (TAIL_CALL, tail_call, ("ctx", "prog_array", "integer"), "integer"),
        (LOOP, loop, ("integer", "func", "stack_or_null", "integer"), "integer"),
        (FOR_EACH_MAP_ELEM, for_each_map_elem, ("map", "func", "stack_or_null", "integer"), "integer"),
        (REDIRECT, redirect, ("integer", "integer"), "integer"),
        (REDIRECT_MAP, redirect_map, ("map", "integer", "integer"), "integer"),
        (PERF_EVENT_OUTPUT, perf_event_output, ("ctx", "map", "integer", "mem", "size_or_zero"), "integer"),
    ]
    table += skb_helpers.TABLE + sock_helpers.TABLE + xdp_helpers.TABLE
    registry = HelperRegistry([Helper(i, helper_name(i), fn, Prototype(ret, args)) for i, fn, args, ret in table])
    registry.add(trace_printk_helper(trace))
    registry.register(GET_SMP_PROCESSOR_ID, functools.partial(processor_id, ncpus), "get_smp_processor_id",
                      Prototype("integer"))
    return registry

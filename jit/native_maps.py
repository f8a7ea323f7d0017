"""LLVM IR of the native map helpers: ``bpf_map_lookup_elem``, ``update_elem`` and ``delete_elem``
on every map type, working on the maps' native memory exactly as the Python methods do.

The Python methods (runtime/maps/) stay the reference the interpreter uses; these functions make
the same decisions on the same words (runtime/maps/native.py gives the layout, hash_table.py the
bookkeeping) under the same map lock, so a map written by both engines and by Python stays one
map, and both engines leave the same contents (the same slots, the same LRU victims). Each helper
reads what it needs from the map header r1 points at, so one definition serves every map.
"""
from __future__ import annotations

import errno
from typing import Callable

from bpfjit.runtime import stdhelpers
from bpfjit.runtime.hash_index import MULTIPLIER, NULLS
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import HEADER_SIZE
from bpfjit.runtime.maps import native as layout
from bpfjit.runtime.maps.uapi import BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST

from . import native_lpm

# Header fields (runtime/maps/base.py HEADER) and its native half (+ HEADER_SIZE).
TYPE, KEY_SIZE, VALUE_SIZE, MAX_ENTRIES, ELEM_STRIDE, VALUE_BASE, NSLOTS, CPU_STRIDE, KEY_BASE = (
    layout.HEADER_TYPE, layout.HEADER_KEY_SIZE, layout.HEADER_VALUE_SIZE, layout.HEADER_MAX_ENTRIES,
    layout.HEADER_ELEM_STRIDE, layout.HEADER_VALUE_BASE, layout.HEADER_NSLOTS, layout.HEADER_CPU_STRIDE,
    layout.HEADER_KEY_BASE)
MUTEX = HEADER_SIZE + layout.EXT_MUTEX
LOCK_OFFSET = HEADER_SIZE + layout.EXT_LOCK_OFFSET
NFREE = HEADER_SIZE + layout.EXT_NFREE
OLDEST = HEADER_SIZE + layout.EXT_OLDEST
NEWEST = HEADER_SIZE + layout.EXT_NEWEST
NBUCKETS = HEADER_SIZE + layout.EXT_NBUCKETS
KEY_STRIDE = HEADER_SIZE + layout.EXT_KEY_STRIDE
HEADS = HEADER_SIZE + layout.EXT_HEADS
LINKS = HEADER_SIZE + layout.EXT_LINKS
FREE = HEADER_SIZE + layout.EXT_FREE
ORDER = HEADER_SIZE + layout.EXT_ORDER

#: Symbols the module leaves to the linker: libc functions and the cpu-numbering words.
EXTERNAL_FUNCTIONS = ("pthread_mutex_lock", "pthread_mutex_unlock", "memcmp", "pthread_getspecific",
                      "pthread_setspecific")
CPU_KEY, CPU_COUNTER = "bpfjit_cpu_key", "bpfjit_cpu_counter"
#: The Python helpers that the native map helpers (these and jit/native_queue.py's) hand the map
#: types they do not know, by helper id; each is the symbol PYTHON_PREFIX + its name, bound to
#: the helper through the engine's callback wrapper (jit/native_helpers.py).
PYTHON_PREFIX = "bpfjit_python_"
PYTHON_FALLBACKS = {helper_id: impl for helper_id, impl in (
    (stdhelpers.MAP_LOOKUP_ELEM, stdhelpers.map_lookup_elem), (stdhelpers.MAP_UPDATE_ELEM, stdhelpers.map_update_elem),
    (stdhelpers.MAP_DELETE_ELEM, stdhelpers.map_delete_elem), (stdhelpers.MAP_PUSH_ELEM, stdhelpers.map_push_elem),
    (stdhelpers.MAP_POP_ELEM, stdhelpers.map_pop_elem), (stdhelpers.MAP_PEEK_ELEM, stdhelpers.map_peek_elem))}


_DECLARATIONS = f"""
declare i32 @pthread_mutex_lock(ptr)
declare i32 @pthread_mutex_unlock(ptr)
declare i32 @memcmp(ptr, ptr, i64)
declare ptr @pthread_getspecific(i32)
declare i32 @pthread_setspecific(i32, ptr)
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)
@{CPU_KEY} = external global i32
@{CPU_COUNTER} = external global i64
""" + "".join(f"declare i64 @{PYTHON_PREFIX}{impl.__name__}(i64, i64, i64, i64, i64)\n"
              for impl in PYTHON_FALLBACKS.values())

# Small functions over one header %h; LLVM inlines them into the helpers.
_COMMON = f"""
define internal i32 @u32_at(ptr %h, i64 %off) alwaysinline {{
  %p = getelementptr i8, ptr %h, i64 %off
  %v = load i32, ptr %p
  ret i32 %v
}}

define internal i64 @u64_at(ptr %h, i64 %off) alwaysinline {{
  %p = getelementptr i8, ptr %h, i64 %off
  %v = load i64, ptr %p
  ret i64 %v
}}

define internal void @set_u32(ptr %h, i64 %off, i32 %v) alwaysinline {{
  %p = getelementptr i8, ptr %h, i64 %off
  store i32 %v, ptr %p
  ret void
}}

; Element %index of the array whose address is the u64 at %h + %base and whose stride the u32 at
; %h + %stride.
define internal ptr @strided(ptr %h, i64 %base, i64 %stride, i32 %index) alwaysinline {{
  %b = call i64 @u64_at(ptr %h, i64 %base)
  %st32 = call i32 @u32_at(ptr %h, i64 %stride)
  %st = zext i32 %st32 to i64
  %i = zext i32 %index to i64
  %o = mul i64 %i, %st
  %a = add i64 %b, %o
  %p = inttoptr i64 %a to ptr
  ret ptr %p
}}

define internal i1 @flag_set(i64 %flags, i64 %bit) alwaysinline {{
  %f = and i64 %flags, %bit
  %set = icmp ne i64 %f, 0
  ret i1 %set
}}

; &table[index] of the u32 table whose address is the u64 at %h + %off
define internal ptr @table(ptr %h, i64 %off, i64 %index) alwaysinline {{
  %base = call i64 @u64_at(ptr %h, i64 %off)
  %at = mul i64 %index, 4
  %a = add i64 %base, %at
  %p = inttoptr i64 %a to ptr
  ret ptr %p
}}

; The run's cpu number (runtime/maps/native.py cpu_number): per thread, numbered on first use.
define internal i64 @cpu_number() {{
entry:
  %key = load i32, ptr @{CPU_KEY}
  %p = call ptr @pthread_getspecific(i32 %key)
  %v = ptrtoint ptr %p to i64
  %known = icmp ne i64 %v, 0
  br i1 %known, label %done, label %assign
assign:
  %n = atomicrmw add ptr @{CPU_COUNTER}, i64 1 seq_cst
  %n1 = add i64 %n, 1
  %np = inttoptr i64 %n1 to ptr
  call i32 @pthread_setspecific(i32 %key, ptr %np)
  br label %done
done:
  %plus1 = phi i64 [ %v, %entry ], [ %n1, %assign ]
  %cpu = sub i64 %plus1, 1
  ret i64 %cpu
}}

; The cpu slot of a per-cpu map: cpu_number() modulo the map's ncpus.
define internal i64 @map_cpu(ptr %h) {{
  %n = call i32 @u32_at(ptr %h, i64 {NSLOTS})
  %n64 = zext i32 %n to i64
  %c = call i64 @cpu_number()
  %r = urem i64 %c, %n64
  ret i64 %r
}}

; Copy a value in, leaving the bpf_spin_lock word alone (Map._write_value): a new element gets
; a zero lock word, an existing one keeps its own.
define internal void @write_value(ptr %h, ptr %dst, ptr %src, i1 %new) {{
entry:
  %vs32 = call i32 @u32_at(ptr %h, i64 {VALUE_SIZE})
  %vs = zext i32 %vs32 to i64
  %lo1 = call i32 @u32_at(ptr %h, i64 {LOCK_OFFSET})
  %plain = icmp eq i32 %lo1, 0
  br i1 %plain, label %whole, label %locked
whole:
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %vs, i1 false)
  ret void
locked:
  %lo32 = sub i32 %lo1, 1
  %lo = zext i32 %lo32 to i64
  %word = getelementptr i8, ptr %dst, i64 %lo
  br i1 %new, label %fresh, label %around
fresh:
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %vs, i1 false)
  store i32 0, ptr %word
  ret void
around:
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %lo, i1 false)
  %after = add i64 %lo, 4
  %dst2 = getelementptr i8, ptr %dst, i64 %after
  %src2 = getelementptr i8, ptr %src, i64 %after
  %rest = sub i64 %vs, %after
  call void @llvm.memcpy.p0.p0.i64(ptr %dst2, ptr %src2, i64 %rest, i1 false)
  ret void
}}
"""

# The hash of runtime/hash_index.py key_hash: chunks of 8 bytes while they fit, then of 4, 2, 1.
_HASH = f"""
define internal i64 @key_hash(ptr %key, i64 %size) {{
entry:
  br label %loop
loop:
  %h = phi i64 [ 0, %entry ], [ %hn, %mix ]
  %off = phi i64 [ 0, %entry ], [ %offn, %mix ]
  %rem = sub i64 %size, %off
  %p = getelementptr i8, ptr %key, i64 %off
  %done = icmp eq i64 %rem, 0
  br i1 %done, label %fold, label %c8
c8:
  %ge8 = icmp uge i64 %rem, 8
  br i1 %ge8, label %l8, label %c4
l8:
  %w8 = load i64, ptr %p, align 1
  br label %mix
c4:
  %ge4 = icmp uge i64 %rem, 4
  br i1 %ge4, label %l4, label %c2
l4:
  %w4 = load i32, ptr %p, align 1
  %z4 = zext i32 %w4 to i64
  br label %mix
c2:
  %ge2 = icmp uge i64 %rem, 2
  br i1 %ge2, label %l2, label %l1
l2:
  %w2 = load i16, ptr %p, align 1
  %z2 = zext i16 %w2 to i64
  br label %mix
l1:
  %w1 = load i8, ptr %p, align 1
  %z1 = zext i8 %w1 to i64
  br label %mix
mix:
  %w = phi i64 [ %w8, %l8 ], [ %z4, %l4 ], [ %z2, %l2 ], [ %z1, %l1 ]
  %step = phi i64 [ 8, %l8 ], [ 4, %l4 ], [ 2, %l2 ], [ 1, %l1 ]
  %x = xor i64 %h, %w
  %hn = mul i64 %x, {MULTIPLIER - (1 << 64)}
  %offn = add i64 %off, %step
  br label %loop
fold:
  %hi = lshr i64 %h, 32
  %r = xor i64 %h, %hi
  ret i64 %r
}}

define internal i32 @bucket(ptr %h, ptr %key) {{
  %ks32 = call i32 @u32_at(ptr %h, i64 {KEY_SIZE})
  %ks = zext i32 %ks32 to i64
  %hash = call i64 @key_hash(ptr %key, i64 %ks)
  %nb = call i32 @u32_at(ptr %h, i64 {NBUCKETS})
  %mask = sub i32 %nb, 1
  %t = trunc i64 %hash to i32
  %b = and i32 %t, %mask
  ret i32 %b
}}

define internal ptr @key_at(ptr %h, i32 %slot) alwaysinline {{
  %p = call ptr @strided(ptr %h, i64 {KEY_BASE}, i64 {KEY_STRIDE}, i32 %slot)
  ret ptr %p
}}

; The address of array value %index on cpu slot %cpu (ArrayMap.lookup): cpu_stride apart.
define internal i64 @array_value(ptr %h, i64 %index, i64 %cpu) alwaysinline {{
  %vb = call i64 @u64_at(ptr %h, i64 {VALUE_BASE})
  %st32 = call i32 @u32_at(ptr %h, i64 {ELEM_STRIDE})
  %st = zext i32 %st32 to i64
  %o = mul i64 %index, %st
  %a = add i64 %vb, %o
  %cs = call i64 @u64_at(ptr %h, i64 {CPU_STRIDE})
  %co = mul i64 %cpu, %cs
  %ac = add i64 %a, %co
  ret i64 %ac
}}

; The address of a hash element's value on one cpu slot (HashMap._value_addr).
define internal i64 @hash_value(ptr %h, i32 %slot, i64 %cpu) alwaysinline {{
  %vb = call i64 @u64_at(ptr %h, i64 {VALUE_BASE})
  %n32 = call i32 @u32_at(ptr %h, i64 {NSLOTS})
  %n = zext i32 %n32 to i64
  %st32 = call i32 @u32_at(ptr %h, i64 {ELEM_STRIDE})
  %st = zext i32 %st32 to i64
  %s = zext i32 %slot to i64
  %row = mul i64 %s, %n
  %i = add i64 %row, %cpu
  %o = mul i64 %i, %st
  %a = add i64 %vb, %o
  ret i64 %a
}}

; HashTable.find: slot + 1 of the element holding the key, 0 if none (the caller holds the lock).
define internal i32 @find(ptr %h, ptr %key, i32 %bucket) {{
entry:
  %ks32 = call i32 @u32_at(ptr %h, i64 {KEY_SIZE})
  %ks = zext i32 %ks32 to i64
  %b = zext i32 %bucket to i64
  %head = call ptr @table(ptr %h, i64 {HEADS}, i64 %b)
  %first = load i32, ptr %head
  br label %loop
loop:
  %at = phi i32 [ %first, %entry ], [ %next, %differs ]
  %end = icmp uge i32 %at, {NULLS}
  br i1 %end, label %missing, label %compare
compare:
  %slot = sub i32 %at, 1
  %stored = call ptr @key_at(ptr %h, i32 %slot)
  %c = call i32 @memcmp(ptr %key, ptr %stored, i64 %ks)
  %same = icmp eq i32 %c, 0
  br i1 %same, label %found, label %differs
differs:
  %s = zext i32 %slot to i64
  %link = call ptr @table(ptr %h, i64 {LINKS}, i64 %s)
  %next = load i32, ptr %link
  br label %loop
found:
  ret i32 %at
missing:
  ret i32 0
}}

; HashTable.link's chain half: publish the element at the head of its bucket (release stores:
; a lockless lookup that sees the head sees the key, the value and the link).
define internal void @chain_link(ptr %h, i32 %slot, i32 %bucket) {{
  %b = zext i32 %bucket to i64
  %head = call ptr @table(ptr %h, i64 {HEADS}, i64 %b)
  %s = zext i32 %slot to i64
  %link = call ptr @table(ptr %h, i64 {LINKS}, i64 %s)
  %old = load i32, ptr %head
  store atomic i32 %old, ptr %link release, align 4
  %at = add i32 %slot, 1
  store atomic i32 %at, ptr %head release, align 4
  ret void
}}

; HashTable.unlink's chain half: the slot's own link stays, for lookups standing on it.
define internal void @chain_unlink(ptr %h, i32 %slot, i32 %bucket) {{
entry:
  %b = zext i32 %bucket to i64
  %head = call ptr @table(ptr %h, i64 {HEADS}, i64 %b)
  %s = zext i32 %slot to i64
  %own = call ptr @table(ptr %h, i64 {LINKS}, i64 %s)
  %after = load i32, ptr %own
  %me = add i32 %slot, 1
  %first = load i32, ptr %head
  %is_first = icmp eq i32 %first, %me
  br i1 %is_first, label %at_head, label %loop
at_head:
  store atomic i32 %after, ptr %head release, align 4
  ret void
loop:
  %at = phi i32 [ %first, %entry ], [ %next, %step ]
  %end = icmp uge i32 %at, {NULLS}
  br i1 %end, label %done, label %look
look:
  %prev = sub i32 %at, 1
  %p = zext i32 %prev to i64
  %link = call ptr @table(ptr %h, i64 {LINKS}, i64 %p)
  %next = load i32, ptr %link
  %hit = icmp eq i32 %next, %me
  br i1 %hit, label %splice, label %step
step:
  br label %loop
splice:
  store atomic i32 %after, ptr %link release, align 4
  br label %done
done:
  ret void
}}

; The order list (HashTable._append / _detach / touch): order[2s] previous, order[2s+1] next.
define internal void @order_append(ptr %h, i32 %slot) {{
entry:
  %newest = call i32 @u32_at(ptr %h, i64 {NEWEST})
  %s = zext i32 %slot to i64
  %i = mul i64 %s, 2
  %prevp = call ptr @table(ptr %h, i64 {ORDER}, i64 %i)
  store i32 %newest, ptr %prevp
  %i1 = add i64 %i, 1
  %nextp = call ptr @table(ptr %h, i64 {ORDER}, i64 %i1)
  store i32 0, ptr %nextp
  %me = add i32 %slot, 1
  %empty = icmp eq i32 %newest, 0
  br i1 %empty, label %first, label %after
first:
  call void @set_u32(ptr %h, i64 {OLDEST}, i32 %me)
  br label %done
after:
  %n = zext i32 %newest to i64
  %j = mul i64 %n, 2
  %j1 = sub i64 %j, 1
  %p = call ptr @table(ptr %h, i64 {ORDER}, i64 %j1)
  store i32 %me, ptr %p
  br label %done
done:
  call void @set_u32(ptr %h, i64 {NEWEST}, i32 %me)
  ret void
}}

define internal void @order_detach(ptr %h, i32 %slot) {{
entry:
  %s = zext i32 %slot to i64
  %i = mul i64 %s, 2
  %prevp = call ptr @table(ptr %h, i64 {ORDER}, i64 %i)
  %prev = load i32, ptr %prevp
  %i1 = add i64 %i, 1
  %nextp = call ptr @table(ptr %h, i64 {ORDER}, i64 %i1)
  %next = load i32, ptr %nextp
  %has_prev = icmp ne i32 %prev, 0
  br i1 %has_prev, label %mid, label %oldest
mid:
  %pv = zext i32 %prev to i64
  %pj = mul i64 %pv, 2
  %pj1 = sub i64 %pj, 1
  %pn = call ptr @table(ptr %h, i64 {ORDER}, i64 %pj1)
  store i32 %next, ptr %pn
  br label %tail
oldest:
  call void @set_u32(ptr %h, i64 {OLDEST}, i32 %next)
  br label %tail
tail:
  %has_next = icmp ne i32 %next, 0
  br i1 %has_next, label %mid2, label %newest
mid2:
  %nv = zext i32 %next to i64
  %nj = mul i64 %nv, 2
  %nj2 = sub i64 %nj, 2
  %np = call ptr @table(ptr %h, i64 {ORDER}, i64 %nj2)
  store i32 %prev, ptr %np
  ret void
newest:
  call void @set_u32(ptr %h, i64 {NEWEST}, i32 %prev)
  ret void
}}

define internal void @touch(ptr %h, i32 %slot) {{
entry:
  %newest = call i32 @u32_at(ptr %h, i64 {NEWEST})
  %me = add i32 %slot, 1
  %already = icmp eq i32 %newest, %me
  br i1 %already, label %done, label %move
move:
  call void @order_detach(ptr %h, i32 %slot)
  call void @order_append(ptr %h, i32 %slot)
  br label %done
done:
  ret void
}}
"""


def error_exits(*names: str) -> str:
    """IR labels that return an error: one per errno name, the name in lower case (``%einval``)."""
    return "".join(f"{name.lower()}:\n  ret i64 {-getattr(errno, name)}\n" for name in names)


def python_fallback(name: str, args: tuple[str, ...] = ("%r1", "%r2", "%r3", "%r4", "%r5")) -> str:
    """IR that hands the call (its five arguments, named `args` in the function) to the Python
    helper `name` and returns its result: for the map types the native code does not know (device
    maps, bloom filters, maps of kernel objects, LPM tries' updates and deletes...), so that a
    native helper serves every map type, the rare ones at Python's speed."""
    return (f"  %python = call i64 @{PYTHON_PREFIX}{name}({', '.join(f'i64 {arg}' for arg in args)})\n"
            "  ret i64 %python")


def _type_in(value: str, types: tuple[MapType, ...], name: str) -> str:
    """IR computing i1 %name = value is one of types."""
    lines, acc = [], "false"
    for i, t in enumerate(types):
        lines.append(f"  %{name}{i} = icmp eq i32 {value}, {int(t)}")
        lines.append(f"  %{name}o{i} = or i1 {acc}, %{name}{i}")
        acc = f"%{name}o{i}"
    lines.append(f"  %{name} = or i1 {acc}, false")
    return "\n".join(lines)


HASHES = (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
PERCPU = (MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH, MapType.PERCPU_ARRAY)
LRU = (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)


def _dispatch(name: str, default: str, cases: dict[str, tuple[MapType, ...]], r4: str = "%r4",
              prelude: str = "") -> str:
    """A helper's entry: %h (the header r1 points at), %key (r2), the prelude, and a switch on the
    map type to the label of each family (default: any other type)."""
    targets = "\n".join(f"    i32 {int(t)}, label %{label}" for label, types in cases.items() for t in types)
    return f"""
define i64 @{name}(i64 %r1, i64 %r2, i64 %r3, i64 {r4}, i64 %r5) {{
entry:
  %h = inttoptr i64 %r1 to ptr
  %key = inttoptr i64 %r2 to ptr
  %type = call i32 @u32_at(ptr %h, i64 {TYPE}){prelude}
  switch i32 %type, label %{default} [
{targets}
  ]"""

_MUTEX_CALLS = f"""
define internal void @lock(ptr %h) alwaysinline {{
  %m = getelementptr i8, ptr %h, i64 {MUTEX}
  call i32 @pthread_mutex_lock(ptr %m)
  ret void
}}

define internal void @unlock(ptr %h) alwaysinline {{
  %m = getelementptr i8, ptr %h, i64 {MUTEX}
  call i32 @pthread_mutex_unlock(ptr %m)
  ret void
}}
"""

# --- the helpers ------------------------------------------------------------------------------

_LOOKUP = _dispatch("bpfjit_native_map_lookup_elem", "other", {
    "array": (MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.ARRAY_OF_MAPS), "hash": HASHES + (MapType.HASH_OF_MAPS,),
    "lpm": (MapType.LPM_TRIE,),
}) + f"""
other:
{python_fallback("map_lookup_elem")}
none:
  ret i64 0
lpm:
  %match = call i64 @{native_lpm.LOOKUP}(ptr %h, ptr %key)
  ret i64 %match
array:
  %index32 = load i32, ptr %key, align 1
  %index = zext i32 %index32 to i64
  %max = call i32 @u32_at(ptr %h, i64 {MAX_ENTRIES})
  %max64 = zext i32 %max to i64
  %inside = icmp ult i64 %index, %max64
  br i1 %inside, label %array_in, label %none
array_in:
  %of_maps = icmp eq i32 %type, {int(MapType.ARRAY_OF_MAPS)}
  br i1 %of_maps, label %inner, label %array_cpu
inner:
  %a = call i64 @array_value(ptr %h, i64 %index, i64 0)
  %ap = inttoptr i64 %a to ptr
  %handle = load i64, ptr %ap
  ret i64 %handle
array_cpu:
  %percpu_array = icmp eq i32 %type, {int(MapType.PERCPU_ARRAY)}
  br i1 %percpu_array, label %array_percpu, label %array_one
array_percpu:
  %cpu = call i64 @map_cpu(ptr %h)
  %ac = call i64 @array_value(ptr %h, i64 %index, i64 %cpu)
  ret i64 %ac
array_one:
  %a0 = call i64 @array_value(ptr %h, i64 %index, i64 0)
  ret i64 %a0
hash:
  %bucket = call i32 @bucket(ptr %h, ptr %key)
  call void @lock(ptr %h)
  %at = call i32 @find(ptr %h, ptr %key, i32 %bucket)
  %missing = icmp eq i32 %at, 0
  br i1 %missing, label %miss, label %hit
miss:
  call void @unlock(ptr %h)
  ret i64 0
hit:
  %slot = sub i32 %at, 1
{_type_in("%type", LRU, "lru")}
  br i1 %lru, label %use, label %used
use:
  call void @touch(ptr %h, i32 %slot)
  br label %used
used:
  call void @unlock(ptr %h)
{_type_in("%type", PERCPU, "percpu")}
  br i1 %percpu, label %hash_percpu, label %hash_one
hash_percpu:
  %hcpu = call i64 @map_cpu(ptr %h)
  %hv = call i64 @hash_value(ptr %h, i32 %slot, i64 %hcpu)
  ret i64 %hv
hash_one:
  %v = call i64 @hash_value(ptr %h, i32 %slot, i64 0)
  %hom = icmp eq i32 %type, {int(MapType.HASH_OF_MAPS)}
  br i1 %hom, label %hash_inner, label %hash_done
hash_inner:
  %vp = inttoptr i64 %v to ptr
  %ih = load i64, ptr %vp
  ret i64 %ih
hash_done:
  ret i64 %v
}}
"""

_UPDATE = _dispatch("bpfjit_native_map_update_elem", "other", {
    "array": (MapType.ARRAY, MapType.PERCPU_ARRAY), "hash": HASHES, "einval": (MapType.QUEUE, MapType.STACK),
}, r4="%flags", prelude=f"""
  %value = inttoptr i64 %r3 to ptr
  %base = and i64 %flags, {~BPF_F_LOCK}
  %bad_flags = icmp ugt i64 %base, {BPF_EXIST}
  %want_lock = and i64 %flags, {BPF_F_LOCK}
  %wants = icmp ne i64 %want_lock, 0
  %lo1 = call i32 @u32_at(ptr %h, i64 {LOCK_OFFSET})
  %no_lock = icmp eq i32 %lo1, 0
  %bad_lock = and i1 %wants, %no_lock""") + f"""
other:
{python_fallback("map_update_elem", ("%r1", "%r2", "%r3", "%flags", "%r5"))}
{error_exits("EINVAL", "E2BIG", "EEXIST")}array:
  %index32 = load i32, ptr %key, align 1
  %index = zext i32 %index32 to i64
  %max = call i32 @u32_at(ptr %h, i64 {MAX_ENTRIES})
  %max64 = zext i32 %max to i64
  %outside = icmp uge i64 %index, %max64
  %noexist = icmp eq i64 %base, {BPF_NOEXIST}
  br i1 %bad_flags, label %einval, label %a1
a1:
  br i1 %outside, label %e2big, label %a2
a2:
  br i1 %noexist, label %eexist, label %a3
a3:
  br i1 %bad_lock, label %einval, label %a4
a4:
  %percpu_array = icmp eq i32 %type, {int(MapType.PERCPU_ARRAY)}
  %cpu = call i64 @map_cpu(ptr %h)
  %acpu = select i1 %percpu_array, i64 %cpu, i64 0
  %dst = call i64 @array_value(ptr %h, i64 %index, i64 %acpu)
  %dp = inttoptr i64 %dst to ptr
  call void @write_value(ptr %h, ptr %dp, ptr %value, i1 false)
  ret i64 0
hash:
  br i1 %bad_flags, label %einval, label %h1
h1:
  br i1 %bad_lock, label %einval, label %h2
h2:
{_type_in("%type", PERCPU, "percpu")}
{_type_in("%type", LRU, "lru")}
  %hcpu = call i64 @map_cpu(ptr %h)
  %cpu_slot = select i1 %percpu, i64 %hcpu, i64 0
  %bucket = call i32 @bucket(ptr %h, ptr %key)
  call void @lock(ptr %h)
  %at = call i32 @find(ptr %h, ptr %key, i32 %bucket)
  %exists = icmp ne i32 %at, 0
  br i1 %exists, label %existing, label %absent
existing:
  %noexist2 = icmp eq i64 %base, {BPF_NOEXIST}
  br i1 %noexist2, label %unlock_eexist, label %e1
e1:
  %slot = sub i32 %at, 1
  br i1 %lru, label %e_touch, label %e_write
e_touch:
  call void @touch(ptr %h, i32 %slot)
  br label %e_write
e_write:
  %ev = call i64 @hash_value(ptr %h, i32 %slot, i64 %cpu_slot)
  %evp = inttoptr i64 %ev to ptr
  call void @write_value(ptr %h, ptr %evp, ptr %value, i1 false)
  call void @unlock(ptr %h)
  ret i64 0
absent:
  %exist = icmp eq i64 %base, {BPF_EXIST}
  br i1 %exist, label %unlock_enoent, label %take
take:
  %nfree = call i32 @u32_at(ptr %h, i64 {NFREE})
  %has_free = icmp ne i32 %nfree, 0
  br i1 %has_free, label %from_free, label %full
from_free:
  %top = sub i32 %nfree, 1
  call void @set_u32(ptr %h, i64 {NFREE}, i32 %top)
  %t = zext i32 %top to i64
  %fp = call ptr @table(ptr %h, i64 {FREE}, i64 %t)
  %free_slot = load i32, ptr %fp
  br label %fill
full:
  %oldest = call i32 @u32_at(ptr %h, i64 {OLDEST})
  %can_evict = icmp ne i32 %oldest, 0
  %evicts = and i1 %lru, %can_evict
  br i1 %evicts, label %evict, label %unlock_e2big
evict:
  %victim = sub i32 %oldest, 1
  %vkey = call ptr @key_at(ptr %h, i32 %victim)
  %vbucket = call i32 @bucket(ptr %h, ptr %vkey)
  call void @order_detach(ptr %h, i32 %victim)
  call void @chain_unlink(ptr %h, i32 %victim, i32 %vbucket)
  br label %fill
fill:
  %new = phi i32 [ %free_slot, %from_free ], [ %victim, %evict ]
  %kp = call ptr @key_at(ptr %h, i32 %new)
  %ks32 = call i32 @u32_at(ptr %h, i64 {KEY_SIZE})
  %ks = zext i32 %ks32 to i64
  call void @llvm.memcpy.p0.p0.i64(ptr %kp, ptr %key, i64 %ks, i1 false)
  br i1 %percpu, label %fill_cpus, label %fill_one
fill_one:
  %nv = call i64 @hash_value(ptr %h, i32 %new, i64 0)
  %nvp = inttoptr i64 %nv to ptr
  call void @write_value(ptr %h, ptr %nvp, ptr %value, i1 true)
  br label %publish
fill_cpus:
  %ncpus32 = call i32 @u32_at(ptr %h, i64 {NSLOTS})
  %ncpus = zext i32 %ncpus32 to i64
  %vs32 = call i32 @u32_at(ptr %h, i64 {VALUE_SIZE})
  %vs = zext i32 %vs32 to i64
  br label %cpu_loop
cpu_loop:
  %c = phi i64 [ 0, %fill_cpus ], [ %c1, %cpu_next ]
  %cv = call i64 @hash_value(ptr %h, i32 %new, i64 %c)
  %cvp = inttoptr i64 %cv to ptr
  %mine = icmp eq i64 %c, %cpu_slot
  br i1 %mine, label %cpu_mine, label %cpu_zero
cpu_mine:
  call void @write_value(ptr %h, ptr %cvp, ptr %value, i1 true)
  br label %cpu_next
cpu_zero:
  call void @llvm.memset.p0.i64(ptr %cvp, i8 0, i64 %vs, i1 false)
  br label %cpu_next
cpu_next:
  %c1 = add i64 %c, 1
  %more = icmp ult i64 %c1, %ncpus
  br i1 %more, label %cpu_loop, label %publish
publish:
  call void @chain_link(ptr %h, i32 %new, i32 %bucket)
  call void @order_append(ptr %h, i32 %new)
  call void @unlock(ptr %h)
  ret i64 0
unlock_eexist:
  call void @unlock(ptr %h)
  ret i64 {-errno.EEXIST}
unlock_enoent:
  call void @unlock(ptr %h)
  ret i64 {-errno.ENOENT}
unlock_e2big:
  call void @unlock(ptr %h)
  ret i64 {-errno.E2BIG}
}}
"""

_DELETE = _dispatch("bpfjit_native_map_delete_elem", "other", {
    "einval": (MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.QUEUE, MapType.STACK), "hash": HASHES,
}) + f"""
other:
{python_fallback("map_delete_elem")}
einval:
  ret i64 {-errno.EINVAL}
hash:
  %bucket = call i32 @bucket(ptr %h, ptr %key)
  call void @lock(ptr %h)
  %at = call i32 @find(ptr %h, ptr %key, i32 %bucket)
  %missing = icmp eq i32 %at, 0
  br i1 %missing, label %enoent, label %drop
enoent:
  call void @unlock(ptr %h)
  ret i64 {-errno.ENOENT}
drop:
  %slot = sub i32 %at, 1
  call void @order_detach(ptr %h, i32 %slot)
  call void @chain_unlink(ptr %h, i32 %slot, i32 %bucket)
  %nfree = call i32 @u32_at(ptr %h, i64 {NFREE})
  %n = zext i32 %nfree to i64
  %fp = call ptr @table(ptr %h, i64 {FREE}, i64 %n)
  store i32 %slot, ptr %fp
  %n1 = add i32 %nfree, 1
  call void @set_u32(ptr %h, i64 {NFREE}, i32 %n1)
  call void @unlock(ptr %h)
  ret i64 0
}}
"""


def twins(*helpers: tuple[int, Callable[..., int]]) -> dict[int, tuple[Callable[..., int], str]]:
    """Helper id -> (the standard Python implementation a native helper replaces, the name of
    the native one: ``bpfjit_native_`` and the Python one's name)."""
    return {helper_id: (impl, f"bpfjit_native_{impl.__name__}") for helper_id, impl in helpers}


FUNCTIONS = twins((stdhelpers.MAP_LOOKUP_ELEM, stdhelpers.map_lookup_elem),
                  (stdhelpers.MAP_UPDATE_ELEM, stdhelpers.map_update_elem),
                  (stdhelpers.MAP_DELETE_ELEM, stdhelpers.map_delete_elem))

MODULE_IR = _DECLARATIONS + _COMMON + _HASH + _MUTEX_CALLS + native_lpm.MODULE_IR + _LOOKUP + _UPDATE + _DELETE

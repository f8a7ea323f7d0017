"""What Python code shares with the native helpers (jit/native_*.py) on a map's memory: the layout
of the header's native half, the map lock, and atomic operations on native words.

A map is written from Python (the dict-like API and the interpreter's helpers) and from native
code (the jitted program's helpers, which run without the GIL) at the same time, so both sides
keep every piece of bookkeeping in native memory and take the same lock:

* the **map lock** is a ``pthread_mutex_t`` in the header's native half: native code calls
  ``pthread_mutex_lock`` on it, Python calls the same function through ctypes, which releases
  the GIL while it waits (a Python thread holding the lock may wait for the GIL; a native thread
  waiting for the lock holds no GIL, so nobody deadlocks);
* **atomic words** (the ``bpf_spin_lock`` word, the cpu counter) are changed with ``lock
  cmpxchg`` / ``lock xadd``: native code emits them; Python calls two tiny machine-code functions
  (:data:`ATOMICS`), since ctypes has no atomic operation and ``runtime`` never loads LLVM.

The header's native half (``handle + HEADER_SIZE``, :data:`EXT`; programs never see it):

====  =====  ==================================================================================
 off  type   meaning
====  =====  ==================================================================================
   0  40s    the map lock (``pthread_mutex_t``, glibc x86-64)
  40  u32    offset of the value's ``struct bpf_spin_lock`` + 1 (0: none)
  44  u32    hash maps: free slots on the free stack
  48  u32    hash maps: oldest element of the order list (slot + 1, 0: empty)
  52  u32    hash maps: newest element of the order list
  56  u32    hash maps: number of buckets (a power of two)
  60  u32    hash maps: key stride
  64  u64    hash maps: bucket heads (u32 per bucket, runtime/hash_index.py)
  72  u64    hash maps: chain links (u32 per slot)
  80  u64    hash maps: the free stack (u32 per slot, the next slot to use on top)
  88  u64    hash maps: the order list (u32 previous, u32 next per slot)
====  =====  ==================================================================================

Queue and stack maps use 44 and 48 for their ring of ``max_entries + 1`` value slots (at the
header's ``value_base``): ``head`` (the next slot to write) and ``tail`` (the oldest element);
empty when they are equal, full when ``head + 1`` wraps onto ``tail``, as the kernel's
queue_stack_maps.c. Ring buffers use 44 for the wakeup word (a futex: bumped by every submit that
wakes consumers), 64 for the pending position (the oldest record that may still be reserved,
kernel/bpf/ringbuf.c ``pending_pos``) and 72 for the number of consumers waiting on the wakeup
word; their consumer and producer positions are in the header (runtime/maps/base.py).

LPM tries (runtime/maps/lpm_trie.py) keep their binary trie in a pool of nodes: 44 is the
**sequence word** (odd while a writer reshapes the trie: lockless lookups check it, as readers of
a seqlock do), 64 the pool's address, 72 the link to the root. A **link** is a u64: the node's
prefix length in the high half and its byte offset in the pool in the low half (0: no node; the
pool's first node is never used), so a walk learns where the next node is and how long its prefix
is from one load. A node (:data:`LPM_NODE_CHILDREN` ...) holds the links to its two children, its
prefix length, its value slot + 1 (0: an intermediate node, which holds no prefix of its own) and
the key's data as last written, zero-padded to whole 8-byte words.

The native helpers also read the header's own fields (:data:`HEADER_TYPE` ...; base.py's
``HEADER`` lays them out).
"""
from __future__ import annotations

import ctypes
import mmap
import struct

EXT_SIZE = 96
EXT_MUTEX, EXT_LOCK_OFFSET, EXT_NFREE, EXT_OLDEST, EXT_NEWEST = 0, 40, 44, 48, 52
EXT_NBUCKETS, EXT_KEY_STRIDE, EXT_HEADS, EXT_LINKS, EXT_FREE, EXT_ORDER = 56, 60, 64, 72, 80, 88
MUTEX_SIZE = 40
EXT = struct.Struct("<40sIIIIIIQQQQ")
assert EXT.size == EXT_SIZE
EXT_QUEUE_HEAD, EXT_QUEUE_TAIL = 44, 48
EXT_RB_WAKEUPS, EXT_RB_PENDING, EXT_RB_WAITERS = 44, 64, 72
EXT_LPM_SEQ, EXT_LPM_NODES, EXT_LPM_ROOT = 44, 64, 72
LPM_NODE_CHILDREN, LPM_NODE_PREFIXLEN, LPM_NODE_VALUE, LPM_NODE_DATA = 0, 16, 20, 24
HEADER_TYPE, HEADER_KEY_SIZE, HEADER_VALUE_SIZE, HEADER_MAX_ENTRIES, HEADER_ELEM_STRIDE, HEADER_VALUE_BASE, \
    HEADER_NSLOTS, HEADER_CPU_STRIDE, HEADER_KEY_BASE = 0, 4, 8, 12, 20, 24, 32, 40, 48
SYS_FUTEX, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 202, 128, 129  # x86-64: how a ring buffer's consumers wait

_libc = ctypes.CDLL(None, use_errno=True)
for _name in ("pthread_mutex_init", "pthread_mutex_lock", "pthread_mutex_unlock", "pthread_mutex_destroy"):
    getattr(_libc, _name).argtypes = [ctypes.c_void_p] if _name != "pthread_mutex_init" else [ctypes.c_void_p] * 2
    getattr(_libc, _name).restype = ctypes.c_int


class NativeField:
    """A field of a map header's native half (``map.native + offset``) as a Python attribute: the
    native helpers read and write the same word."""

    def __init__(self, offset: int, kind: type[ctypes._SimpleCData]):
        self.offset, self.kind = offset, kind

    def __get__(self, owner_map: object, owner: type) -> int:
        return self.kind.from_address(owner_map.native + self.offset).value

    def __set__(self, owner_map: object, value: int) -> None:
        self.kind.from_address(owner_map.native + self.offset).value = value


def libc_address(name: str) -> int:
    """The address of a libc function (native helpers call the ones the Python side calls)."""
    return ctypes.cast(getattr(_libc, name), ctypes.c_void_p).value


class MapLock:
    """The map lock at ``address`` (a pthread mutex in native memory), as a context manager."""

    def __init__(self, address: int):
        assert ctypes.sizeof(ctypes.c_long) == 8  # glibc x86-64: a 40-byte pthread_mutex_t
        self.address = address
        _libc.pthread_mutex_init(address, None)

    def __enter__(self) -> "MapLock":
        _libc.pthread_mutex_lock(self.address)
        return self

    def __exit__(self, *exc: object) -> None:
        _libc.pthread_mutex_unlock(self.address)


# Hand-assembled x86-64 (System V ABI), one function per 16 bytes:
#   cmpxchg32(ptr, expected, desired) -> old:   mov eax, esi; lock cmpxchg [rdi], edx; ret
#   fetch_add64(ptr, delta) -> old:             mov rax, rsi; lock xadd [rdi], rax; ret
_CODE = (bytes.fromhex("89f0f00fb117c3").ljust(16, b"\xcc")
         + bytes.fromhex("4889f0f0480fc107c3").ljust(16, b"\xcc"))


class _Atomics:
    def __init__(self) -> None:
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(_CODE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        self.cmpxchg32 = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32,
                                          ctypes.c_uint32)(base)
        self.fetch_add64 = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64)(base + 16)


ATOMICS = _Atomics()



class _CpuNumbering:
    """Which "cpu" a thread runs on: threads are numbered 0, 1, 2... in the order they first run a
    helper that asks, by either side. The number lives in a pthread key (thread-local, reachable
    from native code through ``pthread_getspecific``) as number + 1; the next number comes from
    an atomic counter in native memory."""

    def __init__(self) -> None:
        self._words = (ctypes.c_uint64 * 2)()
        self.counter_address = ctypes.addressof(self._words)
        self.key_address = self.counter_address + 8
        _libc.pthread_key_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        if _libc.pthread_key_create(self.key_address, None):
            raise OSError("pthread_key_create failed")
        self._key = ctypes.c_uint32.from_address(self.key_address).value
        _libc.pthread_getspecific.argtypes = [ctypes.c_uint32]
        _libc.pthread_getspecific.restype = ctypes.c_void_p
        _libc.pthread_setspecific.argtypes = [ctypes.c_uint32, ctypes.c_void_p]

    def current(self) -> int:
        number = _libc.pthread_getspecific(self._key)
        if number:
            return number - 1
        number = ATOMICS.fetch_add64(self.counter_address, 1)
        _libc.pthread_setspecific(self._key, number + 1)
        return number


CPU_NUMBERING = _CpuNumbering()


def processor_id(ncpus: int, *_: int) -> int:
    """bpf_get_smp_processor_id for a program whose per-CPU maps have ``ncpus`` slots: the slot
    its per-CPU map helpers use on this thread (the native helper computes the same)."""
    return CPU_NUMBERING.current() % ncpus

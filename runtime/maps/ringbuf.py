"""BPF_MAP_TYPE_RINGBUF: records in shared memory mapped twice, produced by programs, consumed from Python.

Everything producers and consumers share is native memory, so the native helpers
(jit/native_ringbuf.py) and these methods produce into one ring: the consumer and producer
positions are in the map header, the pending position, the wakeup word and the count of waiting
consumers in its native half (runtime/maps/native.py), and a control page just before the data
holds the map's handle, so a record's address leads to its map (through the header's ``pg_off``)
as in the kernel. Producers reserve under the map lock; a commit is one atomic change of the
record's header.

**Wakeups.** There is no epoll: a consumer waits in :meth:`RingBuf.poll` on the wakeup word, a
futex. A commit wakes it as the kernel's ``bpf_ringbuf_commit`` schedules its wakeup: always with
BPF_RB_FORCE_WAKEUP, never with BPF_RB_NO_WAKEUP, and otherwise only when the record sits at the
consumer position (the consumer has caught up and may be waiting for exactly this record). Each
wakeup bumps the word, which :attr:`RingBuf.wakeups` reads, and calls ``futex_wake`` only when a
consumer waits. A record committed without a wakeup is still consumed by the next poll, or by a
waiting poll when its timeout ends.
"""
from __future__ import annotations

import ctypes
import errno as E
import mmap
import os
import threading
import time
import weakref
from typing import Any, Callable

from ..memory import Region
from .base import HEADER_SIZE, OFF_CONS_POS, OFF_PROD_POS, Map
from .native import (ATOMICS, EXT_RB_PENDING, EXT_RB_WAITERS, EXT_RB_WAKEUPS, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE,
                     SYS_FUTEX, NativeField)
from .uapi import (BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS,
                   BPF_RB_RING_SIZE, BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ,
                   MAX_MAP_BYTES, PAGE_SIZE, RINGBUF_CREATE_FLAG_MASK, RINGBUF_MAX_RECORD_SZ, round_up)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.syscall.restype = ctypes.c_long
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_FIXED = 0x10
_ringbufs: "weakref.WeakSet[RingBuf]" = weakref.WeakSet()


def ringbuf_from_record(address: int) -> "RingBuf | None":
    """The ring buffer holding the record whose data starts at ``address`` (what
    ``bpf_ringbuf_reserve`` returned) while it is reserved and not yet submitted or discarded,
    for ``bpf_ringbuf_submit``/``discard``, which get no map; None for any other address."""
    for rb in list(_ringbufs):
        if rb._reserved_record(address):
            return rb
    return None


def _map_ring(size: int) -> int:
    """A control page followed by ``size`` bytes of shared memory mapped twice back to back (as
    the kernel maps a ring buffer's data pages), so a record that wraps past the end is still
    contiguous; returns the control page's address."""
    total = PAGE_SIZE + 2 * size
    base = _libc.mmap(None, total, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if base in (None, _MAP_FAILED):
        raise MemoryError(os.strerror(ctypes.get_errno()))
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    fd = os.memfd_create("bpfjit-ringbuf", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        mapped = [_libc.mmap(base, PAGE_SIZE, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED, -1, 0)]
        for half in (base + PAGE_SIZE, base + PAGE_SIZE + size):
            mapped.append(_libc.mmap(half, size, prot, mmap.MAP_SHARED | _MAP_FIXED, fd, 0))
        if mapped != [base, base + PAGE_SIZE, base + PAGE_SIZE + size]:
            _libc.munmap(base, total)
            raise MemoryError(os.strerror(ctypes.get_errno()))
        return base
    finally:
        os.close(fd)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _futex_wait(address: int, expected: int, seconds: float) -> None:
    """Sleep (the GIL released) until the u32 at address is woken, unless it is no longer
    `expected`, for at most `seconds`."""
    timeout = _Timespec(int(seconds), int(seconds % 1 * 1e9))
    _libc.syscall(ctypes.c_long(SYS_FUTEX), ctypes.c_void_p(address), ctypes.c_int(FUTEX_WAIT_PRIVATE),
                  ctypes.c_uint32(expected), ctypes.byref(timeout), None, ctypes.c_int(0))


class RingBuf(Map):
    """BPF_MAP_TYPE_RINGBUF: ``max_entries`` bytes of data (a power-of-2 multiple of the page
    size) mapped twice back to back. Records are an 8-byte header ``{u32 len; u32 pg_off}``
    (len carries BUSY 1<<31 while reserved, DISCARD 1<<30 once discarded) followed by the data,
    8-byte aligned, exactly as the kernel lays them out. ``pg_off`` is the page index of the
    header inside the data area; the control page before the data holds the map's handle.

    Producer (helpers): ``reserve(size, flags=0) -> address | 0``, ``submit(address, flags=0)``,
    ``discard(address, flags=0)``, ``output(data, flags=0) -> 0 | -errno``, ``query(flag)``.
    Consumer (Python): ``poll(callback, max_records=None, timeout=0.0) -> count``."""

    type_name = "ringbuf"
    # The positions are in the header proper, just before its native half.
    _cons = NativeField(OFF_CONS_POS - HEADER_SIZE, ctypes.c_uint64)
    _prod = NativeField(OFF_PROD_POS - HEADER_SIZE, ctypes.c_uint64)
    _pending = NativeField(EXT_RB_PENDING, ctypes.c_uint64)
    wakeups = NativeField(EXT_RB_WAKEUPS, ctypes.c_uint32)
    """Wakeups signalled so far (modulo 2**32): what BPF_RB_NO_WAKEUP / BPF_RB_FORCE_WAKEUP change."""

    def _validate(self) -> None:
        if self.key_size or self.value_size:
            raise self._err("ring buffers have no keys or values (key_size and value_size must "
                            "be 0)", E.EINVAL)
        size = self.max_entries
        if size == 0 or size & (size - 1) or size % PAGE_SIZE:
            raise self._err(f"max_entries {size} must be a power of 2 and a multiple of the page "
                            f"size ({PAGE_SIZE})", E.EINVAL)
        self._check_flags(RINGBUF_CREATE_FLAG_MASK)

    def _allocate(self) -> None:
        size = self.max_entries
        if 2 * size > MAX_MAP_BYTES:
            raise self._err(f"a {size}-byte ring buffer is too large", E.ENOMEM)
        control = _map_ring(size)
        weakref.finalize(self, _libc.munmap, control, PAGE_SIZE + 2 * size)
        ctypes.c_uint64.from_address(control).value = self.handle
        self.size = size
        self.mask = size - 1
        self.data_base = self.value_base = control + PAGE_SIZE
        self._consumer_lock = threading.Lock()
        _ringbufs.add(self)

    def _storage_regions(self) -> list[Region]:
        return [Region(self.data_base, 2 * self.size, True, f"map {self.name} data")]

    def _hdr_len(self, pos: int) -> int:
        return ctypes.c_uint32.from_address(self.data_base + (pos & self.mask)).value

    def _committed_length(self, pos: int, hlen: int) -> int:
        """The data length of the committed record at pos whose header says hlen. A length no
        record can have (a program wrote over the header: the data area is its memory) is a
        MapError, not a read past the ring."""
        length = hlen & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
        if length + BPF_RINGBUF_HDR_SZ > self.mask:
            raise self._err(f"the record at position {pos} has a corrupt header (length {length}): "
                            "a program wrote over it", E.EINVAL)
        return length

    def _reserved_record(self, address: int) -> bool:
        """Whether address is the data of a record reserved here and not yet committed (one of
        the records from the pending position on, its header still busy). The caller may hold
        the map lock (reserve then cannot move the records while they are walked)."""
        if not self.data_base + BPF_RINGBUF_HDR_SZ <= address < self.data_base + self.size + BPF_RINGBUF_HDR_SZ:
            return False
        pos, prod = self._pending, self._prod
        while pos < prod:
            hlen = self._hdr_len(pos)
            if self.data_base + (pos & self.mask) + BPF_RINGBUF_HDR_SZ == address:
                return bool(hlen & BPF_RINGBUF_BUSY_BIT)
            pos += round_up((hlen & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) + BPF_RINGBUF_HDR_SZ, 8)
        return False

    # producer (kernel side)

    def reserve(self, size: int, flags: int = 0) -> int:
        """bpf_ringbuf_reserve: address of ``size`` writable bytes, or 0 when there is no room
        (or flags is not 0)."""
        if flags or size < 0 or size > RINGBUF_MAX_RECORD_SZ:
            return 0
        length = round_up(size + BPF_RINGBUF_HDR_SZ, 8)
        if length > self.size:
            return 0
        with self._lock:
            cons = self._cons
            pend = self._pending
            prod = self._prod
            while pend < prod:
                hlen = self._hdr_len(pend)
                if hlen & BPF_RINGBUF_BUSY_BIT:
                    break
                pend += round_up((hlen & ~BPF_RINGBUF_DISCARD_BIT) + BPF_RINGBUF_HDR_SZ, 8)
            self._pending = pend
            new_prod = prod + length
            # The kernel keeps at most size - 1 bytes in flight, counted from the consumer and
            # from the oldest record not yet committed.
            if new_prod - cons > self.mask or new_prod - pend > self.mask:
                return 0
            hdr = self.data_base + (prod & self.mask)
            ctypes.c_uint32.from_address(hdr).value = size | BPF_RINGBUF_BUSY_BIT
            ctypes.c_uint32.from_address(hdr + 4).value = (prod & self.mask) // PAGE_SIZE
            self._prod = new_prod  # after the header: x86 keeps the stores in order
        return hdr + BPF_RINGBUF_HDR_SZ

    def _commit(self, address: int, flags: int, discard: bool) -> int:
        with self._lock:
            if not self._reserved_record(address):
                return -E.EINVAL  # not a record's start, or committed already: leave it alone
            hdr = address - BPF_RINGBUF_HDR_SZ
            old = ctypes.c_uint32.from_address(hdr).value
            new = old ^ BPF_RINGBUF_BUSY_BIT
            if discard:
                new |= BPF_RINGBUF_DISCARD_BIT
            if ATOMICS.cmpxchg32(hdr, old, new) != old:
                return -E.EINVAL
        if flags & BPF_RB_FORCE_WAKEUP or \
                (not flags & BPF_RB_NO_WAKEUP and (self._cons & self.mask) == hdr - self.data_base):
            self._wake()
        return 0

    def _wake(self) -> None:
        """Bump the wakeup word; wake the consumers waiting on it, if any."""
        word = self.native + EXT_RB_WAKEUPS
        while True:
            old = ctypes.c_uint32.from_address(word).value
            if ATOMICS.cmpxchg32(word, old, (old + 1) & 0xFFFF_FFFF) == old:
                break
        if ctypes.c_uint64.from_address(self.native + EXT_RB_WAITERS).value:
            _libc.syscall(ctypes.c_long(SYS_FUTEX), ctypes.c_void_p(word), ctypes.c_int(FUTEX_WAKE_PRIVATE),
                          ctypes.c_int(0x7FFF_FFFF))

    def submit(self, address: int, flags: int = 0) -> int:
        """bpf_ringbuf_submit: make the reserved record visible to the consumer; -EINVAL (and
        nothing changed) unless address starts a record reserved and not yet committed."""
        return self._commit(address, flags, False)

    def discard(self, address: int, flags: int = 0) -> int:
        """bpf_ringbuf_discard: release the reserved record; the consumer skips it."""
        return self._commit(address, flags, True)

    def output(self, data: bytes, flags: int = 0) -> int:
        """bpf_ringbuf_output: copy ``data`` into a new record; -EINVAL for unknown flags,
        -EAGAIN when there is no room."""
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            return -E.EINVAL
        data = bytes(data)
        rec = self.reserve(len(data))
        if not rec:
            return -E.EAGAIN
        ctypes.memmove(rec, data, len(data))
        self._commit(rec, flags, False)
        return 0

    def query(self, flag: int) -> int:
        """bpf_ringbuf_query: AVAIL_DATA 0, RING_SIZE 1, CONS_POS 2, PROD_POS 3; 0 otherwise."""
        if flag == BPF_RB_AVAIL_DATA:
            return self._prod - self._cons
        if flag == BPF_RB_RING_SIZE:
            return self.size
        if flag == BPF_RB_CONS_POS:
            return self._cons
        if flag == BPF_RB_PROD_POS:
            return self._prod
        return 0

    # consumer (Python side)

    def _ready(self) -> bool:
        return self._cons < self._prod and not self._hdr_len(self._cons) & BPF_RINGBUF_BUSY_BIT

    def consume(self, callback: Callable[[bytes], Any], max_records: int | None = None) -> int:
        """Hand every committed record, in order, to ``callback(bytes)`` (discarded ones are
        skipped, consumption stops at a record still reserved) and advance the consumer
        position. Returns the number of records handed over; a callback returning a negative
        int stops consumption and that int is returned (libbpf's convention)."""
        count = 0
        with self._consumer_lock:
            cons = self._cons
            while True:
                got_new = False
                prod = self._prod
                while cons < prod:
                    hlen = self._hdr_len(cons)
                    if hlen & BPF_RINGBUF_BUSY_BIT:
                        return count
                    got_new = True
                    length = self._committed_length(cons, hlen)
                    start = cons
                    cons += round_up(length + BPF_RINGBUF_HDR_SZ, 8)
                    if not hlen & BPF_RINGBUF_DISCARD_BIT:
                        sample = ctypes.string_at(
                            self.data_base + (start & self.mask) + BPF_RINGBUF_HDR_SZ, length)
                        try:
                            result = callback(sample)
                        except BaseException:
                            self._cons = cons
                            raise
                        if isinstance(result, int) and not isinstance(result, bool) and result < 0:
                            self._cons = cons
                            return result
                        count += 1
                    self._cons = cons
                    if max_records is not None and count >= max_records:
                        return count
                if not got_new:
                    return count

    def poll(self, callback: Callable[[bytes], Any], max_records: int | None = None,
             timeout: float = 0.0) -> int:
        """Like :meth:`consume`; when nothing is ready, wait up to ``timeout`` seconds for a
        commit that wakes consumers (see the module's docstring on wakeups)."""
        count = self.consume(callback, max_records)
        if count or timeout <= 0:
            return count
        deadline = time.monotonic() + timeout
        word, waiters = self.native + EXT_RB_WAKEUPS, self.native + EXT_RB_WAITERS
        ATOMICS.fetch_add64(waiters, 1)  # before reading the word: a commit after this wakes us
        try:
            while True:
                seen = ctypes.c_uint32.from_address(word).value
                left = deadline - time.monotonic()
                if self._ready() or left <= 0:
                    break
                _futex_wait(word, seen, left)
        finally:
            ATOMICS.fetch_add64(waiters, (1 << 64) - 1)
        return self.consume(callback, max_records)

    @property
    def avail_data(self) -> int:
        return self._prod - self._cons

    def _raw_pending(self) -> list[tuple[int, bytes]]:
        out = []
        pos = self._cons
        prod = self._prod
        while pos < prod:
            hlen = self._hdr_len(pos)
            if hlen & BPF_RINGBUF_BUSY_BIT:
                break
            length = self._committed_length(pos, hlen)
            if not hlen & BPF_RINGBUF_DISCARD_BIT:
                out.append((pos, ctypes.string_at(self.data_base + (pos & self.mask)
                                                  + BPF_RINGBUF_HDR_SZ, length)))
            pos += round_up(length + BPF_RINGBUF_HDR_SZ, 8)
        return out

    def dump(self) -> list[tuple[Any, Any]]:
        """(position, bytes) of every committed record not consumed yet; consumes nothing."""
        return self._raw_pending()

    def __len__(self) -> int:
        raise self._unsupported("len()")

    def __contains__(self, key: Any) -> bool:
        raise self._unsupported("lookup")

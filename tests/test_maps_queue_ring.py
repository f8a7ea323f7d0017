"""BPF maps in native memory (bpfjit.runtime.maps): the maps without keys: queue, stack and ring
buffer.

Expected values are worked out by hand from the kernel's semantics (kernel/bpf/arraymap.c,
hashtab.c, queue_stack_maps.c, ringbuf.c, libbpf's ringbuf consumer) and docs/semantics.md#maps,
#spin-locks and #helpers, never copied from the implementation's output. Where bpfjit deliberately
differs (exact LRU, in-place hash updates) the tests follow the documented bpfjit rule.
"""
from __future__ import annotations

import ctypes
import errno
import struct
import threading
import time

import pytest

from bpfjit.errors import MapError
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import (
    BPF_ANY, BPF_EXIST, BPF_NOEXIST, HEADER, HEADER_SIZE, RingBuf, ringbuf_from_record,
)

from map_cases import PAGE, covered, errno_of, mem, mk, poke, u32, u64

BUSY = 1 << 31
DISCARD = 1 << 30
RB_NO_WAKEUP, RB_FORCE_WAKEUP = 1, 2


# --- queue and stack -----------------------------------------------------------------------------


def _pop(m, how="pop"):
    out = ctypes.create_string_buffer(b"\xff" * m.value_size, m.value_size)
    err = getattr(m, how)(ctypes.addressof(out))
    return err, out.raw


def test_queue_fifo_and_overwrite():
    q = mk("q", MapType.QUEUE, 0, 4, 3)
    for v in (1, 2, 3):
        assert q.push(u32(v), BPF_ANY) == 0
    assert len(q) == 3
    assert q.push(u32(4), BPF_ANY) == -errno.E2BIG
    assert q.push(u32(4), BPF_EXIST) == 0          # drops the oldest (1)
    assert q.values() == [2, 3, 4]
    assert _pop(q, "peek") == (0, u32(2))
    assert _pop(q) == (0, u32(2))
    assert _pop(q) == (0, u32(3))
    assert _pop(q) == (0, u32(4))
    assert _pop(q) == (-errno.ENOENT, b"\0\0\0\0")  # empty: output zeroed
    assert _pop(q, "peek") == (-errno.ENOENT, b"\0\0\0\0")
    assert len(q) == 0


def test_stack_lifo_and_overwrite():
    s = mk("s", MapType.STACK, 0, 4, 3)
    for v in (1, 2, 3):
        assert s.push(u32(v), 0) == 0
    assert _pop(s) == (0, u32(3))
    assert s.push(u32(4), 0) == 0
    assert s.push(u32(5), 0) == -errno.E2BIG       # holds 1 2 4
    assert s.push(u32(5), BPF_EXIST) == 0          # drops the oldest (1): 2 4 5
    assert s.values() == [5, 4, 2]                 # pop order
    assert _pop(s, "peek") == (0, u32(5))
    assert [_pop(s)[1] for _ in range(3)] == [u32(5), u32(4), u32(2)]
    assert _pop(s) == (-errno.ENOENT, b"\0\0\0\0")


def test_queue_stack_flags_and_other_ops():
    for t in (MapType.QUEUE, MapType.STACK):
        m = mk("qs", t, 0, 8, 2)
        assert m.push(u64(1), BPF_NOEXIST) == -errno.EINVAL
        assert m.push(u64(1), 3) == -errno.EINVAL
        assert m.push(u64(1), 4) == -errno.EINVAL
        assert m.lookup(b"") == 0
        assert m.update(b"", u64(1), 0) == -errno.EINVAL
        assert m.delete(b"") == -errno.EINVAL
        assert errno_of(m.keys) == errno.EOPNOTSUPP
        assert errno_of(m.__getitem__, 0) == errno.EOPNOTSUPP
        assert m.regions()[0].start == m.handle and len(m.regions()) == 1


def test_queue_wraps_around_its_ring():
    q = mk("q", MapType.QUEUE, 0, 3, 4)            # odd value size: not rounded
    expected = []
    n = 0
    for _round in range(10):                     # 3 in, 2 out while there is room
        for _ in range(3 if len(expected) <= 1 else 2):
            assert q.push(bytes([n, n + 1, n + 2])) == 0
            expected.append(bytes([n, n + 1, n + 2]))
            n += 1
        assert len(q) == len(expected)
        for _ in range(2):
            assert _pop(q) == (0, expected.pop(0))
    assert n > 2 * 5                              # went round the 5-slot ring twice
    assert [_pop(q)[1] for _ in range(len(expected))] == expected
    assert len(q) == 0


def test_queue_python_api():
    q = mk("q", MapType.QUEUE, 0, 2, 2)
    q.push_elem(1)
    q.push_elem(b"\x02\x00")
    assert errno_of(q.push_elem, 3) == errno.E2BIG
    q.push_elem(3, BPF_EXIST)
    assert list(q) == [2, 3] and q.dump() == [(None, 2), (None, 3)]
    assert q.peek_elem() == 2 and q.pop_elem() == 2 and q.pop_elem() == 3
    with pytest.raises(MapError) as info:
        q.pop_elem()
    assert info.value.errno == errno.ENOENT and "q" in str(info.value)
    assert errno_of(q.peek_elem) == errno.ENOENT
    assert errno_of(q.push_elem, 1, BPF_NOEXIST) == errno.EINVAL
    with pytest.raises(MapError):
        q.push_elem(b"\0\0\0")
    s = mk("s", MapType.STACK, 0, 2, 3)
    for v in (1, 2, 3):
        s.push_elem(v)
    s.clear()
    assert len(s) == 0 and s.values() == []


# --- ring buffer ---------------------------------------------------------------------------------


def rec_hdr(rb: RingBuf, pos: int) -> tuple[int, int]:
    return struct.unpack("<II", mem(rb.data_base + (pos & rb.mask), 8))


def collect(rb: RingBuf, **kw) -> tuple[int, list[bytes]]:
    got: list[bytes] = []
    n = rb.poll(got.append, **kw)
    return n, got


def test_ringbuf_reserve_layout_and_positions():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    assert rb.query(0) == 0 and rb.query(1) == PAGE and rb.query(2) == 0 and rb.query(3) == 0
    assert rb.query(99) == 0
    a = rb.reserve(10)
    assert a == rb.data_base + 8                 # after the 8-byte header
    assert rec_hdr(rb, 0) == (10 | BUSY, 0)
    assert rb.query(3) == 24                     # round_up(10 + 8, 8)
    assert rb.query(0) == 24
    b = rb.reserve(5)
    assert b == rb.data_base + 24 + 8
    assert rb.query(3) == 40                     # + round_up(5 + 8, 8)
    header = HEADER.unpack(mem(rb.handle, HEADER_SIZE))
    assert header[6] == rb.data_base and header[9] == 0 and header[10] == 40
    assert ringbuf_from_record(a) is rb and ringbuf_from_record(b) is rb
    assert ringbuf_from_record(rb.handle) is None
    assert covered(rb, a, 10) and covered(rb, b, 5)
    rb.discard(a)
    rb.discard(b)


def test_ringbuf_commit_order_and_discard():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    a = rb.reserve(4)
    b = rb.reserve(4)
    poke(a, b"AAAA")
    poke(b, b"BBBB")
    assert rb.submit(b) == 0
    assert rec_hdr(rb, 16) == (4, 0)             # BUSY cleared
    assert collect(rb) == (0, [])                # a still reserved: nothing passes it
    assert rb.query(2) == 0
    assert rb.submit(a) == 0
    assert collect(rb) == (2, [b"AAAA", b"BBBB"])
    assert rb.query(2) == rb.query(3) == 32 and rb.query(0) == 0
    c = rb.reserve(3)
    poke(c, b"CCC")
    d = rb.reserve(2)
    poke(d, b"DD")
    assert rb.discard(c) == 0
    assert rec_hdr(rb, 32) == (3 | DISCARD, 0)
    rb.submit(d)
    assert collect(rb) == (1, [b"DD"])           # discarded record skipped, still consumed
    assert rb.query(2) == rb.query(3) == 32 + 16 + 16
    assert rb.submit(d) == -errno.EINVAL         # already committed: left alone
    assert rec_hdr(rb, 48) == (2, 0)


def test_ringbuf_commit_wants_the_start_of_a_reserved_record():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    a = rb.reserve(16)
    assert rb.submit(a + 8) == -errno.EINVAL      # inside the record: refused, nothing changed
    assert rb.discard(a - 8) == -errno.EINVAL     # its header
    assert ringbuf_from_record(a + 8) is None and ringbuf_from_record(a) is rb
    assert rec_hdr(rb, 0) == (16 | BUSY, 0)
    assert rb.discard(a) == 0
    assert ringbuf_from_record(a) is None         # committed: no longer a record to commit
    assert rb.discard(a) == rb.submit(a) == -errno.EINVAL
    assert rec_hdr(rb, 0) == (16 | DISCARD, 0)


def test_ringbuf_capacity_rules():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    assert rb.reserve(PAGE) == 0                  # record larger than the ring
    assert rb.reserve(PAGE - 8) == 0             # len 4096: at most size - 1 bytes in flight
    assert rb.reserve(1, flags=1) == 0           # reserve takes no flags
    a = rb.reserve(PAGE - 16)                    # len 4088 fits
    assert a != 0
    assert rb.reserve(0) == 0                    # 4088 + 8 = 4096 > 4095
    rb.submit(a)
    assert rb.output(b"x") == -errno.EAGAIN
    assert collect(rb)[0] == 1
    assert rb.output(b"x", 4) == -errno.EINVAL
    assert rb.output(b"x", RB_NO_WAKEUP) == 0
    assert rb.output(b"y", RB_FORCE_WAKEUP) == 0
    assert collect(rb) == (2, [b"x", b"y"])


def test_ringbuf_wraparound_is_contiguous():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    recs = [bytes([i]) * 1000 for i in range(1, 6)]
    for r in recs[:4]:                            # each takes round_up(1008, 8) = 1008
        assert rb.output(r) == 0
    assert rb.query(3) == 4032
    assert rb.output(recs[4]) == -errno.EAGAIN   # 5040 - 0 > 4095
    assert collect(rb) == (4, recs[:4])
    assert rb.query(2) == 4032
    # the header sits at 4032; the data runs 4040..5040, i.e. wraps to offset 944
    addr = rb.reserve(1000)
    assert addr == rb.data_base + 4040
    poke(addr, recs[4])
    assert mem(rb.data_base, 944) == recs[4][56:]  # the second mapping aliases the first
    rb.submit(addr)
    assert collect(rb) == (1, [recs[4]])
    assert rb.query(2) == rb.query(3) == 5040    # positions are not masked
    assert covered(rb, addr, 1000)
    assert rb.output(b"z" * 8) == 0
    assert rec_hdr(rb, 5040) == (8, 0)           # header at offset 5040 & 4095 = 944
    assert collect(rb) == (1, [b"z" * 8])


def test_ringbuf_pg_off_is_page_index():
    rb = mk("rb", MapType.RINGBUF, 0, 0, 2 * PAGE)
    assert rb.output(b"\0" * (PAGE - 8)) == 0    # len 4096: next record at offset 4096
    assert rb.output(b"1") == 0
    assert rec_hdr(rb, 0) == (PAGE - 8, 0)
    assert rec_hdr(rb, PAGE) == (1, 1)


def test_ringbuf_poll_callback_contract():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    for i in range(5):
        rb.output(bytes([i]) * (i + 1))
    seen = []

    def stop_at_second(sample):
        seen.append(sample)
        return -7 if len(seen) == 2 else 0

    assert rb.poll(stop_at_second) == -7
    assert seen == [b"\0", b"\1\1"]
    n, got = collect(rb, max_records=2)
    assert (n, got) == (2, [b"\2" * 3, b"\3" * 4])
    assert rb.dump() == [(rb.query(2), b"\4" * 5)]   # dump does not consume
    assert collect(rb) == (1, [b"\4" * 5])
    assert rb.dump() == []
    assert collect(rb) == (0, [])


def test_ringbuf_poll_waits_for_submit():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    addr = rb.reserve(3)

    def later():
        time.sleep(0.05)
        poke(addr, b"abc")
        rb.submit(addr)

    t = threading.Thread(target=later)
    t.start()
    start = time.monotonic()
    assert collect(rb, timeout=5.0) == (1, [b"abc"])
    assert time.monotonic() - start < 4.0
    t.join()
    assert collect(rb, timeout=0.01) == (0, [])


def test_ringbuf_has_no_dict_api():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    assert errno_of(rb.__getitem__, 0) == errno.EOPNOTSUPP
    assert errno_of(rb.__setitem__, 0, 0) == errno.EOPNOTSUPP
    assert errno_of(rb.keys) == errno.EOPNOTSUPP
    assert rb.lookup(b"") == 0
    assert rb.update(b"", b"", 0) == -errno.EOPNOTSUPP
    assert rb.delete(b"") == -errno.EOPNOTSUPP
    assert bool(rb)


def test_ringbuf_corrupt_header_is_an_error_not_a_wild_read():
    rb = mk("rb", MapType.RINGBUF, 0, 0, PAGE)
    assert rb.output(b"ok") == 0
    poke(rb.data_base, struct.pack("<I", (1 << 30) - 1))  # a program wrote over the length
    with pytest.raises(MapError) as info:
        rb.poll(lambda sample: None)
    assert info.value.errno == errno.EINVAL and "corrupt header" in str(info.value)

"""BLOOM_FILTER and PERF_EVENT_ARRAY with bpf_perf_event_output on every engine
(tests/progs/bloom_perf.c), with results worked out by hand from kernel/bpf/bloom_filter.c,
kernel/trace/bpf_trace.c and net/core/filter.c (bpf_xdp_event_output, bpf_skb_event_output)."""
from __future__ import annotations

import errno
import pathlib
import struct

import pytest

from bpfjit.errors import MapError
from bpfjit.object import load
from bpfjit.runtime.maps import MapSpec, create_map
from bpfjit.runtime.maps.bloom import jhash
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.stdhelpers import current_cpu
from test_helper_bench_progs import python_helper_calls

OBJ = pathlib.Path(__file__).resolve().parent / "progs" / "bloom_perf.o"
XDP_DROP, XDP_PASS = 1, 2
CURRENT_CPU = 0xFFFF_FFFF
MAGIC = 0xFEEDBEEF


def word_packet(value: int) -> bytes:
    return struct.pack("<Q", value) + bytes(range(56))  # 64 bytes


def test_jhash_is_lookup3():
    # Bob Jenkins' published lookup3 values (hashlittle), which the kernel's jhash computes.
    assert jhash(b"", 0) == 0xDEADBEEF
    assert jhash(b"Four score and seven years ago", 0) == 0x17770551
    assert jhash(b"Four score and seven years ago", 1) == 0xCD628161


def test_bloom_filter_from_programs(engine):
    obj = load(OBJ)
    seen = obj.maps["seen"]
    assert (seen.hashes, seen.nbits, seen.seed) == (3, 64, 0)  # 16 * 3 / 5 * 7 = 63 bits: at least 64
    check, add = obj.programs["bloom_check"], obj.programs["bloom_add"]
    assert check.test_run(word_packet(1234), engine=engine).retval == XDP_DROP  # empty: certainly absent
    assert add.test_run(word_packet(1234), engine=engine).retval == 0
    assert check.test_run(word_packet(1234), engine=engine).retval == XDP_PASS
    seen.push_elem(99)
    assert check.test_run(word_packet(99), engine=engine).retval == XDP_PASS
    assert 1234 in seen and 99 in seen


def test_bloom_filter_python_side():
    bloom = create_map(MapSpec("b", MapType.BLOOM_FILTER, 0, 8, 100), map_extra=0)
    assert bloom.hashes == 5  # map_extra 0: the default
    assert 7 not in bloom
    bloom.push_elem(7)
    bloom.peek_elem(7)
    with pytest.raises(MapError) as raised:
        bloom[7]
    assert raised.value.errno == errno.EOPNOTSUPP
    with pytest.raises(MapError) as raised:
        bloom.push_elem(8, flags=1)
    assert raised.value.errno == errno.EINVAL


@pytest.mark.parametrize("spec, extra", [
    (MapSpec("b", MapType.BLOOM_FILTER, 4, 8, 100), 0),   # a key
    (MapSpec("b", MapType.BLOOM_FILTER, 0, 0, 100), 0),   # no value
    (MapSpec("b", MapType.BLOOM_FILTER, 0, 8, 100), 16),  # more than 15 hash functions
    (MapSpec("h", MapType.HASH, 4, 8, 100), 3),           # map_extra on another type
])
def test_bloom_filter_creation_checks(spec, extra):
    with pytest.raises(MapError) as raised:
        create_map(spec, map_extra=extra)
    assert raised.value.errno == errno.EINVAL


def sample(data: bytes, appended: int) -> bytes:
    return struct.pack("<II", len(data), MAGIC) + data[:appended]


@pytest.mark.parametrize("program", ["trace", "tc_trace"])
def test_perf_event_output_with_packet_bytes(engine, program):
    obj = load(OBJ)
    events = obj.maps["events"]
    assert events.max_entries == 1  # declared with 0: one slot per CPU, as libbpf sizes it
    data = word_packet(CURRENT_CPU | 12 << 32)
    assert obj.programs[program].test_run(data, engine=engine).retval == 0
    data2 = word_packet(0)  # index 0, no packet bytes
    assert obj.programs[program].test_run(data2, engine=engine).retval == 0
    got = []
    assert events.poll(lambda cpu, raw: got.append((cpu, raw))) == 2
    assert got == [(0, sample(data, 12)), (0, sample(data2, 0))]
    assert events.poll(lambda cpu, raw: got.append((cpu, raw))) == 0


def test_perf_event_output_takes_packet_bytes_across_frags(engine):
    # 5,064 bytes: 3,520 in the linear part (the length the program puts in its sample), the rest
    # in a frag; the sample takes 4,000 of them.
    obj = load(OBJ)
    data = word_packet(CURRENT_CPU | 4000 << 32) + bytes(range(250)) * 20
    assert obj.programs["trace"].test_run(data, engine=engine).retval == 0
    got = []
    assert obj.maps["events"].poll(lambda cpu, raw: got.append(raw)) == 1
    assert got == [sample(data[:3520], 0) + data[:4000]]


@pytest.mark.parametrize("flags, err", [
    (CURRENT_CPU | 65 << 32, errno.EFAULT),   # more packet bytes than the packet has
    (1 << 52, errno.EINVAL),                  # a bit past the packet-length field
    (1, errno.E2BIG),                         # index past max_entries
])
@pytest.mark.parametrize("program", ["trace", "tc_trace"])
def test_perf_event_output_errors(engine, flags, err, program):
    obj = load(OBJ)
    assert obj.programs[program].test_run(word_packet(flags), engine=engine).retval == err
    assert obj.maps["events"].poll(lambda cpu, raw: None) == 0


def test_perf_event_output_to_another_cpus_slot(engine):
    obj = load(OBJ, ncpus=2)
    other = 1 - current_cpu(2)  # the slot of the CPU this thread is not
    assert obj.programs["trace"].test_run(word_packet(other), engine=engine).retval == errno.EOPNOTSUPP


def test_a_full_buffer_loses_samples(engine):
    obj = load(OBJ)
    events = obj.maps["events"]
    events.page_cnt = 1  # 4096 bytes: 8 + round_up(4 + 8 + 64, 8) = 88 bytes a sample, 46 fit
    trace = obj.programs["trace"]
    results = [trace.test_run(word_packet(CURRENT_CPU | 64 << 32), engine=engine).retval for _ in range(48)]
    assert results == [0] * 46 + [errno.ENOSPC] * 2
    lost = []
    assert events.poll(lambda cpu, raw: None, lambda cpu, count: lost.append((cpu, count))) == 46
    assert lost == [(0, 2)]


def test_python_cannot_store_perf_event_fds():
    obj = load(OBJ)
    with pytest.raises(MapError) as raised:
        obj.maps["events"][0] = 5
    assert raised.value.errno == errno.EOPNOTSUPP


def test_every_engine_writes_into_the_same_cpu_buffer():
    # The Python helper (reference) and the native one (JIT, native interpreter) share the
    # native buffer and its lock: the samples come back in the order the runs wrote them.
    obj = load(OBJ)
    packets = [word_packet(CURRENT_CPU | n << 32) for n in (4, 8, 0)]
    for engine, data in zip(("reference", "jit", "interp"), packets):
        assert obj.programs["trace"].test_run(data, engine=engine).retval == 0
    got = []
    assert obj.maps["events"].poll(lambda cpu, raw: got.append(raw)) == 3
    assert got == [sample(packets[0], 4), sample(packets[1], 8), sample(packets[2], 0)]


@pytest.mark.parametrize("program, flags", [
    ("trace", CURRENT_CPU | 12 << 32),     # XDP packet bytes
    ("tc_trace", 0),                       # no packet bytes, from any context
    ("tc_trace", CURRENT_CPU | 12 << 32),  # an skb's bytes
])
def test_jitted_perf_event_output_stays_native(program, flags):
    obj = load(OBJ)
    obj.programs[program].prepare("jit")
    with python_helper_calls() as calls:
        assert obj.programs[program].test_run(word_packet(flags), engine="jit", repeat=5).retval == 0
    assert calls[0] == 0
    assert obj.maps["events"].poll(lambda cpu, raw: None) == 5


def test_page_cnt_is_a_power_of_two_and_a_new_one_empties_the_buffers(engine):
    obj = load(OBJ)
    events = obj.maps["events"]
    with pytest.raises(MapError) as raised:
        events.page_cnt = 3
    assert raised.value.errno == errno.EINVAL
    assert obj.programs["trace"].test_run(word_packet(CURRENT_CPU), engine=engine).retval == 0
    events.page_cnt = 16  # 65,536 bytes a CPU: 744 samples of 88 bytes fit
    trace = obj.programs["trace"]
    assert [trace.test_run(word_packet(CURRENT_CPU | 64 << 32), engine=engine).retval
            for _ in range(745)].count(errno.ENOSPC) == 1
    assert events.poll(lambda cpu, raw: None) == 744

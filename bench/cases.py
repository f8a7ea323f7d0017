"""What each benchmark computes: its program, its input, and its expected result in plain Python.

Every expected result here is computed independently of the code under test, and every engine's
result is compared with it before anything is timed (see measure.py): a wrong result fails the
bench. Inputs come from random.Random(seed), so every run times the same work.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import pathlib
import random
import struct
from typing import Any, Callable

from bpfjit.packets import ETH_P_IP, HOST4, udp4_frame

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
MASK64 = (1 << 64) - 1
MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark.

    The BPF object is progs/SOURCE.bpf.o (and progs/SOURCE.v4.bpf.o where -mcpu=v4 code differs);
    the native twin is SOURCE.c compiled with ``prelude``, exporting ``FUNCTION(mem, len)`` and
    ``repeat_FUNCTION(mem, len, n)``; a case whose ``prelude`` is None has no native twin (its
    native column stays empty). ``check_state``, when given, is called with a freshly loaded
    object after ``runs`` runs of the program and raises AssertionError when the maps or globals
    are not what those runs must leave.

    A program whose state fills up as it runs (records in a ring buffer no one consumes) gives
    ``drain``, called with its object before every timing round, and ``max_repeat``, the runs one
    round may make before it would fill: timing then measures the work, not the full ring. Its
    ``warmup_rounds`` are enough to write all of the ring once: bpfjit maps a ring's pages on first
    touch, where the kernel allocates them with the map, and the page faults are no run's work.

    A program that looks up what the host put in its maps gives ``map_entries``: map name ->
    raw (key, value) pairs, written into every object the bench loads (and into the kernel's
    maps) before its first run.
    """

    name: str
    source: str
    function: str
    data: Callable[[], bytes]
    expected: Callable[[bytes], int]
    repeat: int                        # runs per JIT / native timing round
    interp_data: Callable[[], bytes]   # the interpreter's input (smaller when the full one is slow)
    memory: Callable[[bytes], bytes] | None = None  # the data a run must leave, from its input
    prelude: str | None = "native_suite.h"
    group: str = "micro"               # "micro": the standard suite; "packet", "helper": XDP programs
    check_state: Callable[[Any, int], None] | None = None
    drain: Callable[[Any], None] | None = None
    max_repeat: int = 5_000_000
    warmup_rounds: int = 1
    map_entries: Callable[[], dict[str, list[tuple[bytes, bytes]]]] | None = None

    @property
    def native_twin(self) -> bool:
        return self.prelude is not None

    def object_path(self, cpu: str = "v3") -> pathlib.Path:
        return PROGS / (f"{self.source}.bpf.o" if cpu == "v3" else f"{self.source}.{cpu}.bpf.o")

    def cpu_variants(self) -> list[str]:
        """v3, then v4 where its code differs, and clang's default cpu where the program is also
        built as users build it without -mcpu (``default``)."""
        return ["v3"] + [cpu for cpu in ("v4", "default") if self.object_path(cpu).exists()]


def halves_copied(data: bytes) -> bytes:
    """memcpy's result: the first half copied over the second."""
    half = len(data) // 2
    return data[:half] * 2


# memcpy_regions: a constant-size copy between constant offsets of one buffer (bench/progs).
REGION, REGION_SRC, REGION_DST = 4096, 64, 8192


def region_copied(data: bytes) -> bytes:
    """memcpy_regions' result: REGION bytes from REGION_SRC copied to REGION_DST."""
    out = bytearray(data)
    out[REGION_DST:REGION_DST + REGION] = data[REGION_SRC:REGION_SRC + REGION]
    return bytes(out)


# --- inputs and expected results -----------------------------------------------------------------

def data_u64(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def a_plus_b_data() -> bytes:
    return data_u64([0xFEDCBA9876543210, 0x123456789ABCDEF1])


def a_plus_b_expected(data: bytes) -> int:
    a, b = struct.unpack_from("<QQ", data)
    return (a + b) & MASK64


def log2_data(count: int, seed: int = 2) -> bytes:
    rng = random.Random(seed)
    return data_u64([rng.getrandbits(rng.randint(0, 64)) for _ in range(count)])


def log2_expected(data: bytes) -> int:
    result = 0
    for (value,) in struct.iter_unpack("<Q", data):
        result ^= value.bit_length() - 1 if value else 0
    return result


def prime_expected(data: bytes) -> int:
    limit = struct.unpack_from("<Q", data)[0]
    sieve = bytearray([1]) * max(limit, 2)
    sieve[0:2] = b"\0\0"
    for n in range(2, int(limit ** 0.5) + 1):
        if sieve[n]:
            sieve[n * n::n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve[:limit])


def halves_data(half: int, differ_at: float | None, seed: int = 4) -> bytes:
    """Two halves of `half` random bytes, identical, or the second one differing at one byte."""
    first = random.Random(seed).randbytes(half)
    second = bytearray(first)
    if differ_at is not None:
        second[int(half * differ_at)] ^= 0x5A
    return first + bytes(second)


def strcmp_expected(data: bytes) -> int:
    half = len(data) // 2
    for i in range(half):
        if data[i] != data[half + i]:
            return i
    return half


def memcpy_data(half: int, seed: int = 5) -> bytes:
    return random.Random(seed).randbytes(half) + bytes(half)


def switch_data(count: int, seed: int = 6) -> bytes:
    rng = random.Random(seed)
    return struct.pack(f"<{count}i", *(rng.randint(-2 ** 31, 2 ** 31 - 1) for _ in range(count)))


def switch_expected(data: bytes) -> int:
    result = 0
    for (x,) in struct.iter_unpack("<i", data):
        result = ((result ^ (x & MASK64)) + (x & 63) * 0x9E3779B1 % 1000003) & MASK64
    return result


MICRO_CASES = [
    Case("simple", "simple", "simple", lambda: bytes(8), lambda d: 0, 2_000_000, lambda: bytes(8)),
    Case("memory_a_plus_b", "memory_a_plus_b", "memory_a_plus_b", a_plus_b_data, a_plus_b_expected,
         2_000_000, a_plus_b_data),
    Case("log2_int", "log2_int", "log2_int", lambda: log2_data(1024), log2_expected, 5_000,
         lambda: log2_data(128)),
    Case("prime", "prime", "prime", lambda: data_u64([10_000]), prime_expected, 4,
         lambda: data_u64([200])),
    # One program, two inputs: identical halves, or halves that differ at about 27%.
    Case("strcmp_full", "strcmp_halves", "strcmp_halves", lambda: halves_data(MIB, None),
         strcmp_expected, 20, lambda: halves_data(1024, None)),
    Case("strcmp_fail", "strcmp_halves", "strcmp_halves", lambda: halves_data(MIB, 0.27),
         strcmp_expected, 60, lambda: halves_data(1024, 0.27)),
    Case("memcpy", "memcpy", "memcpy_bench", lambda: memcpy_data(MIB), lambda d: len(d) // 2, 20,
         lambda: memcpy_data(1024), memory=halves_copied),
    # The shape users write: a fixed-size byte loop between two regions of one buffer.
    Case("memcpy_regions", "memcpy_regions", "memcpy_regions_bench", lambda: memcpy_data(8192), lambda d: REGION,
         20_000, lambda: memcpy_data(8192), memory=region_copied),
    Case("switch", "switch", "switch_bench", lambda: switch_data(4096), switch_expected, 1_000,
         lambda: switch_data(256)),
]


# --- the helper-heavy XDP programs (bench/progs: hash_churn.c, ringbuf_events.c, ...) -------------
#
# Each works from the IPv4 source address of a 64-byte UDP frame (bench/progs/xdp_source.h) and
# calls one family of helpers many times per run; each models here what its C comment says.

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 0, 1, 2, 3, 4
MASK32 = (1 << 32) - 1


def helper_frame() -> bytes:
    """The helper programs' input: a 64-byte IPv4/UDP frame (22 bytes of payload)."""
    return udp4_frame(40000, 9000, random.Random(21).randbytes(22))


def service_frame() -> bytes:
    """A 74-byte IPv4/UDP frame from 10.0.0.2 to the service address 10.0.0.1, checksums valid: the
    input of xdp_ipip_encap (encapsulated, XDP_TX) and tc_dnat (rewritten, TC_ACT_OK)."""
    return bytes.fromhex("020000000001020000000002080045000"
                         "03c000100004011669e0a0000020a00000104d200350028f593000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")


def untouched_verdict(frame: bytes) -> int | None:
    """xdp_source.h's verdict on a frame the program does not work on: XDP_DROP when it is too
    short for its Ethernet or IPv4 header, XDP_PASS when it is not IPv4; None for an IPv4 frame."""
    if len(frame) < 14:
        return XDP_DROP
    if int.from_bytes(frame[12:14], "big") != ETH_P_IP:
        return XDP_PASS
    return XDP_DROP if len(frame) < 34 else None


def ipv4_source(frame: bytes) -> int:
    return int.from_bytes(frame[26:30], "big")


def helper_expected(frame: bytes) -> int:
    """Every helper program's verdict when none of its helper calls fails."""
    verdict = untouched_verdict(frame)
    return XDP_PASS if verdict is None else verdict


def worked_sources(frames: list[bytes]) -> list[int]:
    """The source addresses of the frames a helper program works on, in order."""
    return [ipv4_source(frame) for frame in frames if untouched_verdict(frame) is None]


def churn_keys(saddr: int) -> list[int]:
    return [(saddr + i * 0x9E3779B9) & MASK32 for i in range(64)]


def hash_churn_state(frames: list[bytes]) -> dict[str, Any]:
    """churn_sum (every key squared, read back) and the map, empty again after each run."""
    total = sum(key * key for saddr in worked_sources(frames) for key in churn_keys(saddr))
    return {"churn_sum": total & MASK64, "entries": {}}


def lru_keys(saddr: int) -> list[int]:
    return [saddr ^ (i * 0x01000193 & MASK32) for i in range(64)]


def lru_churn_state(frames: list[bytes], capacity: int = 32) -> dict[str, Any]:
    """lru_sum, and the flow cache as a least-recently-used cache of `capacity` leaves it (an
    update or a lookup makes its key the most recent)."""
    cache: collections.OrderedDict[int, int] = collections.OrderedDict()
    total = 0
    for saddr in worked_sources(frames):
        for key in lru_keys(saddr):
            cache[key] = key * 3
            cache.move_to_end(key)
            if len(cache) > capacity:
                cache.popitem(last=False)
            total += cache[key]
    return {"lru_sum": total & MASK64, "entries": dict(cache)}


def percpu_counter_state(frames: list[bytes], slots: int = 64) -> list[dict[str, int]]:
    """Each slot's packets and bytes, summed over the CPUs."""
    counts = [{"packets": 0, "bytes": 0} for _ in range(slots)]
    for frame in frames:
        if untouched_verdict(frame) is None:
            saddr = ipv4_source(frame)
            for i in range(64):
                slot = counts[((saddr + i * i) & MASK32) % slots]
                slot["packets"] += 1
                slot["bytes"] += len(frame)
    return counts


def spin_counter_state(frames: list[bytes]) -> dict[str, int]:
    sources = worked_sources(frames)
    total = sum((saddr >> (i & 31)) & 0xFF for saddr in sources for i in range(64))
    return {"hits": 64 * len(sources), "total": total}


def loop_squares_state(frames: list[bytes]) -> dict[str, int]:
    """The globals the last worked frame leaves (zeros if none was worked on)."""
    sources = worked_sources(frames)
    if not sources:
        return {"squares_sum": 0, "squares_loops": 0}
    return {"squares_sum": sum((sources[-1] + i) ** 2 for i in range(1000)) & MASK64, "squares_loops": 1000}


def queue_churn_state(frames: list[bytes]) -> dict[str, Any]:
    """queue_sum: every popped value folded in FIFO order; the queue is empty again."""
    folded = 0
    for saddr in worked_sources(frames):
        for i in range(16):
            folded = (folded * 31 + saddr * (i + 1)) & MASK64
    return {"queue_sum": folded, "queued": 0}


TAIL_STAGES = 8  # tail_chain.c's stages: the program and the seven it tail-calls in turn


def tail_chain_state(frames: list[bytes]) -> dict[str, int]:
    """chain_sum folded by every stage of every worked frame, in order, and the stages run."""
    folded, sources = 0, worked_sources(frames)
    for saddr in sources:
        for n in range(TAIL_STAGES):
            folded = (folded * 31 + ((saddr >> (4 * n)) & 0xFF) + n) & MASK64
    return {"chain_sum": folded, "chain_hops": TAIL_STAGES * len(sources)}


EVENT = struct.Struct("<IHH")  # ringbuf_events.c's struct event: saddr, index, length
RINGBUF_RECORD = 8 + 8         # its record in the ring: the 8-byte header, then the 8-byte event


def ringbuf_submit_state(frames: list[bytes]) -> dict[str, Any]:
    """The events ringbuf_submit leaves in the ring, in order, and the bytes they hold."""
    records = [EVENT.pack(ipv4_source(frame), i, len(frame))
               for frame in frames if untouched_verdict(frame) is None for i in range(16)]
    return {"records": records, "held": RINGBUF_RECORD * len(records), "rb_full": 0}


def ringbuf_discard_state(frames: list[bytes]) -> dict[str, Any]:
    """No event to read, but ringbuf_discard's records still hold their bytes: a discarded record
    keeps its space until the consumer passes it."""
    return {"records": [], "held": RINGBUF_RECORD * 16 * len(worked_sources(frames)), "rb_full": 0}


def read_ring(obj: Any) -> dict[str, Any]:
    """The ring's committed records (consumed: the ring is empty after), the bytes it held, and
    rb_full."""
    ring = obj.maps["events"]
    held = ring.avail_data
    records: list[bytes] = []
    ring.consume(records.append)
    return {"records": records, "held": held, "rb_full": obj.bss["rb_full"]}


def read_percpu_counts(obj: Any) -> list[dict[str, int]]:
    return [{field: sum(cpu[field] for cpu in per_cpu) for field in ("packets", "bytes")}
            for _, per_cpu in sorted(obj.maps["slot_counts"].items())]


Model = Callable[[list[bytes]], Any]  # frames -> the state one run on each must leave
Reader = Callable[[Any], Any]         # object -> its state, in the model's shape

HELPER_STATES: dict[str, tuple[Model, Reader]] = {
    "hash_churn": (hash_churn_state,
                   lambda obj: {"churn_sum": obj.bss["churn_sum"], "entries": dict(obj.maps["churn"].items())}),
    "lru_churn": (lru_churn_state,
                  lambda obj: {"lru_sum": obj.bss["lru_sum"], "entries": dict(obj.maps["flow_cache"].items())}),
    "percpu_counter": (percpu_counter_state, read_percpu_counts),
    "spin_counter": (spin_counter_state,
                     lambda obj: {name: obj.maps["counter"][0][name] for name in ("hits", "total")}),
    "loop_squares": (loop_squares_state,
                     lambda obj: {name: obj.bss[name] for name in ("squares_sum", "squares_loops")}),
    "queue_churn": (queue_churn_state,
                    lambda obj: {"queue_sum": obj.bss["queue_sum"], "queued": len(obj.maps["work"])}),
    "tail_chain": (tail_chain_state, lambda obj: {name: obj.bss[name] for name in ("chain_sum", "chain_hops")}),
    "ringbuf_submit": (ringbuf_submit_state, read_ring),
    "ringbuf_discard": (ringbuf_discard_state, read_ring),
}


def check_helper_state(name: str, obj: Any, frames: list[bytes]) -> None:
    """AssertionError unless helper program `name`'s maps and globals are what one run on each of
    frames leaves (a ring buffer is consumed by the check)."""
    model, read = HELPER_STATES[name]
    got, want = read(obj), model(frames)
    assert got == want, f"{name} after {len(frames)} runs: {got}, expected {want}"


def _state_check(name: str) -> Callable[[Any, int], None]:
    return lambda obj, runs: check_helper_state(name, obj, [helper_frame()] * runs)


def drain_ring(obj: Any) -> None:
    """Consume every record of the ring, as a user-space reader polling it does."""
    obj.maps["events"].consume(lambda record: None)


RING_RUNS = 10_000  # runs per round: 16 records of 16 bytes each fill 2.5 MB of the 4 MB ring
RING_WARMUP = 2     # rounds: 5 MB, so every page of the ring is written before timing


def _helper_case(name: str, repeat: int, source: str | None = None) -> Case:
    ring = {"drain": drain_ring, "max_repeat": RING_RUNS, "warmup_rounds": RING_WARMUP} \
        if name.startswith("ringbuf_") else {}
    return Case(name, source or name, name, helper_frame, helper_expected, repeat, helper_frame, prelude=None,
                group="helper", check_state=_state_check(name), **ring)


HELPER_CASES = [
    _helper_case("hash_churn", 2_000),
    _helper_case("lru_churn", 5_000),
    _helper_case("percpu_counter", 50_000),
    _helper_case("spin_counter", 50_000),
    _helper_case("loop_squares", 20_000),
    _helper_case("queue_churn", 50_000),
    _helper_case("tail_chain", 200_000),
    _helper_case("ringbuf_submit", RING_RUNS, "ringbuf_events"),
    _helper_case("ringbuf_discard", RING_RUNS, "ringbuf_events"),
]
# The per-packet helpers: encapsulation with bpf_xdp_adjust_head and bpf_csum_diff (XDP_TX),
# destination NAT with bpf_l3/l4_csum_replace and bpf_skb_store_bytes (TC_ACT_OK); both alternate
# between their two forms from run to run, with the same verdict (no state model: the suite checks
# their verdicts; tests/test_native_packet_helpers.py their packets against the reference).
PACKET_HELPER_CASES = [
    Case("xdp_ipip_encap", "xdp_ipip_encap", "xdp_ipip_encap", lambda: service_frame(), lambda d: 3, 1_000_000,
         lambda: service_frame(), prelude=None, group="helper"),
    Case("tc_dnat", "tc_dnat", "tc_dnat", lambda: service_frame(), lambda d: 0, 1_000_000, lambda: service_frame(),
         prelude=None, group="helper"),
]


# --- a longest-prefix lookup -----------------------------------------------------------------------
# lpm_lookup looks the frame's IPv4 destination up in an LPM trie of 10,000 prefixes that the host
# fills before the first run; the value of a prefix is the program's verdict.

LPM_PREFIXES = 10_000


@functools.cache  # the bench's map entries and its model both ask, for every engine's check
def route_table(seed: int = 31) -> dict[tuple[int, int], int]:
    """(prefix length, network address as an int) -> XDP action: random prefixes of /8 to /32
    outside 0.0.0.0/8 (left without a route), with every prefix of /8 to /32 of the frame's
    destination among them, so that the lookup walks the trie's full depth to the longest one."""
    rnd = random.Random(seed)
    destination = int.from_bytes(HOST4, "big")
    routes: dict[tuple[int, int], int] = {}
    for length in range(8, 33):
        routes[(length, destination >> (32 - length) << (32 - length))] = rnd.choice((XDP_PASS, XDP_TX))
    while len(routes) < LPM_PREFIXES:
        length = rnd.randint(8, 32)
        network = rnd.getrandbits(32) >> (32 - length) << (32 - length)
        if network >> 24:
            routes[(length, network)] = rnd.choice((XDP_DROP, XDP_PASS, XDP_TX))
    return routes


def route_entries() -> dict[str, list[tuple[bytes, bytes]]]:
    """route_table as lpm_lookup's map entries (struct bpf_lpm_trie_key_hdr: a host-order u32
    prefix length, then the address in network order; a u32 action)."""
    return {"routes": [(struct.pack("<I", length) + network.to_bytes(4, "big"), struct.pack("<I", action))
                       for (length, network), action in route_table().items()]}


def longest_prefix_verdict(frame: bytes) -> int:
    """lpm_lookup's verdict, by trying the destination's prefixes from the longest down."""
    verdict = untouched_verdict(frame)
    if verdict is not None:
        return verdict
    routes, destination = route_table(), int.from_bytes(frame[30:34], "big")
    for length in range(32, -1, -1):
        network = destination >> (32 - length) << (32 - length) if length else 0
        if (length, network) in routes:
            return routes[(length, network)]
    return XDP_DROP


# --- a redirect through a DEVMAP -------------------------------------------------------------------
# xdp_redirect sends an IPv4 frame out of the port its destination's low three bits pick: every
# port of its DEVMAP holds ifindex 1 (the loopback device, which the kernel's map needs to exist).

REDIRECT_PORTS = 8


def port_entries() -> dict[str, list[tuple[bytes, bytes]]]:
    return {"tx_ports": [(struct.pack("<I", port), struct.pack("<I", 1)) for port in range(REDIRECT_PORTS)]}


def redirect_verdict(frame: bytes) -> int:
    verdict = untouched_verdict(frame)
    return XDP_REDIRECT if verdict is None else verdict


FILLED_MAP_CASES = [
    Case("lpm_lookup", "lpm_lookup", "lpm_lookup", helper_frame, longest_prefix_verdict, 1_000_000, helper_frame,
         prelude=None, group="helper", map_entries=route_entries),
    Case("xdp_redirect", "xdp_redirect", "xdp_redirect", helper_frame, redirect_verdict, 1_000_000, helper_frame,
         prelude=None, group="helper", map_entries=port_entries),
]

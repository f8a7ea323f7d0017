"""The LPM trie's native index (runtime/maps/lpm_trie.py) and its native lookup (jit/native_lpm.py)
against a plain-Python longest-prefix oracle written here: random prefixes, updates, deletes and
lookups from Python and from a BPF program on every engine, for IPv4, IPv6 and odd key sizes,
prefix length 0 and full-length prefixes, a full trie, and jitted lookups that enter no Python.
"""
from __future__ import annotations

import ctypes
import errno
import ipaddress
import random
import struct
import threading

import pytest

import bpfjit.asm
from bpfjit import isa
from bpfjit.program import Program
from bpfjit.runtime.environment import Environment
from bpfjit.runtime.map_types import MapType
from bpfjit.runtime.maps import BPF_ANY, BPF_EXIST, BPF_F_NO_PREALLOC, BPF_NOEXIST, MapSpec, create_map
from bpfjit.runtime.maps.lpm_trie import LpmTrie
from bpfjit.runtime.stdhelpers import standard_helpers

LOOKUP, UPDATE, DELETE = 0, 1, 2
MISSING = (1 << 64) - 1


class Oracle:
    """Longest-prefix match by brute force over a dict of stored prefixes, with the kernel's update
    and delete rules (docs/semantics.md#lpm-trie)."""

    def __init__(self, data_size: int, max_entries: int):
        self.bits, self.max_entries = 8 * data_size, max_entries
        self.stored: dict[tuple[int, int], tuple[int, bytes]] = {}  # (length, prefix) -> (value, data)

    def _prefix(self, length: int, data: bytes) -> tuple[int, int]:
        return length, int.from_bytes(data, "big") >> (self.bits - length)

    def lookup(self, length: int, data: bytes) -> int | None:
        limit, address = min(length, self.bits), int.from_bytes(data, "big")
        matches = [(stored_length, value) for (stored_length, prefix), (value, _) in self.stored.items()
                   if stored_length <= limit and address >> (self.bits - stored_length) == prefix]
        return max(matches)[1] if matches else None

    def update(self, length: int, data: bytes, value: int, flags: int) -> int:
        if flags > BPF_EXIST or length > self.bits:
            return -errno.EINVAL
        prefix = self._prefix(length, data)
        if prefix in self.stored and flags == BPF_NOEXIST:
            return -errno.EEXIST
        if prefix not in self.stored and flags == BPF_EXIST:
            return -errno.ENOENT
        if prefix not in self.stored and len(self.stored) == self.max_entries:
            return -errno.ENOSPC
        self.stored[prefix] = (value, data)
        return 0

    def delete(self, length: int, data: bytes) -> int:
        if length > self.bits:
            return -errno.EINVAL
        return 0 if self.stored.pop(self._prefix(length, data), None) is not None else -errno.ENOENT

    def keys(self) -> list[bytes]:
        """get_next_key order: a prefix after every prefix inside it, the 0 side before the 1 side."""
        strings = {format(prefix, f"0{length}b") if length else "": data
                   for (length, prefix), (_, data) in self.stored.items()}

        def post_order(at: str) -> list[str]:
            inside = [s for s in strings if s.startswith(at)]
            below = post_order(at + "0") + post_order(at + "1") if any(len(s) > len(at) for s in inside) else []
            return below + ([at] if at in strings else [])

        return [struct.pack("<I", len(s)) + strings[s] for s in post_order("")]


def trie(data_size: int, max_entries: int = 64) -> LpmTrie:
    return create_map(MapSpec("t", MapType.LPM_TRIE, 4 + data_size, 4, max_entries, BPF_F_NO_PREALLOC))


def key(length: int, data: bytes) -> bytes:
    return struct.pack("<I", length) + data


class Prefixes:
    """Random prefixes and addresses around a few bases, so that they nest, share bits and collide."""

    def __init__(self, rng: random.Random, data_size: int):
        self.rng, self.size = rng, data_size
        self.bases = [rng.randbytes(data_size) for _ in range(4)]

    def data(self) -> bytes:
        """A base with a few random bits flipped (past a prefix they must not matter)."""
        value = int.from_bytes(self.rng.choice(self.bases), "big")
        for _ in range(self.rng.randrange(3)):
            value ^= 1 << self.rng.randrange(8 * self.size)
        return value.to_bytes(self.size, "big")

    def length(self) -> int:
        bits = 8 * self.size
        return self.rng.choice([0, bits, bits, self.rng.randrange(bits + 1), self.rng.randrange(bits + 1),
                                bits + 1 + self.rng.randrange(8)])  # past the data: EINVAL, or a capped lookup


def python_keys(t: LpmTrie, raw: list[bytes]) -> list:
    """The keys as the map's Python API gives them (networks for 4- and 16-byte data)."""
    return [t._decode_key(k) for k in raw]


@pytest.mark.parametrize("data_size", [4, 16, 3, 1, 9])
def test_python_side_matches_the_oracle(data_size):
    rng = random.Random(data_size)
    t, oracle, prefixes = trie(data_size, max_entries=24), Oracle(data_size, 24), Prefixes(rng, data_size)
    for step in range(1500):
        op, length, data = rng.choice([UPDATE, UPDATE, DELETE, LOOKUP]), prefixes.length(), prefixes.data()
        if op == UPDATE:
            value, flags = rng.getrandbits(32), rng.choice([BPF_ANY, BPF_ANY, BPF_NOEXIST, BPF_EXIST, 3])
            assert t.update(key(length, data), value.to_bytes(4, "little"), flags) == \
                oracle.update(length, data, value, flags), step
        elif op == DELETE:
            assert t.delete(key(length, data)) == oracle.delete(length, data), step
        else:
            assert t.get(key(length, data)) == oracle.lookup(length, data), step
        assert len(t) == len(oracle.stored)
        if step % 25 == 0:
            assert t.keys() == python_keys(t, oracle.keys()), step


# A raw program over one trie. r1 points at: u64 op, u64 flags, u32 value, then the key. A lookup
# returns the value (or -1), an update or a delete its result.
_BODY = """mov %r2, %r10
add %r2, -{key_at}
jeq %r7, 1, +7
jeq %r7, 2, +11
call 1
jeq %r0, 0, +2
ldxw %r0, [%r0+0]
exit
mov %r0, -1
exit
mov %r3, %r10
add %r3, -{value_at}
mov %r4, %r8
call 2
exit
call 3
exit"""


def trie_program(t: LpmTrie) -> Program:
    key_at = (t.key_size + 7) // 8 * 8
    value_at = key_at + 8
    head = ["mov %r6, %r1", "ldxdw %r7, [%r6+0]", "ldxdw %r8, [%r6+8]", "ldxw %r3, [%r6+16]",
            f"stxw [%r10-{value_at}], %r3"]
    for i in range(t.key_size):  # the key, byte by byte, to the stack
        head += [f"ldxb %r3, [%r6+{20 + i}]", f"stxb [%r10-{key_at - i}], %r3"]
    env = Environment(standard_helpers(lambda line: None), [*t.regions()], lambda insn, index: t.handle)
    insns = [*bpfjit.asm.assemble_insns("\n".join(head)), *isa.lddw(1, 0, isa.PSEUDO_MAP_FD),
             *bpfjit.asm.assemble_insns(_BODY.format(key_at=key_at, value_at=value_at))]
    return Program(insns, env, "trie_ops", "raw")


def packet(op: int, flags: int, value: int, raw_key: bytes) -> bytes:
    return struct.pack("<QQI", op, flags, value) + raw_key


@pytest.mark.parametrize("data_size", [4, 16, 3, 8])
def test_programs_match_the_oracle(engine, data_size):
    """Updates and deletes from Python and from the program, lookups from the program: every answer
    and the trie's contents are the oracle's."""
    rng = random.Random(100 + data_size)
    t, oracle, prefixes = trie(data_size, max_entries=16), Oracle(data_size, 16), Prefixes(rng, data_size)
    program = trie_program(t)
    steps = 150 if engine == "reference" else 500
    for step in range(steps):
        op, length, data = rng.choice([UPDATE, DELETE, LOOKUP, LOOKUP, LOOKUP]), prefixes.length(), prefixes.data()
        value, flags = rng.getrandbits(31), rng.choice([BPF_ANY, BPF_ANY, BPF_NOEXIST, BPF_EXIST])
        if op != LOOKUP and rng.random() < 0.3:  # from Python
            result = (t.update(key(length, data), value.to_bytes(4, "little"), flags) if op == UPDATE
                      else t.delete(key(length, data)))
        else:
            result = program.test_run(packet(op, flags, value, key(length, data)), engine=engine).retval
        if op == UPDATE:
            expected = oracle.update(length, data, value, flags)
        elif op == DELETE:
            expected = oracle.delete(length, data)
        else:
            found = oracle.lookup(length, data)
            expected = -1 if found is None else found
        assert result & MISSING == expected & MISSING, (step, op, length, data.hex())
        if step % 50 == 0:
            assert t.keys() == python_keys(t, oracle.keys()), step


def test_lengths_zero_full_and_past_the_data(engine):
    """/0 covers everything a key of any length asks for; full-length prefixes match exactly one
    address; a key's prefix length past the data is capped for a lookup. IPv4 and IPv6, with the
    IPv6 lengths around the 64-bit word the native walk compares at once."""
    v4, v6 = trie(4), trie(16)
    programs = {m: trie_program(m) for m in (v4, v6)}

    def lookup(m, length: int, address: str) -> int:
        raw = key(length, ipaddress.ip_address(address).packed)
        return programs[m].test_run(packet(LOOKUP, 0, 0, raw), engine=engine).retval

    assert lookup(v4, 32, "1.2.3.4") == MISSING  # empty
    v4[ipaddress.ip_network("0.0.0.0/0")] = 1
    v4[ipaddress.ip_network("10.1.2.3/32")] = 2
    v4[ipaddress.ip_network("10.0.0.0/8")] = 3
    assert [lookup(v4, 32, a) for a in ("10.1.2.3", "10.1.2.2", "11.1.2.3")] == [2, 3, 1]
    assert lookup(v4, 0, "10.1.2.3") == 1        # a /0 key reaches only the /0
    assert lookup(v4, 31, "10.1.2.3") == 3       # a /31 key cannot reach the /32
    assert lookup(v4, 1000, "10.1.2.3") == 2     # capped at 32
    for network, value in (("::/0", 1), ("2001:db8::/64", 2), ("2001:db8::/65", 3), ("2001:db8::1/128", 4),
                           ("2001:db8:0:0:8000::/65", 5), ("2001:db8::/63", 6)):
        v6[ipaddress.ip_network(network)] = value
    assert [lookup(v6, 128, a) for a in ("2001:db8::1", "2001:db8::2", "2001:db8::8000:0:0:1",
                                         "2001:db8:0:1::", "2001:db9::")] == [4, 3, 5, 6, 1]
    assert lookup(v6, 64, "2001:db8::1") == 2
    assert lookup(v6, 63, "2001:db8::1") == 6
    assert v6.keys() == [ipaddress.ip_network(n) for n in ("2001:db8::1/128", "2001:db8::/65", "2001:db8:0:0:8000::/65",
                                                           "2001:db8::/64", "2001:db8::/63", "::/0")]


def test_a_full_trie_refuses_new_prefixes(engine):
    """The kernel's -ENOSPC (docs/semantics.md#lpm-trie: trie_check_add_elem), from a program and
    from Python; replacing a stored prefix needs no room, and a delete makes some."""
    t = trie(4, max_entries=3)
    program = trie_program(t)

    def update(network: str, value: int) -> int:
        n = ipaddress.ip_network(network)
        raw = key(n.prefixlen, n.network_address.packed)
        return program.test_run(packet(UPDATE, BPF_ANY, value, raw), engine=engine).retval

    assert [update(n, i) for i, n in enumerate(("10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16"))] == [0, 0, 0]
    assert update("10.3.0.0/16", 9) == -errno.ENOSPC & MISSING
    assert t.update(key(24, bytes([10, 1, 1, 0])), bytes(4)) == -errno.ENOSPC
    assert update("10.1.0.0/16", 7) == 0
    del t[ipaddress.ip_network("10.2.0.0/16")]
    assert update("10.3.0.0/16", 9) == 0
    assert dict(t.items()) == {ipaddress.ip_network("10.0.0.0/8"): 0, ipaddress.ip_network("10.1.0.0/16"): 7,
                               ipaddress.ip_network("10.3.0.0/16"): 9}


@pytest.fixture
def python_lookups(monkeypatch) -> list[int]:
    """Counts the calls of the trie's Python lookup (what the Python fallback helper would run)."""
    calls: list[int] = []
    python_lookup = LpmTrie.lookup

    def counting(self, *args):
        calls.append(1)
        return python_lookup(self, *args)

    monkeypatch.setattr(LpmTrie, "lookup", counting)
    return calls


@pytest.mark.parametrize("engine_name, enters_python", [("jit", False), ("interp", False), ("reference", True)])
def test_native_engines_look_up_without_python(python_lookups, engine_name, enters_python):
    t = trie(4)
    t[ipaddress.ip_network("192.168.0.0/16")] = 5
    program = trie_program(t)
    raw = key(32, bytes([192, 168, 3, 4]))
    assert program.test_run(packet(LOOKUP, 0, 0, raw), engine=engine_name).retval == 5
    assert bool(python_lookups) == enters_python


def test_the_lookup_walks_under_the_lock_while_a_writer_reshapes():
    """A sequence word left odd (a writer mid-change) sends the native lookup to the locked walk,
    which gives the same answers."""
    t = trie(4)
    t[ipaddress.ip_network("10.0.0.0/8")] = 1
    t[ipaddress.ip_network("10.9.0.0/16")] = 2
    program = trie_program(t)
    t._sequence = t._sequence + 1
    try:
        assert [program.test_run(packet(LOOKUP, 0, 0, key(32, bytes([10, b, 0, 1]))), engine="jit").retval
                for b in (9, 8)] == [2, 1]
    finally:
        t._sequence = t._sequence + 1


def test_lockless_lookups_see_a_consistent_trie_while_python_writes():
    """Native lookups run (without the GIL) while Python adds and deletes prefixes beside a stable
    one: a lookup of an address only the stable prefix covers always finds it, and one of an
    address under the churned prefixes finds the stable prefix or a churned one, never nothing."""
    from bpfjit.jit.native_helpers import native_address
    from bpfjit.runtime.stdhelpers import MAP_LOOKUP_ELEM
    t = trie(4, max_entries=512)
    t[ipaddress.ip_network("10.0.0.0/8")] = 1
    lookup = ctypes.CFUNCTYPE(ctypes.c_uint64, *[ctypes.c_uint64] * 5)(
        native_address(MAP_LOOKUP_ELEM, trie_program(t).env))
    addresses = {"stable": bytes([10, 200, 7, 7]), "churned": bytes([10, 3, 1, 7])}
    keys = {name: ctypes.create_string_buffer(key(32, data), 8) for name, data in addresses.items()}
    stop, answers = threading.Event(), {name: set() for name in addresses}

    def reader():
        while not stop.is_set():
            for name, k in keys.items():
                found = lookup(t.handle, ctypes.addressof(k), 0, 0, 0)
                answers[name].add(int.from_bytes(ctypes.string_at(found, 4), "little") if found else None)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        rng, stored = random.Random(7), set()
        for _ in range(4000):  # inside 10.0.0.0/10: 64 /16s and 256 /24s
            network = ipaddress.ip_network((bytes([10, rng.randrange(64), rng.randrange(4), 0]),
                                            rng.choice([16, 24])), strict=False)
            if rng.random() < 0.5:
                t[network] = 2
                stored.add(network)
            elif network in stored:
                del t[network]
                stored.remove(network)
    finally:
        stop.set()
        thread.join()
    assert answers["stable"] == {1}
    assert answers["churned"] <= {1, 2} and answers["churned"]

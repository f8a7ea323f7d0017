"""LPM_TRIE: the kernel's creation checks, longest-prefix lookups, exact-prefix updates and
deletes, get_next_key order (kernel/bpf/lpm_trie.c), the ipaddress API, and a prefix firewall
(tests/progs/lpm_firewall.c) on every engine. Every expected result is worked out by hand."""
from __future__ import annotations

import errno
import ipaddress
import pathlib
import struct

import pytest

from bpfjit.errors import MapError
from bpfjit.object import load
from bpfjit.runtime.maps import BPF_EXIST, BPF_F_NO_PREALLOC, BPF_NOEXIST, MapSpec, create_map
from bpfjit.runtime.map_types import MapType

OBJ = pathlib.Path(__file__).resolve().parent / "progs" / "lpm_firewall.o"
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3
net = ipaddress.ip_network


def trie(key_size: int = 8, max_entries: int = 16, flags: int = BPF_F_NO_PREALLOC, value_size: int = 4):
    return create_map(MapSpec("t", MapType.LPM_TRIE, key_size, value_size, max_entries, flags))


def key(prefixlen: int, data: bytes) -> bytes:
    return struct.pack("<I", prefixlen) + data


@pytest.mark.parametrize("kwargs, what", [
    ({"flags": 0}, "BPF_F_NO_PREALLOC"),
    ({"max_entries": 0}, "max_entries"),
    ({"key_size": 4}, "key_size"),          # no data byte
    ({"key_size": 261}, "key_size"),        # 257 data bytes
    ({"value_size": 0}, "value_size"),
    ({"flags": BPF_F_NO_PREALLOC | 1 << 6}, "map_flags"),  # BPF_F_ZERO_SEED is not for tries
])
def test_creation_checks(kwargs, what):
    with pytest.raises(MapError, match=what) as raised:
        trie(**kwargs)
    assert raised.value.errno == errno.EINVAL


def test_longest_prefix_lookup_and_exact_updates():
    t = trie()
    t[net("192.168.0.0/16")] = 1
    t[net("192.168.1.0/24")] = 2
    t[net("0.0.0.0/0")] = 9
    assert t.lookup_address("192.168.1.200") == 2
    assert t.lookup_address("192.168.77.1") == 1
    assert t.lookup_address("10.0.0.1") == 9
    assert t.match("192.168.1.5") == (net("192.168.1.0/24"), 2)
    # A lookup key's own prefix length caps the match: /20 cannot reach the /24.
    assert t[net("192.168.0.0/20")] == 1
    # Updates and deletes name a prefix exactly, with the hash maps' flags.
    with pytest.raises(MapError) as raised:
        t.update_elem(net("192.168.0.0/16"), 5, BPF_NOEXIST)
    assert raised.value.errno == errno.EEXIST
    with pytest.raises(MapError) as raised:
        t.update_elem(net("192.168.2.0/24"), 5, BPF_EXIST)
    assert raised.value.errno == errno.ENOENT
    t.update_elem(net("192.168.0.0/16"), 5, BPF_EXIST)
    assert t.lookup_address("192.168.77.1") == 5
    with pytest.raises(MapError) as raised:
        t.delete_elem(net("192.168.0.0/17"))
    assert raised.value.errno == errno.ENOENT
    del t[net("192.168.1.0/24")]
    assert t.lookup_address("192.168.1.200") == 5
    assert len(t) == 2


def test_bits_past_the_prefix_do_not_match_but_are_kept():
    t = trie()
    t.update_elem(key(8, bytes([10, 1, 2, 3])), 7)
    assert t.lookup_address("10.200.0.1") == 7
    assert t._raw_keys() == [key(8, bytes([10, 1, 2, 3]))]  # as written, as get_next_key gives it
    t.update_elem(key(8, bytes([10, 0, 0, 0])), 8)  # the same prefix: replaced, data too
    assert t._raw_keys() == [key(8, bytes([10, 0, 0, 0]))]
    assert t.items() == [(net("10.0.0.0/8"), 8)]


def test_prefix_length_past_the_data_is_refused():
    t = trie()
    for operation in (lambda: t.update_elem(key(33, bytes(4)), 1), lambda: t.delete_elem(key(33, bytes(4)))):
        with pytest.raises(MapError) as raised:
            operation()
        assert raised.value.errno == errno.EINVAL


def test_a_full_trie_refuses_new_prefixes_only():
    t = trie(max_entries=2)
    t[net("10.0.0.0/8")] = 1
    t[net("11.0.0.0/8")] = 2
    with pytest.raises(MapError) as raised:
        t[net("12.0.0.0/8")] = 3
    assert raised.value.errno == errno.ENOSPC
    t[net("11.0.0.0/8")] = 4  # replacing a stored prefix needs no room
    assert t.lookup_address("11.1.1.1") == 4


def test_iteration_is_the_kernels_post_order():
    # The example of kernel/bpf/lpm_trie.c's get_next_key: more specific prefixes first, and at the
    # first differing bit 0 before 1.
    t = trie()
    for i, prefix in enumerate(["192.168.0.0/16", "192.168.128.0/24", "192.168.1.0/24", "192.168.0.0/24",
                                "10.0.0.0/8"]):
        t[net(prefix)] = i
    assert t.keys() == [net("10.0.0.0/8"), net("192.168.0.0/24"), net("192.168.1.0/24"), net("192.168.128.0/24"),
                        net("192.168.0.0/16")]


def test_ipv6_and_odd_sized_keys():
    t = trie(key_size=20)
    t[net("2001:db8::/32")] = 1
    assert t.lookup_address(ipaddress.ip_address("2001:db8::1")) == 1
    with pytest.raises(MapError):
        t[net("10.0.0.0/8")] = 2  # a 32-bit network in a 128-bit trie
    odd = trie(key_size=7)  # 3 data bytes: keys as (prefixlen, data)
    odd[(12, b"\xab\xc0\x00")] = 3
    assert odd[(24, b"\xab\xcf\xff")] == 3
    assert odd.keys() == [key(12, b"\xab\xc0\x00")]


def frame(source: str) -> bytes:
    """An Ethernet + IPv4 header from `source` (no payload)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, 0, 0, 64, 6, 0, ipaddress.ip_address(source).packed,
                     bytes([10, 0, 0, 1]))
    return bytes(12) + b"\x08\x00" + ip


def test_the_firewall_program(engine):
    obj = load(OBJ)
    rules = obj.maps["rules"]
    rules[net("192.168.0.0/16")] = XDP_DROP
    rules[net("192.168.7.0/24")] = XDP_TX
    firewall = obj.programs["firewall"]
    assert firewall.test_run(frame("192.168.7.9"), engine=engine).retval == XDP_TX
    assert firewall.test_run(frame("192.168.8.9"), engine=engine).retval == XDP_DROP
    assert firewall.test_run(frame("172.16.0.1"), engine=engine).retval == XDP_PASS
    # Program-side updates and deletes name the /24 exactly.
    assert obj.programs["learn"].test_run(frame("172.16.0.1"), engine=engine).retval == 0
    assert obj.programs["learn"].test_run(frame("172.16.0.99"), engine=engine).retval == errno.EEXIST
    assert firewall.test_run(frame("172.16.0.1"), engine=engine).retval == XDP_DROP
    assert rules[net("172.16.0.0/24")] == XDP_DROP
    assert obj.programs["forget"].test_run(frame("172.16.0.1"), engine=engine).retval == 0
    assert obj.programs["forget"].test_run(frame("172.16.0.1"), engine=engine).retval == errno.ENOENT
    assert firewall.test_run(frame("172.16.0.1"), engine=engine).retval == XDP_PASS


def test_the_native_map_helpers_serve_an_object_with_a_trie(engine):
    """The object's map helpers stay the native ones: the lookup walks the trie's native index
    (jit/native_lpm.py; tests/test_lpm_native.py has the rest), and the trie's answers are the
    reference's."""
    from bpfjit.jit.native_helpers import bound_natively, native_address
    from bpfjit.runtime.stdhelpers import MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM
    obj = load(OBJ)
    program = obj.programs["firewall"]
    assert all(bound_natively(native_address(helper, program.env)) for helper in (MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM))
    obj.maps["rules"][net("10.0.0.0/8")] = XDP_DROP
    assert program.test_run(frame("10.1.2.3"), engine=engine).retval == XDP_DROP
    assert program.test_run(frame("11.1.2.3"), engine=engine).retval == XDP_PASS

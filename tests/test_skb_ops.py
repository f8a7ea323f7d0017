"""The skb helpers that resize a packet, read its headers or keep its tunnel, on random sequences
of operations and random packets (tests/progs/skb_ops.c reads four operations from the packet's
last 96 bytes): every engine gives the same result, packet and sk_buff state; with -m kernel, so
does the Linux kernel's BPF_PROG_TEST_RUN, which defines them.
"""
from __future__ import annotations

import pathlib
import random
import struct

import pytest

from bpfjit import load
from bpfjit.program import ENGINES

OBJ = pathlib.Path(__file__).resolve().parent / "progs" / "skb_ops.o"
OP = struct.Struct("<IIQQ")  # struct op: helper, a, b, flags
ADJUST_ROOM, CHANGE_HEAD, CHANGE_TAIL, VLAN_PUSH, VLAN_POP, LOAD_RELATIVE, SET_TUNNEL, GET_TUNNEL = range(8)
ENCAP4, ENCAP6, GRE, UDP, ETH, DECAP4, DECAP6 = 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 6, 1 << 7, 1 << 8
ROOM_FLAGS = [0, 0, 0, 1, ENCAP4, ENCAP6, ENCAP4 | GRE, ENCAP6 | UDP, ENCAP4 | GRE | UDP, ENCAP4 | ETH | 14 << 56,
              DECAP4, DECAP6, DECAP4 | DECAP6, 1 << 5, 1 << 9]
CASES = 24  # seeds, of three packets each
KERNEL_CASES = 400  # seeds compared with the kernel (whose runs take microseconds)


def _operation(rng: random.Random) -> bytes:
    helper = rng.randrange(9)  # 8: no operation
    pick = rng.choice
    if helper == ADJUST_ROOM:
        args = (pick([4, 8, 20, 28, 40, 100, 0xFFF, 0x1000, -4, -8, -20, -40]) & 0xFFFF_FFFF,
                pick([0, 1, 1, 2]), pick(ROOM_FLAGS))
    elif helper == CHANGE_HEAD:
        args = (pick([0, 4, 14, 100, 300]), 0, pick([0, 0, 0, 1]))
    elif helper == CHANGE_TAIL:
        args = (pick([0, 14, 34, 60, 100, 200, 500, 3000]), 0, pick([0, 0, 0, 1]))
    elif helper == VLAN_PUSH:
        args = (pick([0x0081, 0xA888, 0x1234]), pick([5, 0xFFF, 0xFFFF]), 0)
    elif helper == LOAD_RELATIVE:
        args = (pick([0, 2, 10, 14, 40, 0xFFFF]), pick([0, 1, 1, 2]), 0)
    elif helper == SET_TUNNEL:
        args = (rng.randrange(1 << 32), rng.randrange(1 << 32), pick([0, 2, 4, 8, 16, 2 | 4 | 8 | 16, 32]))
    elif helper == GET_TUNNEL:
        args = (0, 0, pick([0, 0, 16, 1, 2]))
    else:
        args = (0, 0, 0)
    return OP.pack(helper, *args)


def _packet(rng: random.Random) -> bytes:
    """An Ethernet frame (IPv4, IPv6, 802.1Q over IPv4, QinQ or ARP), some payload, and the four
    operations."""
    ipv4, ipv6 = b"\x08\x00" + bytes([0x45]) + bytes(range(1, 20)), b"\x86\xdd" + bytes([0x60]) + bytes(range(1, 40))
    l3 = rng.choice([ipv4, ipv4, ipv6, b"\x81\x00\x00\x05" + ipv4, b"\x88\xa8\x00\x06\x81\x00\x00\x07" + ipv4,
                     b"\x08\x06" + bytes(28)])
    payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 16, 100])))
    return bytes(range(1, 13)) + l3 + payload + b"".join(_operation(rng) for _ in range(4))


def cases(seeds: range) -> list[bytes]:
    """Three packets a seed."""
    return [_packet(rng) for seed in seeds for rng in [random.Random(seed)] for _ in range(3)]


def outcome(result) -> tuple[int, bytes, bytes]:
    return result.retval & 0xFFFF_FFFF, bytes(result.data_out), bytes(result.ctx_out)


def ops(*operations: tuple[int, int, int, int]) -> bytes:
    """The packet tail holding these operations (helper, a, b, flags), then no-ops."""
    operations += ((8, 0, 0, 0),) * (4 - len(operations))
    return b"".join(OP.pack(*operation) for operation in operations)


IPV4 = bytes(range(1, 13)) + b"\x08\x00\x45" + bytes(range(1, 20)) + bytes(range(100, 160))
VLAN = bytes(range(1, 13)) + b"\x81\x00\x00\x05\x08\x00\x45" + bytes(range(1, 20)) + bytes(range(100, 160))
EINVAL = 0xEA  # -EINVAL's low byte
# Sequences whose outcome Linux 6.18 showed, and the result byte of their last operation:
# - bpf_skb_adjust_room growing past the kernel's 64 bytes of headroom leaves the transport header
#   set (n - 65 bytes from data, for n bytes), below which bpf_skb_change_tail will not trim;
# - bpf_skb_change_head growing past it does not: the floor stays the network header;
# - a VLAN tag around a length field (below 0x600) pops to skb->protocol 802.2 (or 802.3 raw).
KERNEL_SHOWN = {
    "adjust_room 100, then change_tail 34": (IPV4 + ops((0, 100, 1, 0), (2, 34, 0, 0)), EINVAL),
    "adjust_room 100, then change_tail 35": (IPV4 + ops((0, 100, 1, 0), (2, 35, 0, 0)), 0),
    "adjust_room 64, then change_tail 20": (IPV4 + ops((0, 64, 1, 0), (2, 20, 0, 0)), 0),
    "adjust_room 1000, then change_tail 934": (IPV4 + ops((0, 1000, 1, 0), (2, 934, 0, 0)), EINVAL),
    "adjust_room 40 twice, then change_tail 14": (IPV4 + ops((0, 40, 1, 0), (0, 40, 1, 0), (2, 14, 0, 0)), EINVAL),
    "adjust_room 40 twice, then change_tail 15": (IPV4 + ops((0, 40, 1, 0), (0, 40, 1, 0), (2, 15, 0, 0)), 0),
    "change_head 100, then change_tail 113": (IPV4 + ops((1, 100, 0, 0), (2, 113, 0, 0)), EINVAL),
    "change_head 100, then change_tail 114": (IPV4 + ops((1, 100, 0, 0), (2, 114, 0, 0)), 0),
    "adjust_room 100, change_head 10, change_tail 44": (IPV4 + ops((0, 100, 1, 0), (1, 10, 0, 0), (2, 44, 0, 0)),
                                                        EINVAL),
    "adjust_room 100, change_head 10, change_tail 45": (IPV4 + ops((0, 100, 1, 0), (1, 10, 0, 0), (2, 45, 0, 0)), 0),
    "change_head 100, vlan_pop, change_tail 109": (VLAN + ops((1, 100, 0, 0), (4, 0, 0, 0), (2, 109, 0, 0)), EINVAL),
    "change_head 100, vlan_pop, change_tail 110": (VLAN + ops((1, 100, 0, 0), (4, 0, 0, 0), (2, 110, 0, 0)), 0),
}


@pytest.mark.parametrize("name", sorted(KERNEL_SHOWN))
def test_what_the_kernel_showed(program, name):
    data, last = KERNEL_SHOWN[name]
    used = sum(1 for i in range(4) if OP.unpack_from(data, len(data) - 96 + 24 * i)[0] != 8)
    results = {engine: outcome(program.test_run(data, ctx=bytes(192), engine=engine)) for engine in ENGINES}
    assert len(set(results.values())) == 1, results
    assert results["reference"][0] >> 8 * (used - 1) & 0xFF == last


def test_a_tag_around_a_length_field_pops_to_802_2(program):
    frame = bytes(range(1, 13)) + b"\x81\x00\x00\x05\x00\x40" + bytes(60)
    retval, _, ctx_out = outcome(program.test_run(frame + ops((4, 0, 0, 0)), ctx=bytes(192)))
    assert retval == 0 and struct.unpack_from("<I", ctx_out, 48)[0] == 0x0400  # ETH_P_802_2, as read


@pytest.fixture(scope="module")
def program():
    return load(OBJ).programs["skb_ops"]


@pytest.mark.parametrize("seed", range(CASES))
def test_every_engine_agrees(program, seed):
    for data in cases(range(seed, seed + 1)):
        results = {engine: outcome(program.test_run(data, ctx=bytes(192), engine=engine)) for engine in ENGINES}
        assert len(set(results.values())) == 1, results


@pytest.mark.kernel
def test_the_kernel_agrees(program):
    from bpfjit.kernel import KernelRun, kernel_test_runs
    packets = cases(range(KERNEL_CASES)) + [data for data, _ in KERNEL_SHOWN.values()]
    with kernel_test_runs(OBJ, "skb_ops", [KernelRun(data, bytes(192)) for data in packets], read_maps=[]) as kernel:
        differences = []
        for data, theirs in zip(packets, kernel.results):
            ours = outcome(program.test_run(data, ctx=bytes(192), engine="reference"))
            if ours != outcome(theirs):
                differences.append((data[-96:].hex(), ours, outcome(theirs)))
    assert not differences, f"{len(differences)} of {len(packets)} differ; first: {differences[0]}"

"""bpf_fib_lookup against the forwarding table the user fills (bpfjit.fib), on every engine.

The program copies a struct bpf_fib_lookup from the packet to its stack, looks it up, and
writes the struct back into the packet, so each test reads the helper's answer (r0) and every
field it wrote. The expected answers are net/core/filter.c's (bpf_ipv4/ipv6_fib_lookup),
worked out by hand for each table.
"""
from __future__ import annotations

import ipaddress
import random
import struct
import sys

import pytest

import bpfjit
from bpfjit.errors import BPFError
from bpfjit.program import ENGINES, Program
from bpfjit.runtime import sock_helpers
from bpfjit.runtime.kernel_helpers import HELPER_IDS
from bpfjit.runtime.stdhelpers import standard_helpers

SUCCESS, BLACKHOLE, UNREACHABLE, PROHIBIT, NOT_FWDED, NO_NEIGH, FRAG_NEEDED = 0, 1, 2, 3, 4, 7, 8
SKIP_NEIGH = 4
DEV_MAC, GW_MAC, HOST_MAC = bytes.fromhex("020000000002"), bytes.fromhex("0200000000aa"), bytes.fromhex("0200000000bb")

LOOKUP = """
    mov %r6, %r1
    mov %r2, 0
    mov %r3, %r10
    add %r3, -64
    mov %r4, 64
    call {load}
    mov %r1, %r6
    mov %r2, %r10
    add %r2, -64
    mov %r3, 64
    lddw %r4, {flags}
    call {fib}
    mov %r7, %r0
    mov %r1, %r6
    mov %r2, 0
    mov %r3, %r10
    add %r3, -64
    mov %r4, 64
    call {store}
    mov %r0, %r7
    exit
"""


@pytest.fixture(autouse=True)
def table():
    bpfjit.fib.clear()
    yield bpfjit.fib
    bpfjit.fib.clear()


def params(destination: str, ifindex: int = 1, tot_len: int = 0) -> bytes:
    """struct bpf_fib_lookup: family, l4_protocol, sport, dport, tot_len, ifindex, tos, src, dst,
    vlan, smac/dmac (64 bytes)."""
    address = ipaddress.ip_address(destination)
    family = 2 if address.version == 4 else 10
    head = struct.pack("<BBHHHII", family, 17, 0, 0, tot_len, ifindex, 0)
    return head + bytes(16) + address.packed.ljust(16, b"\0") + bytes(16)


def lookup_program(flags: int = 0) -> Program:
    return Program.from_asm(LOOKUP.format(load=HELPER_IDS["xdp_load_bytes"], fib=HELPER_IDS["fib_lookup"],
                                          store=HELPER_IDS["xdp_store_bytes"], flags=flags),
                            prog_type="xdp", helpers=standard_helpers(print))


def lookup(data: bytes, flags: int = 0) -> tuple[int, bytes]:
    """r0 and the struct as the helper left it; the same on every engine (the JIT's and the
    native interpreter's helper is jit/native_fib.py's, the reference's runtime/sock_helpers.py's)."""
    prog = lookup_program(flags)
    results = {engine: prog.test_run(data, engine=engine) for engine in ENGINES}
    answers = {(r.retval, r.data_out) for r in results.values()}
    assert len(answers) == 1, results
    return next(iter(answers))


def fields(out: bytes) -> dict[str, object]:
    tot_len, ifindex, metric = struct.unpack_from("<HII", out, 6)
    family = 4 if out[0] == 2 else 6
    destination = ipaddress.ip_address(out[32:36] if family == 4 else out[32:48])
    return {"mtu_result": tot_len, "ifindex": ifindex, "rt_metric": metric, "dst": str(destination),
            "smac": out[52:58], "dmac": out[58:64]}


def routed(table, kind: str = "unicast") -> None:
    table.add_device(2, mac="02:00:00:00:00:02", mtu=1500)
    table.add_route("10.0.0.0/8", ifindex=2, via="192.0.2.1", metric=20, kind=kind)
    table.add_route("10.1.2.0/24", ifindex=2, metric=5)
    table.add_neighbour("192.0.2.1", mac=GW_MAC)


def test_an_empty_table_forwards_nothing():
    assert lookup(params("10.1.2.3"))[0] == NOT_FWDED


def test_a_route_through_a_gateway_gives_the_device_and_both_macs(table):
    routed(table)
    r0, out = lookup(params("10.200.0.1"))
    assert r0 == SUCCESS
    assert fields(out) == {"mtu_result": 1500, "ifindex": 2, "rt_metric": 20, "dst": "192.0.2.1", "smac": DEV_MAC,
                           "dmac": GW_MAC}  # the destination becomes the next hop, the gateway


def test_the_longest_prefix_wins_and_its_on_link_destination_needs_a_neighbour(table):
    routed(table)
    r0, out = lookup(params("10.1.2.3"))  # the /24, on the link: the destination itself is the next hop
    assert r0 == NO_NEIGH and fields(out)["ifindex"] == 2 and fields(out)["dmac"] == bytes(6)
    assert fields(out)["dst"] == "10.1.2.3"
    r0, out = lookup(params("10.200.0.1"), flags=SKIP_NEIGH)  # through the gateway: it is written even so
    assert r0 == SUCCESS and fields(out)["dst"] == "192.0.2.1"
    table.add_neighbour("10.1.2.3", mac=HOST_MAC)
    r0, out = lookup(params("10.1.2.3"))
    assert r0 == SUCCESS and fields(out)["rt_metric"] == 5 and fields(out)["dmac"] == HOST_MAC


def test_skip_neigh_forwards_without_macs(table):
    routed(table)
    r0, out = lookup(params("10.1.2.3"), flags=SKIP_NEIGH)
    assert r0 == SUCCESS and fields(out)["ifindex"] == 2 and out[52:64] == bytes(12)


def test_a_packet_over_the_mtu_needs_fragmenting(table):
    routed(table)
    r0, out = lookup(params("10.200.0.1", tot_len=9000))
    assert r0 == FRAG_NEEDED and fields(out)["mtu_result"] == 1500 and fields(out)["ifindex"] == 1
    assert fields(out)["dst"] == "10.200.0.1"  # refused before the next hop is known


@pytest.mark.parametrize("kind, answer", [("blackhole", BLACKHOLE), ("unreachable", UNREACHABLE),
                                          ("prohibit", PROHIBIT)])
def test_routes_that_refuse(table, kind, answer):
    table.add_route("10.0.0.0/8", kind=kind)
    assert lookup(params("10.9.9.9"))[0] == answer


def test_ipv6(table):
    table.add_device(3, mac=DEV_MAC, mtu=9000)
    table.add_route("2001:db8::/32", ifindex=3, via="fe80::1")
    table.add_neighbour("fe80::1", mac=GW_MAC)
    r0, out = lookup(params("2001:db8::42"))
    assert r0 == SUCCESS and fields(out) == {"mtu_result": 9000, "ifindex": 3, "rt_metric": 0, "dst": "fe80::1",
                                             "smac": DEV_MAC, "dmac": GW_MAC}
    assert lookup(params("10.0.0.1"))[0] == NOT_FWDED  # no IPv4 route


@pytest.mark.parametrize("call, message", [
    (lambda t: t.add_route("10.0.0.0/33", ifindex=1), "route '10.0.0.0/33'"),
    (lambda t: t.add_route("10.0.0.0/8", ifindex=7), "no device 7"),
    (lambda t: t.add_route("10.0.0.0/8", ifindex=1, via="2001:db8::1"), "is not an IPv4 address"),
    (lambda t: t.add_route("10.0.0.0/8", kind="anycast"), "kind is one of"),
    (lambda t: t.add_device(0, mac=DEV_MAC), "positive 31-bit"),
    (lambda t: t.add_neighbour("10.0.0.1", mac="02:00"), "6 bytes"),
    (lambda t: t.add_device(2, mac=DEV_MAC, mtu=0), "an MTU is 68 to 65535 bytes"),
    (lambda t: t.add_device(2, mac=DEV_MAC, mtu=70000), "an MTU is 68 to 65535 bytes"),
    (lambda t: t.add_route("10.0.0.0/8", ifindex=1, metric=-1), "unsigned 32-bit"),
    (lambda t: t.add_route("10.0.0.0/8", ifindex=1, metric=1 << 32), "unsigned 32-bit"),
    (lambda t: t.add_route("10.0.0.0/8", ifindex=1, kind="blackhole"), "a blackhole route has no device"),
])
def test_bad_table_entries_are_clear_errors(table, call, message):
    with pytest.raises(BPFError, match=message):
        call(table)


def _random_table(table, rng: random.Random) -> list[str]:
    """Devices, routes (both families, nested prefixes, every kind, gateways known or not) and
    neighbours; the addresses a lookup may ask for."""
    for ifindex in range(2, rng.randint(2, 5)):
        table.add_device(ifindex, mac=bytes([2, 0, 0, 0, 0, ifindex]), mtu=rng.choice([1500, 9000, 68]))
    devices = sorted(table.devices)
    hosts = []
    for _ in range(rng.randint(0, 8)):
        version = rng.choice([4, 6])
        bits = 32 if version == 4 else 128
        length = rng.choice([0, 8, 16, 24, bits - 1, bits])
        base = rng.choice([0x0A000000, 0x0A010200, 0xC0A80000]) if version == 4 else 0x20010DB8 << 96
        network = ipaddress.ip_network((base + rng.randrange(1 << 8), length), strict=False)
        kind = rng.choice(["unicast"] * 4 + ["blackhole", "unreachable", "prohibit"])
        gateway = str(ipaddress.ip_address(base + 0x10 + rng.randrange(4))) if rng.random() < 0.5 else None
        if kind == "unicast":
            table.add_route(str(network), ifindex=rng.choice(devices), via=gateway, metric=rng.randrange(3))
        else:
            table.add_route(str(network), kind=kind)
        hosts += [str(network.network_address + rng.randrange(min(network.num_addresses, 1 << 16))),
                  *([gateway] if gateway else [])]
    hosts += ["10.0.0.1", "10.1.2.3", "192.168.0.7", "2001:db8::1", "::1", "8.8.8.8"]
    for host in rng.sample(hosts, k=len(hosts) // 2):
        table.add_neighbour(host, mac=bytes([2, 0, 0, 0, 1, rng.randrange(256)]))
    return hosts


@pytest.mark.parametrize("seed", range(30))
def test_random_tables_and_lookups_agree_on_every_engine(table, seed):
    rng = random.Random(seed)
    hosts = _random_table(table, rng)
    for _ in range(6):
        data = bytearray(params(rng.choice(hosts), ifindex=rng.choice([*table.devices, 9]),
                                tot_len=rng.choice([0, 100, 1500, 1501, 9000])))
        if rng.random() < 0.1:
            data[0] = rng.choice([0, 1, 3])  # no address family the helper takes: -EAFNOSUPPORT
        data[52:64] = bytes(rng.randrange(256) for _ in range(12))  # macs the helper may leave
        lookup(bytes(data), flags=rng.choice([0, 0, SKIP_NEIGH, 1, 2 | 8, 0x40, 1 << 40]))


@pytest.mark.parametrize("engine", ["jit", "interp"])
def test_a_verified_lookup_enters_no_python(table, engine):
    routed(table)
    prog = lookup_program()
    calls: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == sock_helpers.__file__:
            calls.append(frame.f_code.co_name)

    prog.prepare(engine)
    sys.setprofile(profile)
    try:
        results = [prog.test_run(params(destination), engine=engine).retval
                   for destination in ("10.200.0.1", "10.1.2.3", "11.0.0.1")]
    finally:
        sys.setprofile(None)
    assert results == [SUCCESS, NO_NEIGH, NOT_FWDED] and calls == []

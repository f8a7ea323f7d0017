"""The example programs in the shapes people write (examples/*.c: a socket filter, an XDP router on
a DEVMAP, a prefix firewall on an LPM trie; bench/progs: an IPIP load balancer's encapsulation and
a tc NAT), each run on every engine against verdicts worked out by hand from its source, and,
with ``-m kernel``, against the Linux kernel's BPF_PROG_TEST_RUN on the same object, packets and
map entries (return value, packet out, and the maps the program writes).
"""
from __future__ import annotations

import ctypes
import pathlib
import struct

import pytest

import bpfjit
from bpfjit.bench.cases import service_frame
from bpfjit.packets import arp_frame, tcp4_frame, udp4_frame, udp6_frame
from bpfjit.program import ENGINES

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES, BENCH = REPO / "examples", REPO / "bench" / "progs"
XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 1, 2, 3, 4
IPPROTO_TCP, IPPROTO_UDP = 6, 17

SOCKET_FRAMES = {"dns": udp4_frame(5353, 53, b"q" * 30), "https": tcp4_frame(40000, 443, b"x" * 200),
                 "http": tcp4_frame(40000, 80, b"x"), "arp": arp_frame(), "dns over IPv6": udp6_frame(1, 53, b"q")}
# sockfilter.c: IPv4 TCP or UDP to port 53 or 443 keeps its first 96 bytes; the rest is dropped (0).
SOCKET_VERDICTS = {"dns": 96, "https": 96, "http": 0, "arp": 0, "dns over IPv6": 0}


def to(address: str) -> bytes:
    return udp4_frame(1000, 2000, b"payload", dst=bytes(map(int, address.split("."))))


def from_(address: str) -> bytes:
    return udp4_frame(1000, 2000, b"payload", src=bytes(map(int, address.split("."))))


def lpm_key(prefix: int, address: str) -> bytes:
    return struct.pack("<I", prefix) + bytes(map(int, address.split(".")))


# name -> (object, program, frames, map entries written before the runs, the entries compared
# afterwards: map -> its keys)
CASES = {
    "socket filter": (EXAMPLES / "sockfilter.o", "dns_and_https", list(SOCKET_FRAMES.values()), {},
                      {"kept": [struct.pack("<I", IPPROTO_TCP), struct.pack("<I", IPPROTO_UDP)]}),
    # router.c: an IPv4 frame goes to the DEVMAP port its destination's last three bits pick; a port
    # with no device drops it; anything else passes. Port 0 holds ifindex 1 (lo, which every host has).
    "router": (EXAMPLES / "router.o", "route", [to("10.0.0.8"), to("10.0.0.3"), arp_frame()],
               {"tx_ports": [(struct.pack("<I", 0), struct.pack("<I", 1))]}, {}),
    # lpm_firewall.c: a source inside a blocked prefix is dropped and counted on the longest match.
    "lpm firewall": (EXAMPLES / "lpm_firewall.o", "firewall",
                     [from_("10.1.2.3"), from_("10.9.9.9"), from_("192.0.2.1"), arp_frame()],
                     {"blocked": [(lpm_key(8, "10.0.0.0"), bytes(8)), (lpm_key(24, "10.1.2.0"), bytes(8))]},
                     {"blocked": [lpm_key(8, "10.0.0.0"), lpm_key(24, "10.1.2.0")]}),
    "ipip load balancer": (BENCH / "xdp_ipip_encap.bpf.o", "xdp_ipip_encap", [service_frame(), service_frame()],
                           {}, {}),
    "tc nat": (BENCH / "tc_dnat.bpf.o", "tc_dnat", [service_frame(), service_frame()], {}, {}),
}


def bpfjit_runs(case: str, engine: str) -> tuple[list[tuple[int, bytes]], dict[str, list]]:
    """Each frame's (retval, packet out) on one engine, from one load (maps carry over, as for an
    attached program), and the compared entries afterwards as (key, value) bytes."""
    path, name, frames, entries, compared = CASES[case]
    obj = bpfjit.load(path, programs=[name])
    for map_name, pairs in entries.items():
        for key, value in pairs:
            obj.maps[map_name].update_elem(key, value)
    program = obj.programs[name]
    results = [(r.retval, r.data_out) for r in (program.test_run(frame, engine=engine) for frame in frames)]
    found = {}
    for map_name, keys in compared.items():
        m = obj.maps[map_name]
        found[map_name] = [(key, ctypes.string_at(m.lookup(key), m.value_size)) for key in keys]
    return results, found


def test_the_socket_filter_keeps_dns_and_https_on_every_engine(engine):
    obj = bpfjit.load(EXAMPLES / "sockfilter.o")
    program = obj.programs["dns_and_https"]
    verdicts = {name: program.test_run(frame, engine=engine).retval for name, frame in SOCKET_FRAMES.items()}
    assert verdicts == SOCKET_VERDICTS
    assert (obj.maps["kept"][IPPROTO_UDP], obj.maps["kept"][IPPROTO_TCP]) == (1, 1)


def test_every_engine_gives_the_same_runs():
    for case in CASES:
        runs = {engine: bpfjit_runs(case, engine) for engine in ENGINES}
        assert runs["jit"] == runs["interp"] == runs["reference"], case


def test_the_hand_worked_verdicts():
    verdicts = {case: [retval for retval, _ in bpfjit_runs(case, "jit")[0]] for case in CASES}
    assert verdicts == {"socket filter": list(SOCKET_VERDICTS.values()),
                        "router": [XDP_REDIRECT, XDP_DROP, XDP_PASS],
                        "lpm firewall": [XDP_DROP, XDP_DROP, XDP_PASS, XDP_PASS],
                        "ipip load balancer": [XDP_TX, XDP_TX], "tc nat": [0, 0]}


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_engine")
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_kernel_gives_the_same_runs(case):
    from bpfjit.kernel import KernelRun, kernel_test_runs
    path, name, frames, entries, compared = CASES[case]
    kernel = kernel_test_runs(path, name, [KernelRun(frame) for frame in frames], map_updates=entries,
                              read_maps=list(compared))
    got = [(result.retval, result.data_out) for result in kernel.results]
    mine, maps = bpfjit_runs(case, "jit")
    assert got == mine
    assert {m: [(key, dict(kernel.maps[m])[key]) for key in keys] for m, keys in compared.items()} == maps

"""The packet benchmarks: five XDP programs, their inputs and their expected results in plain Python.

Each program has one C source in progs/ (built for BPF with bpf_xdp.h by progs/build.sh, and for
the host with native_xdp.h by native.py):

``xdp_parse``          Ethernet (+ VLAN) -> IPv4 / IPv6 (+ extension headers) -> ICMP / UDP / TCP,
                       and a small rule set (ICMP echo XDP_TX, DNS from blocked nets and telnet
                       XDP_DROP, else XDP_PASS)
``checksum``           verifies the IPv4 header checksum and the UDP checksum (a 1480-byte datagram)
``hash_counter``       per-5-tuple packet/byte counters in a BPF_MAP_TYPE_HASH
``global_counter``     packet/byte/EtherType counters in .bss globals
``xdp_static_branch``  a load balancer's forwarding step (parse, jhash of the flow, MAC rewrite)
                       with debug counters behind a static key that stays off

The frames are built byte by byte, with their checksums, by bpfjit/packets.py (shared with the
tests), and every expected verdict and state comes from an implementation of each program's rules
written here, independently of the C. Inputs are fixed (payloads from random.Random(seed)), so
every run times the same work.
``samples(name)`` gives, per program, inputs that reach each of its verdicts, for the tests.
"""
from __future__ import annotations

import random
import struct
from typing import Any

from bpfjit.packets import (ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, HOST6, IPPROTO_DSTOPTS,
                            IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING,
                            IPPROTO_TCP, IPPROTO_UDP, MAC_DST, MAC_SRC, arp_frame, dns_query, ethernet, icmp_echo,
                            inet_sum, ipv4, ipv6, ipv6_fragment_header, ipv6_option_header, pseudo_header, tcp,
                            tcp4_frame, tcp6_frame, udp, udp4_frame, udp6_frame)

from .cases import Case

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
BLOCKED4 = bytes([198, 51, 100, 7])       # in 198.51.100.0/24, blocked by xdp_parse
BLOCKED6 = bytes.fromhex("20010db80bad00010000000000000053")  # in 2001:db8:bad::/48


def payload(size: int, seed: int) -> bytes:
    """size random bytes, the same for every run of the bench (a fixed seed)."""
    return random.Random(seed).randbytes(size)


# --- what the programs must do, in plain Python ----------------------------------------------------

def _be16(frame: bytes, offset: int) -> int:
    return int.from_bytes(frame[offset:offset + 2], "big")


def l3_offset(frame: bytes) -> tuple[int, int] | None:
    """(EtherType, offset of the L3 header) after at most one VLAN tag; None if truncated."""
    if len(frame) < 14:
        return None
    ethertype, offset = _be16(frame, 12), 14
    if ethertype in (ETH_P_8021Q, ETH_P_8021AD):
        if len(frame) < 18:
            return None
        ethertype, offset = _be16(frame, 16), 18
    return ethertype, offset


def xdp_parse_expected(frame: bytes) -> int:
    """xdp_parse's rules (see progs/xdp_parse.c), applied to the frame."""
    l3 = l3_offset(frame)
    if l3 is None:
        return XDP_DROP
    ethertype, off = l3
    if ethertype == ETH_P_IP:
        if len(frame) < off + 20 or frame[off] >> 4 != 4 or frame[off] & 15 < 5:
            return XDP_DROP
        l4 = off + (frame[off] & 15) * 4
        if l4 > len(frame):
            return XDP_DROP
        if _be16(frame, off + 6) & 0x1FFF:
            return XDP_PASS
        proto, icmp, echo = frame[off + 9], IPPROTO_ICMP, 8
        blocked = frame[off + 12:off + 15] == BLOCKED4[:3]
    elif ethertype == ETH_P_IPV6:
        if len(frame) < off + 40:
            return XDP_DROP
        proto, l4, icmp, echo = frame[off + 6], off + 40, IPPROTO_ICMPV6, 128
        blocked = frame[off + 8:off + 14] == BLOCKED6[:6]
        for _ in range(4):
            if proto in (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS):
                if len(frame) < l4 + 2:
                    return XDP_DROP
                proto, l4 = frame[l4], l4 + 8 * (frame[l4 + 1] + 1)
            elif proto == IPPROTO_FRAGMENT:
                if len(frame) < l4 + 8:
                    return XDP_DROP
                if _be16(frame, l4 + 2) >> 3:
                    return XDP_PASS
                proto, l4 = frame[l4], l4 + 8
            else:
                break
    else:
        return XDP_PASS
    need = {icmp: 4, IPPROTO_UDP: 8, IPPROTO_TCP: 20}.get(proto, 0)
    if len(frame) < l4 + need:
        return XDP_DROP
    if proto == icmp:
        return XDP_TX if frame[l4] == echo else XDP_PASS
    dport = _be16(frame, l4 + 2) if need else None
    if proto == IPPROTO_UDP and blocked and dport == 53:
        return XDP_DROP
    if proto == IPPROTO_TCP and dport == 23:
        return XDP_DROP
    return XDP_PASS


def checksum_expected(frame: bytes) -> int:
    """checksum's rules (see progs/checksum.c), applied to the frame."""
    if len(frame) < 14:
        return XDP_DROP
    if _be16(frame, 12) != ETH_P_IP:
        return XDP_PASS
    if len(frame) < 34 or frame[14] >> 4 != 4 or frame[14] & 15 < 5:
        return XDP_DROP
    header_len = (frame[14] & 15) * 4
    if len(frame) < 14 + header_len or inet_sum(frame[14:14 + header_len]) != 0xFFFF:
        return XDP_DROP
    if frame[23] != IPPROTO_UDP:
        return XDP_PASS
    start = 14 + header_len
    if len(frame) < start + 8:
        return XDP_DROP
    length = _be16(frame, start + 4)
    if length < 8 or header_len + length > _be16(frame, 16):
        return XDP_DROP
    if _be16(frame, start + 6) == 0 or length > 1480:
        return XDP_PASS
    if len(frame) < start + length:
        return XDP_DROP
    summed = pseudo_header(frame[26:30], frame[30:34], IPPROTO_UDP, length) + frame[start:start + length]
    return XDP_PASS if inet_sum(summed) == 0xFFFF else XDP_DROP


def flow_key(frame: bytes) -> dict[str, Any] | None:
    """hash_counter's map key for the frame (BTF-decoded: fields as the host reads their bytes), or
    None when the frame is not counted."""
    if len(frame) < 34 or _be16(frame, 12) != ETH_P_IP or frame[14] & 15 < 5:
        return None
    proto, l4 = frame[23], 14 + (frame[14] & 15) * 4
    ports = (0, 0)
    if proto in (IPPROTO_TCP, IPPROTO_UDP):
        if len(frame) < l4 + 4:
            return None
        ports = struct.unpack_from("<HH", frame, l4)
    saddr, daddr = struct.unpack_from("<II", frame, 26)
    return {"saddr": saddr, "daddr": daddr, "sport": ports[0], "dport": ports[1], "proto": proto,
            "pad": [0, 0, 0]}


def hash_counter_expected(frame: bytes) -> int:
    if len(frame) < 14:
        return XDP_DROP
    if _be16(frame, 12) != ETH_P_IP:
        return XDP_PASS
    return XDP_PASS if flow_key(frame) is not None else XDP_DROP


def hash_counter_state(frames: list[bytes]) -> dict[tuple, dict[str, int]]:
    """The flow_counts map after one run on each of frames: key (as a tuple of its items) -> value."""
    state: dict[tuple, dict[str, int]] = {}
    for frame in frames:
        key = flow_key(frame)
        if key is not None:
            value = state.setdefault(_key_tuple(key), {"packets": 0, "bytes": 0})
            value["packets"] += 1
            value["bytes"] += len(frame)
    return state


def _key_tuple(key: dict[str, Any]) -> tuple:
    return tuple((name, tuple(v) if isinstance(v, list) else v) for name, v in sorted(key.items()))


def read_hash_counter_state(obj: Any) -> dict[tuple, dict[str, int]]:
    return {_key_tuple(key): dict(value) for key, value in obj.maps["flow_counts"].items()}


def global_counter_expected(frame: bytes) -> int:
    return XDP_DROP if l3_offset(frame) is None else XDP_PASS


def global_counter_state(frames: list[bytes]) -> dict[str, int]:
    """The .bss counters after one run on each of frames."""
    state = dict.fromkeys(("rx_packets", "rx_bytes", "rx_ipv4", "rx_ipv6", "rx_other"), 0)
    for frame in frames:
        state["rx_packets"] += 1
        state["rx_bytes"] += len(frame)
        l3 = l3_offset(frame)
        if l3 is not None:
            state[{ETH_P_IP: "rx_ipv4", ETH_P_IPV6: "rx_ipv6"}.get(l3[0], "rx_other")] += 1
    return state


def jhash_3words(a: int, b: int, c: int, initval: int) -> int:
    """linux/jhash.h's jhash_3words."""
    mask = 0xFFFFFFFF

    def rol(word: int, shift: int) -> int:
        return (word << shift | word >> (32 - shift)) & mask

    initval = (initval + 0xDEADBEEF + 12) & mask
    a, b, c = (a + initval) & mask, (b + initval) & mask, (c + initval) & mask
    for x, y, _, shift in (("c", "b", "c", 14), ("a", "c", "a", 11), ("b", "a", "b", 25),
                           ("c", "b", "c", 16), ("a", "c", "a", 4), ("b", "a", "b", 14),
                           ("c", "b", "c", 24)):
        regs = {"a": a, "b": b, "c": c}
        regs[x] = ((regs[x] ^ regs[y]) - rol(regs[y], shift)) & mask
        a, b, c = regs["a"], regs["b"], regs["c"]
    return c


def backend_mac(index: int) -> bytes:
    return bytes([0x02, 0, 0, 0, 0x01, index])


def lb_flow(frame: bytes) -> tuple[str, int] | int:
    """xdp_static_branch's flow: ("ipv4" | "ipv6", backend) or, without a flow, the verdict."""
    l3 = l3_offset(frame)
    if l3 is None:
        return XDP_DROP
    ethertype, off = l3
    if ethertype == ETH_P_IP:
        if len(frame) < off + 20 or frame[off] & 15 < 5:
            return XDP_DROP
        if _be16(frame, off + 6) & 0x1FFF:
            return XDP_PASS
        version, proto, l4 = "ipv4", frame[off + 9], off + (frame[off] & 15) * 4
        src, dst = struct.unpack_from("<II", frame, off + 12)
    elif ethertype == ETH_P_IPV6:
        if len(frame) < off + 40:
            return XDP_DROP
        version, proto, l4 = "ipv6", frame[off + 6], off + 40
        words = struct.unpack_from("<8I", frame, off + 8)
        src = words[0] ^ words[1] ^ words[2] ^ words[3]
        dst = words[4] ^ words[5] ^ words[6] ^ words[7]
    else:
        return XDP_PASS
    if proto not in (IPPROTO_TCP, IPPROTO_UDP):
        return XDP_PASS
    if len(frame) < l4 + 4:
        return XDP_DROP
    ports = int.from_bytes(frame[l4:l4 + 4], "little")
    return version, jhash_3words(src, dst, ports, proto) % 4


def xdp_static_branch_expected(frame: bytes) -> int:
    flow = lb_flow(frame)
    if isinstance(flow, int):
        return flow
    return XDP_PASS if flow[1] == 3 else XDP_TX


def xdp_static_branch_output(frame: bytes) -> bytes:
    """The frame after xdp_static_branch: MACs rewritten for a remote backend, else unchanged."""
    flow = lb_flow(frame)
    if isinstance(flow, int) or flow[1] == 3:
        return frame
    return backend_mac(flow[1]) + frame[0:6] + frame[12:]


def lb_debug_state(frames: list[bytes]) -> dict[str, Any]:
    """xdp_static_branch's debug counters after one run on each of frames with lb_debug enabled."""
    state: dict[str, Any] = {"lb_debug_ipv4": 0, "lb_debug_ipv6": 0, "lb_debug_backend": [0] * 4,
                             "lb_debug_no_flow": 0}
    for frame in frames:
        flow = lb_flow(frame)
        if flow == XDP_PASS:
            state["lb_debug_no_flow"] += 1
        elif isinstance(flow, tuple):
            state[f"lb_debug_{flow[0]}"] += 1
            state["lb_debug_backend"][flow[1]] += 1
    return state


# --- the timing inputs and the cases ----------------------------------------------------------------

def xdp_parse_data() -> bytes:
    """A DNS query over VLAN 100 from a blocked resolver: every layer parsed, the drop rule hit."""
    return udp4_frame(53000, 53, dns_query(), src=BLOCKED4, vlan=100)


def checksum_data() -> bytes:
    """A full-size UDP datagram (1472 bytes of payload, a 1514-byte frame) with good checksums."""
    return udp4_frame(40000, 9000, payload(1472, seed=11))


def hash_counter_data() -> bytes:
    return tcp4_frame(51234, 443, payload(100, seed=12))


def global_counter_data() -> bytes:
    return udp4_frame(5353, 5353, payload(80, seed=13))


def xdp_static_branch_data() -> bytes:
    """A TCP flow the hash sends to remote backend 2 (XDP_TX, MACs rewritten)."""
    return tcp4_frame(40001, 80, payload(200, seed=14))


def _check_hash_counter(obj: Any, runs: int) -> None:
    frame = hash_counter_data()
    got = read_hash_counter_state(obj)
    want = hash_counter_state([frame] * runs)
    assert got == want, f"flow_counts after {runs} runs: {got}, expected {want}"


def _check_global_counter(obj: Any, runs: int) -> None:
    got = {name: obj.bss[name] for name in ("rx_packets", "rx_bytes", "rx_ipv4", "rx_ipv6", "rx_other")}
    want = global_counter_state([global_counter_data()] * runs)
    assert got == want, f".bss after {runs} runs: {got}, expected {want}"


def _check_lb_debug_off(obj: Any, runs: int) -> None:
    got = {name: obj.bss[name] for name in ("lb_debug_ipv4", "lb_debug_ipv6", "lb_debug_backend",
                                            "lb_debug_no_flow")}
    want = {"lb_debug_ipv4": 0, "lb_debug_ipv6": 0, "lb_debug_backend": [0] * 4, "lb_debug_no_flow": 0}
    assert got == want, f"lb_debug is off, yet after {runs} runs the debug counters are {got}"


def _case(name: str, data, expected, check_state=None) -> Case:
    return Case(name, name, name, data, expected, 200_000, data, prelude="native_xdp.h", group="packet",
                check_state=check_state)


PACKET_CASES = [
    _case("xdp_parse", xdp_parse_data, xdp_parse_expected),
    _case("checksum", checksum_data, checksum_expected),
    _case("hash_counter", hash_counter_data, hash_counter_expected, _check_hash_counter),
    _case("global_counter", global_counter_data, global_counter_expected, _check_global_counter),
    _case("xdp_static_branch", xdp_static_branch_data, xdp_static_branch_expected, _check_lb_debug_off),
]


def samples(name: str) -> list[tuple[str, bytes]]:
    """(description, frame) pairs for one packet program: inputs reaching each of its verdicts."""
    dns = dns_query()
    blocked_v6 = ipv6(IPPROTO_UDP, udp(53001, 53, dns, src=BLOCKED6, dst=HOST6), src=BLOCKED6)
    common = [
        ("timing input", next(c for c in PACKET_CASES if c.name == name).data()),
        ("ARP", arp_frame()),
        ("Ethernet header only, no EtherType payload", ethernet(0x88B5, b"", pad=False)),
        ("IPv4 truncated in its header", ethernet(ETH_P_IP, ipv4(IPPROTO_UDP, udp(1, 2, b""))[:16], pad=False)),
        ("IPv4 ihl 4", ethernet(ETH_P_IP, ipv4(IPPROTO_UDP, udp(1000, 2000, b"x" * 20), ihl=4))),
    ]
    if name == "xdp_parse":
        return common + [
            ("DNS from a blocked /24, untagged", udp4_frame(53000, 53, dns, src=BLOCKED4)),
            ("DNS from an allowed source", udp4_frame(53000, 53, dns, vlan=100)),
            ("UDP from the blocked /24 to another port", udp4_frame(53000, 123, b"ntp", src=BLOCKED4)),
            ("DNS from the blocked IPv6 /48", ethernet(ETH_P_IPV6, blocked_v6)),
            ("DNS from an allowed IPv6 source", udp6_frame(53001, 53, dns, vlan=7)),
            ("ICMP echo request", ethernet(ETH_P_IP, ipv4(IPPROTO_ICMP, icmp_echo()))),
            ("ICMP echo reply", ethernet(ETH_P_IP, ipv4(IPPROTO_ICMP, icmp_echo(False)))),
            ("ICMPv6 echo request (802.1ad tag)", ethernet(ETH_P_IPV6, ipv6(IPPROTO_ICMPV6, icmp_echo(v6=True)),
                                                          vlan=5, outer=ETH_P_8021AD)),
            ("TCP to telnet", tcp4_frame(50000, 23, flags=0x02)),
            ("TCP to telnet over IPv6", tcp6_frame(50000, 23)),
            ("TCP to https", tcp4_frame(50000, 443, b"hello")),
            ("IPv4 with options, to telnet", ethernet(ETH_P_IP, ipv4(IPPROTO_TCP, tcp(50000, 23),
                                                                     options=bytes([1, 1, 1, 0])))),
            ("IPv4 non-first fragment to telnet", ethernet(ETH_P_IP, ipv4(IPPROTO_TCP, tcp(50000, 23),
                                                                          frag_off=0x2000 | 185))),
            ("IPv4 version 6", ethernet(ETH_P_IP, ipv4(IPPROTO_UDP, udp(1, 53, dns), version=6))),
            ("TCP header cut short", ethernet(ETH_P_IP, ipv4(IPPROTO_TCP, tcp(50000, 23)[:12]), pad=False)),
            ("IPv6 hop-by-hop + dest-opts, telnet", ethernet(ETH_P_IPV6, ipv6(IPPROTO_HOPOPTS,
                ipv6_option_header(IPPROTO_DSTOPTS) + ipv6_option_header(IPPROTO_TCP, 1) + tcp(50000, 23)))),
            ("IPv6 first fragment, blocked DNS", ethernet(ETH_P_IPV6, ipv6(IPPROTO_FRAGMENT,
                ipv6_fragment_header(IPPROTO_UDP, 0, True) + udp(53001, 53, dns, src=BLOCKED6), src=BLOCKED6))),
            ("IPv6 later fragment", ethernet(ETH_P_IPV6, ipv6(IPPROTO_FRAGMENT,
                ipv6_fragment_header(IPPROTO_TCP, 100) + tcp(50000, 23)))),
            ("IPv6 options past the frame", ethernet(ETH_P_IPV6, ipv6(IPPROTO_ROUTING,
                ipv6_option_header(IPPROTO_UDP, 30)[:8]), pad=False)),
        ]
    if name == "checksum":
        good = udp4_frame(40000, 9000, payload(99, seed=3))
        ip_bad = udp4_frame(40000, 9000, payload(64, seed=3), good_csum=False)
        corrupted = bytearray(checksum_data())
        corrupted[700] ^= 0x20
        return common + [
            ("odd-length datagram", good),
            ("odd-length datagram, last byte corrupted", good[:-1] + bytes([good[-1] ^ 1])),
            ("payload byte flipped", bytes(corrupted)),
            ("bad UDP checksum", udp4_frame(40000, 9000, payload(200, seed=4), csum="bad")),
            ("no UDP checksum", udp4_frame(40000, 9000, payload(200, seed=4), csum="none")),
            ("bad IPv4 header checksum", ip_bad),
            ("IPv4 options, good", udp4_frame(1, 2, payload(30, seed=5), options=bytes([148, 4, 0, 0]))),
            ("IPv4 options corrupted", bytes(b ^ 0x10 if i == 36 else b for i, b in enumerate(
                udp4_frame(1, 2, payload(30, seed=5), options=bytes([148, 4, 0, 0]))))),
            ("TCP, good header", tcp4_frame(1000, 80, b"GET /")),
            ("UDP length beyond the IPv4 length", udp4_frame(1, 2, payload(40, seed=6), total_length=40)),
            ("UDP datagram cut short", udp4_frame(1, 2, payload(300, seed=7))[:200]),
            ("UDP length 7", ethernet(ETH_P_IP, ipv4(IPPROTO_UDP, udp(1, 2, b"abcd", length=7)))),
            ("jumbo datagram (not checked)", udp4_frame(1, 2, payload(1600, seed=8), csum="bad")),
            ("IPv6 (not checked)", udp6_frame(1, 2, b"x")),
        ]
    if name == "hash_counter":
        return common + [
            ("UDP flow", udp4_frame(5353, 5353, payload(40, seed=1))),
            ("ICMP (no ports)", ethernet(ETH_P_IP, ipv4(IPPROTO_ICMP, icmp_echo()))),
            ("TCP ports cut off", ethernet(ETH_P_IP, ipv4(IPPROTO_TCP, tcp(1, 2)[:2]), pad=False)),
            ("IPv6 (not counted)", tcp6_frame(1, 2)),
        ]
    if name == "global_counter":
        return common + [
            ("IPv6", udp6_frame(1, 2, b"x")),
            ("IPv6 over VLAN", udp6_frame(1, 2, b"x", vlan=3)),
            ("IPv4 over 802.1ad", ethernet(ETH_P_IP, ipv4(IPPROTO_UDP, udp(1, 2, b"")), vlan=3,
                                           outer=ETH_P_8021AD)),
            ("VLAN tag cut short", (MAC_DST + MAC_SRC + bytes.fromhex("81000064"))),
        ]
    if name == "xdp_static_branch":
        flows = [(f"TCP flow {port}", tcp4_frame(port, 80, b"x" * (port % 7))) for port in range(40000, 40012)]
        return common + flows + [
            ("UDP flow over VLAN", udp4_frame(4000, 53, dns, vlan=9)),
            ("IPv6 TCP flow", tcp6_frame(40000, 443)),
            ("IPv6 UDP flow", udp6_frame(40001, 443, b"quic")),
            ("ICMP (no flow)", ethernet(ETH_P_IP, ipv4(IPPROTO_ICMP, icmp_echo()))),
            ("IPv4 later fragment", ethernet(ETH_P_IP, ipv4(IPPROTO_UDP, b"x" * 16, frag_off=100))),
            ("UDP ports cut off", ethernet(ETH_P_IP, ipv4(IPPROTO_UDP, b"\x01\x02"), pad=False)),
        ]
    raise KeyError(name)

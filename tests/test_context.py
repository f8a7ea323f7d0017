"""Program types and contexts: xdp_md / __sk_buff accesses rewritten to native contexts."""
from __future__ import annotations

import pathlib
import struct

import pytest
from bpfjit.runtime import elf
from bpfjit.runtime.context import program_type_for_section
from bpfjit.runtime.environment import Environment, func_token

from bpfjit import packets
from bpfjit.errors import BPFError, ProgramError, VerifierError
from bpfjit.program import Program

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
XDP_DROP, XDP_PASS = 1, 2


def udp_packet(dport: int = 53, corrupt_checksum: bool = False) -> bytes:
    return packets.udp4_frame(40000, dport, b"data", good_csum=not corrupt_checksum)


@pytest.fixture(scope="module")
def xdp_prog() -> Program:
    linked = elf.read_object(PROGS / "xdp_parse.o").programs[0]
    tokens = {func_token(n): start for n, start in linked.function_tokens.items()}
    return Program(list(linked.insns), Environment(function_tokens=tokens), linked.name, "xdp")


@pytest.mark.parametrize("packet, verdict", [
    (udp_packet(), XDP_PASS),  # valid IPv4/UDP
    (udp_packet(dport=9), XDP_DROP),  # the discard port
    (udp_packet(corrupt_checksum=True), XDP_DROP),  # bad IPv4 header checksum
    (udp_packet()[:30], XDP_DROP),  # shorter than the IPv4 header it announces
    (packets.ethernet(packets.ETH_P_IPV6, bytes(40)), XDP_PASS),  # IPv6: not parsed, passed
])
def test_xdp_parser_verdicts(xdp_prog, engine, packet, verdict):
    result = xdp_prog.test_run(packet, engine=engine)
    assert result.retval == verdict
    assert result.data_out == packet
    assert result.ctx_out is not None and struct.unpack_from("<II", result.ctx_out) == (0, len(packet))


def test_xdp_rejects_frames_shorter_than_ethernet(xdp_prog):
    with pytest.raises(BPFError, match="at least 14 bytes"):
        xdp_prog.test_run(b"\0" * 13)


def test_xdp_ctx_input_fields(engine):
    # r0 = ctx->ingress_ifindex + ctx->rx_queue_index
    prog = Program.from_asm("ldxw %r0, [%r1+12]\nldxw %r2, [%r1+16]\nadd %r0, %r2\nexit", prog_type="xdp")
    # The kernel's test run knows the loopback device (ifindex 1) and its queue 0 only.
    ctx = struct.pack("<6I", 0, 20, 0, 1, 0, 0)
    assert prog.test_run(bytes(20), ctx=ctx, engine=engine).retval == 1
    with pytest.raises(BPFError, match="xdp_md.data_meta must be 0"):
        prog.test_run(bytes(20), ctx=struct.pack("<6I", 0, 20, 1, 0, 0, 0), engine=engine)
    with pytest.raises(BPFError, match="ENODEV"):
        prog.test_run(bytes(20), ctx=struct.pack("<6I", 0, 20, 0, 7, 0, 0), engine=engine)


def test_packet_writes_through_data_pointer(engine):
    # data = ctx->data (rewritten to a 64-bit load); if (data + 1 <= data_end) data[0] = 0xab;
    # return data_end - data
    prog = Program.from_asm("""
        ldxw %r2, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r4, %r2
        add %r4, 1
        jgt %r4, %r3, +1
        stb [%r2+0], 0xab
        mov %r0, %r3
        sub %r0, %r2
        exit
    """, prog_type="xdp")
    result = prog.test_run(bytes(20), engine=engine)
    assert result.retval == 20 and result.data_out == b"\xab" + bytes(19)


def test_ctx_spilled_to_stack_and_copied(engine):
    # The ctx pointer goes through r6 and a stack slot before the load.
    prog = Program.from_asm("""
        mov %r6, %r1
        stxdw [%r10-8], %r6
        mov %r1, 0
        ldxdw %r7, [%r10-8]
        ldxw %r2, [%r7+4]
        ldxw %r3, [%r7+0]
        mov %r0, %r2
        sub %r0, %r3
        exit
    """, prog_type="xdp")
    assert prog.test_run(bytes(33), engine=engine).retval == 33


def test_skb_fields_read_and_write(engine):
    # r0 = skb->len + skb->cb[1]; skb->cb[2] = 5 (a socket filter may write only cb, as in the kernel)
    prog = Program.from_asm("""
        ldxw %r0, [%r1+0]
        ldxw %r2, [%r1+52]
        add %r0, %r2
        stw [%r1+56], 5
        exit
    """, prog_type="socket")
    ctx = bytearray(192)
    struct.pack_into("<I", ctx, 52, 100)
    result = prog.test_run(bytes(60), ctx=bytes(ctx), engine=engine)
    # A socket filter sees the packet from the network header on: len = 60 - 14 Ethernet bytes.
    assert result.retval == 46 + 100
    assert struct.unpack_from("<I", result.ctx_out, 56)[0] == 5  # cb[2] written back
    assert struct.unpack_from("<I", result.ctx_out, 0)[0] == 0  # len is not copied back (convert_skb_to___skb)


def test_skb_program_sees_the_network_header_and_gets_protocol(engine):
    # r0 = skb->protocol (the big-endian ethertype as a host u32) | first byte of data << 16.
    # cgroup_skb programs, like socket filters, start at the network header, and may read data
    # (after checking it against data_end, at offset 80).
    prog = Program.from_asm("""
        ldxw %r0, [%r1+16]
        ldxw %r2, [%r1+76]
        ldxw %r4, [%r1+80]
        mov %r5, %r2
        add %r5, 1
        jgt %r5, %r4, +3
        ldxb %r3, [%r2+0]
        lsh %r3, 16
        or %r0, %r3
        exit
    """, prog_type="cgroup_skb")
    frame = packets.ethernet(packets.ETH_P_IP, b"\x45" + bytes(30))
    result = prog.test_run(frame, engine=engine)
    assert result.retval == 0x0008 | 0x45 << 16
    assert result.data_out == bytes(14) + frame[14:]  # the Ethernet header comes back zeroed


CTX_OR_STACK = """
    ldxw %r3, [%r1+12]
    mov %r2, %r10
    add %r2, -8
    stdw [%r2+0], 0
    jeq %r3, 0, +1
    mov %r2, %r1
    ldxw %r0, [%r2+0]
    exit
"""


@pytest.mark.parametrize("text, verified, unverified", [
    ("ldxw %r0, [%r1+24]\nexit", *["insn 0: invalid bpf_context access off=24 size=4"] * 2),
    ("ldxh %r0, [%r1+0]\nexit", *["insn 0: invalid bpf_context access off=0 size=2"] * 2),  # part of data
    ("stw [%r1+12], 1\nmov %r0, 0\nexit", *["insn 0: invalid bpf_context access off=12 size=4"] * 2),  # read-only
    # The verifier refuses one load through two kinds of pointer; unverified, the ctx rewrite does.
    (CTX_OR_STACK, "insn 6: same insn cannot be used with different pointers",
     "insn 6: R2 holds the ctx pointer on some paths only"),
], ids=["past-the-end", "part-of-data", "read-only", "ctx-or-stack"])
def test_bad_ctx_accesses_are_rejected(text, verified, unverified):
    with pytest.raises(VerifierError, match=verified):
        Program.from_asm(text, prog_type="xdp")
    with pytest.raises(ProgramError, match=f"^{unverified}$"):
        Program.from_asm(text, prog_type="xdp", verify=False)


@pytest.mark.parametrize("section, ptype", [
    ("xdp", "xdp"), ("xdp.frags", "xdp"), ("socket", "socket"), ("tc", "tc"), ("classifier/ingress", "tc"),
    ("tracepoint/syscalls/sys_enter_open", "tracepoint"), ("kprobe/do_sys_open", "kprobe"), ("whatever", "raw"),
])
def test_section_names(section, ptype):
    assert program_type_for_section(section).name == ptype

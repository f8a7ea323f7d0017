"""Socket-buffer helpers with the kernel's test-run semantics, on every engine, verified.

Every expected packet and value below is worked out by hand from net/core/filter.c's rules
(docs/semantics.md#test-run): the frame's bytes, where the helper puts or takes them, and the
kernel's error codes."""
from __future__ import annotations

import struct

import pytest

from bpfjit import VerifierError
from bpfjit.errors import BPFError
from bpfjit.program import Program
from bpfjit.runtime.kernel_helpers import HELPER_IDS
from bpfjit.runtime.stdhelpers import standard_helpers

MASK64 = (1 << 64) - 1
EFAULT, EINVAL, ENOMEM, EALREADY, EPROTO, ENOTSUPP = 14, 22, 12, 114, 71, 524
# A socket filter sees its packet from the network header: 14 bytes of Ethernet are not its.
FRAME = bytes(range(0x40, 0x40 + 14)) + bytes(range(1, 51))
MACS = bytes.fromhex("020000000002" "020000000001")
# An IPv4 header (protocol UDP, its checksum 0x66c2 worked out below, left 0) and 20 bytes of payload.
IP_HEADER = bytes.fromhex("4500002800010000401100000a0000010a000002")
IPV4_FRAME = MACS + b"\x08\x00" + IP_HEADER + bytes(range(100, 120))
TAGGED_FRAME = MACS + bytes.fromhex("81000064") + b"\x08\x00" + IP_HEADER


def err(code: int) -> int:
    return -code & MASK64


def program(text: str, prog_type: str = "socket") -> Program:
    return Program.from_asm(text, prog_type=prog_type, helpers=standard_helpers(print))


def helper_call(name: str, *args: int, prog_type: str = "tc") -> Program:
    """r1 = the ctx, r2... = args, call the helper, return its result."""
    loads = "\n".join(f"lddw %r{reg}, {value & MASK64}" for reg, value in enumerate(args, start=2))
    return program(f"{loads}\ncall {HELPER_IDS[name]}\nexit", prog_type)


def or_ctx_fields(*fields: tuple[int, int]) -> str:
    """Assembly: r0 |= the u32 __sk_buff field at each offset (ctx in r6), shifted left, then exit."""
    lines = [line for offset, shift in fields
             for line in (f"ldxw %r7, [%r6+{offset}]", f"lsh %r7, {shift}", "or %r0, %r7")]
    return "\n".join([*lines, "exit"])


def run(prog: Program, data: bytes, engine: str, ctx: bytes | None = None):
    result = prog.test_run(data, ctx=ctx, engine=engine)
    return result.retval, result.data_out


LOAD_BYTES = """
    mov %r2, {offset}
    mov %r3, %r10
    add %r3, -8
    mov %r4, 4
    call 26
    jne %r0, 0, +2
    ldxw %r0, [%r10-8]
    exit
    ldxw %r6, [%r10-8]
    lsh %r0, 32
    or %r0, %r6
    exit
"""


def test_skb_load_bytes_reads_from_the_network_header(engine):
    got = program(LOAD_BYTES.format(offset=2)).test_run(FRAME, engine=engine).retval
    assert got == int.from_bytes(FRAME[14 + 2:14 + 6], "little")


def test_skb_load_bytes_past_the_end_is_efault_with_a_zeroed_buffer(engine):
    got = program(LOAD_BYTES.format(offset=48)).test_run(FRAME, engine=engine).retval
    assert got == err(EFAULT) << 32 & MASK64  # low half: the destination, zeroed


LOAD_RELATIVE = LOAD_BYTES.replace("call 26", "mov %r5, {start}\n    call 68")


@pytest.mark.parametrize("prog_type", ["tc", "socket"])
@pytest.mark.parametrize("start,first", [(0, 0), (1, 14)])  # BPF_HDR_START_MAC, _NET
def test_skb_load_bytes_relative_counts_from_the_mac_or_network_header(engine, prog_type, start, first):
    got = program(LOAD_RELATIVE.format(offset=2, start=start), prog_type).test_run(FRAME, engine=engine).retval
    assert got == int.from_bytes(FRAME[first + 2:first + 6], "little")


def test_skb_load_bytes_relative_refuses_an_unknown_header_and_the_end(engine):
    assert program(LOAD_RELATIVE.format(offset=0, start=2), "tc").test_run(FRAME, engine=engine).retval \
        == err(EFAULT) << 32 & MASK64
    # From the network header, 64 - 14 = 50 bytes: a 4-byte read at 47 ends past them.
    assert program(LOAD_RELATIVE.format(offset=47, start=1), "tc").test_run(FRAME, engine=engine).retval \
        == err(EFAULT) << 32 & MASK64


CSUM_DIFF = """
    stw [%r10-4], {source}
    stw [%r10-8], {target}
    mov %r1, %r10
    add %r1, -4
    mov %r2, {source_size}
    mov %r3, %r10
    add %r3, -8
    mov %r4, 4
    mov %r5, {seed}
    call 28
    exit
"""


def folded(total: int) -> int:
    """A ones'-complement sum folded to 32 bits: the expectation, worked out by hand below."""
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def test_csum_diff_is_the_folded_difference(engine):
    source, target = 0x04030201, 0x08070605
    got = program(CSUM_DIFF.format(source=source, target=target, source_size=4, seed=0), "tc")
    # ~0x04030201 + 0x08070605 = 0xfbfcfdfe + 0x08070605 = 0x1_04040403, folded: 0x04040404
    assert got.test_run(bytes(64), engine=engine).retval == 0x04040404
    assert folded(0xFBFCFDFE + 0x08070605) == 0x04040404
    seeded = program(CSUM_DIFF.format(source=source, target=target, source_size=4, seed=0xFFFFFFFF), "tc")
    assert seeded.test_run(bytes(64), engine=engine).retval == folded(0x04040404 + 0xFFFFFFFF)


def test_csum_diff_refuses_sizes_that_are_not_words(engine):
    odd = program(CSUM_DIFF.format(source=1, target=2, source_size=3, seed=0), "tc")
    assert odd.test_run(bytes(64), engine=engine).retval == err(EINVAL)


# bpf_skb_pull_data, then a packet pointer read again from the ctx (the old ones are forgotten):
# r0 = the call's result << 8 | the first byte past the Ethernet header.
PULL_DATA = """
    mov %r6, %r1
    mov %r2, {length}
    call 39
    mov %r7, %r0
    lsh %r7, 8
    ldxw %r2, [%r6+76]
    ldxw %r3, [%r6+80]
    mov %r4, %r2
    add %r4, 15
    jgt %r4, %r3, +3
    ldxb %r0, [%r2+14]
    or %r0, %r7
    exit
    mov %r0, %r7
    exit
"""


@pytest.mark.parametrize("length,result", [(0, 0), (len(FRAME), 0), (len(FRAME) + 1, -12)])
def test_skb_pull_data_succeeds_up_to_the_packets_end_and_is_enomem_past_it(engine, length, result):
    got = program(PULL_DATA.format(length=length), prog_type="tc").test_run(FRAME, engine=engine).retval
    assert got == ((result << 8) | FRAME[14]) & MASK64


def test_packet_pointers_from_before_a_pull_are_forgotten():
    stale = """
        mov %r6, %r1
        ldxw %r8, [%r6+76]
        ldxw %r9, [%r6+80]
        mov %r4, %r8
        add %r4, 1
        jgt %r4, %r9, +5
        mov %r1, %r6
        mov %r2, 0
        call 39
        ldxb %r0, [%r8+0]
        exit
        mov %r0, 0
        exit
    """
    with pytest.raises(VerifierError) as caught:
        program(stale, prog_type="tc")
    assert caught.value.message == "R8 invalid mem access 'scalar'"


# -- bpf_skb_store_bytes ------------------------------------------------------------------------

STORE_BYTES = """
    mov %r6, %r1
    stw [%r10-4], 0x44332211
    mov %r2, {offset}
    mov %r3, %r10
    add %r3, -4
    mov %r4, 4
    lddw %r5, {flags}
    call 9
    mov %r7, %r0
    ldxw %r0, [%r6+68]
    lsh %r7, 32
    or %r0, %r7
    exit
"""  # r0 = the result << 32 | skb->hash afterwards


@pytest.mark.parametrize("flags", [0, 1, 2, 3])  # BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH
def test_skb_store_bytes_writes_at_the_offset(engine, flags):
    retval, data_out = run(program(STORE_BYTES.format(offset=20, flags=flags), "tc"), FRAME, engine)
    assert retval == 0  # a test run's skb has no hash, so clearing it leaves 0
    assert data_out == FRAME[:20] + bytes([0x11, 0x22, 0x33, 0x44]) + FRAME[24:]


@pytest.mark.parametrize("offset,flags,result", [
    (61, 0, EFAULT),           # 61 + 4 > 64 bytes
    (0x8000_0000, 0, EFAULT),  # past INT_MAX
    (0, 4, EINVAL),            # an unknown flag
])
def test_skb_store_bytes_refusals_leave_the_packet(engine, offset, flags, result):
    retval, data_out = run(program(STORE_BYTES.format(offset=offset, flags=flags), "tc"), FRAME, engine)
    assert retval >> 32 == err(result) & 0xFFFF_FFFF and data_out == FRAME


# -- checksums ---------------------------------------------------------------------------------

def ipv4_checksum(header: bytes) -> int:
    """RFC 1071: the complement of the ones'-complement sum of the header's 16-bit words (the
    checksum field counted as zero), as an independent reference."""
    words = struct.unpack(f">{len(header) // 2}H", header[:10] + b"\0\0" + header[12:])
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def with_checksum(header: bytes) -> bytes:
    return header[:10] + ipv4_checksum(header).to_bytes(2, "big") + header[12:]


def test_the_reference_checksum_is_rfc_1071s():
    # 4500 + 0028 + 0001 + 0000 + 4011 + 0a00 + 0001 + 0a00 + 0002 = 0x993d; ~0x993d = 0x66c2
    assert ipv4_checksum(IP_HEADER) == 0x66C2


CSUM_REPLACE = """
    mov %r6, %r1
    mov %r2, {offset}
    lddw %r3, {old}
    lddw %r4, {new}
    lddw %r5, {flags}
    call {helper}
    exit
"""


def csum_replace(helper: str, offset: int, old: int, new: int, flags: int) -> Program:
    return program(CSUM_REPLACE.format(offset=offset, old=old & MASK64, new=new & MASK64, flags=flags & MASK64,
                                       helper=HELPER_IDS[helper]), "tc")


@pytest.mark.parametrize("helper", ["l3_csum_replace", "l4_csum_replace"])
def test_csum_replace_of_a_4_byte_field_gives_the_new_headers_checksum(engine, helper):
    # The destination address changes from 10.0.0.2 to 192.168.1.9 (as loaded: little-endian).
    old_addr, new_addr = bytes.fromhex("0a000002"), bytes.fromhex("c0a80109")
    frame = MACS + b"\x08\x00" + with_checksum(IP_HEADER)
    changed = frame[:30] + new_addr + frame[34:]
    prog = csum_replace(helper, 24, int.from_bytes(old_addr, "little"), int.from_bytes(new_addr, "little"), 4)
    retval, data_out = run(prog, changed, engine)
    assert retval == 0
    assert data_out == MACS + b"\x08\x00" + with_checksum(changed[14:34])


@pytest.mark.parametrize("helper", ["l3_csum_replace", "l4_csum_replace"])
def test_csum_replace_of_a_2_byte_field_and_of_a_diff(engine, helper):
    frame = MACS + b"\x08\x00" + with_checksum(IP_HEADER)
    ttl_changed = frame[:22] + b"\x3f\x11" + frame[24:]  # TTL 64 -> 63 (the word ttl|protocol)
    expected = MACS + b"\x08\x00" + with_checksum(ttl_changed[14:34])
    two = csum_replace(helper, 24, 0x1140, 0x113F, 2)  # the words as loaded: little-endian
    assert run(two, ttl_changed, engine) == (0, expected)
    # Size 0: `new` is a 32-bit ones'-complement difference (what csum_diff returns): + ~0x1140 + 0x113f.
    diff = csum_replace(helper, 24, 0, folded((~0x1140 & 0xFFFF_FFFF) + 0x113F), 0)
    assert run(diff, ttl_changed, engine) == (0, expected)


@pytest.mark.parametrize("offset,old,flags,result", [
    (25, 0, 4, EFAULT),        # odd
    (0x10000, 0, 4, EFAULT),   # past 0xffff
    (63, 0, 4, EFAULT),        # the field's 2 bytes end past the packet
    (24, 0, 3, EINVAL),        # a field of 3 bytes
    (24, 1, 0, EINVAL),        # size 0 with an old value
    (24, 0, 0x10, EINVAL),     # BPF_F_PSEUDO_HDR is l4's only
])
def test_l3_csum_replace_refusals(engine, offset, old, flags, result):
    retval, data_out = run(csum_replace("l3_csum_replace", offset, old, 5, flags), IPV4_FRAME, engine)
    assert (retval, data_out) == (err(result), IPV4_FRAME)


def test_l4_csum_replace_takes_the_pseudo_header_flag_and_size_bits(engine):
    # A UDP checksum field at 40: BPF_F_PSEUDO_HDR only matters for CHECKSUM_COMPLETE skbs.
    frame = IPV4_FRAME[:40] + b"\x12\x34" + IPV4_FRAME[42:]
    retval, data_out = run(csum_replace("l4_csum_replace", 40, 0, 1, 0x10 | 4), frame, engine)
    # ~0x3412 (little-endian load) + ~0 + 1, folded, complemented: 0x3411, stored little-endian.
    assert retval == 0 and data_out[40:42] == b"\x11\x34"
    assert run(csum_replace("l4_csum_replace", 40, 0, 1, 0x100 | 4), frame, engine)[0] == err(EINVAL)


def test_l4_csum_replace_mark_mangled_0(engine):
    def with_udp_checksum(field: bytes) -> bytes:
        return IPV4_FRAME[:40] + field + IPV4_FRAME[42:]

    mangled = 0x20 | 4  # BPF_F_MARK_MANGLED_0: UDP's "no checksum" (0) stays
    zero = with_udp_checksum(b"\0\0")
    assert run(csum_replace("l4_csum_replace", 40, 0, 1, mangled), zero, engine) == (0, zero)
    # ... unless enforced (BPF_F_MARK_ENFORCE): ~0 + ~0 + 1 = 0xffffffff + 0xffffffff + 1 folds to
    # 1, complemented 0xfffe.
    _, data_out = run(csum_replace("l4_csum_replace", 40, 0, 1, mangled | 0x40), zero, engine)
    assert data_out == with_udp_checksum(b"\xfe\xff")
    # A checksum of 1 (bytes 01 00): ~1 + ~0 + 1 = 0xfffffffe + 0xffffffff + 1 folds to 0xffff,
    # complemented 0, which MARK_MANGLED_0 writes as CSUM_MANGLED_0 (0xffff).
    one = with_udp_checksum(b"\x01\x00")
    assert run(csum_replace("l4_csum_replace", 40, 0, 1, 4), one, engine) == (0, zero)
    assert run(csum_replace("l4_csum_replace", 40, 0, 1, mangled), one, engine) == (0, with_udp_checksum(b"\xff\xff"))


# -- bpf_skb_adjust_room --------------------------------------------------------------------------

MAC, NET = 1, 0  # BPF_ADJ_ROOM_*
ENCAP_IPV4, ENCAP_IPV6, ENCAP_GRE, ENCAP_UDP = 1 << 1, 1 << 2, 1 << 3, 1 << 4
ENCAP_ETH, DECAP_IPV4, DECAP_IPV6 = 1 << 6, 1 << 7, 1 << 8

ADJUST_ROOM = """
    mov %r6, %r1
    lddw %r2, {diff}
    mov %r3, {mode}
    lddw %r4, {flags}
    call 50
    jeq %r0, 0, +1
    exit
{again}
""" + or_ctx_fields((16, 32), (0, 16))  # r0 = the result; if 0: skb->protocol << 32 | skb->len << 16
# (| a second call's result)

AGAIN = """
    mov %r1, %r6
    lddw %r2, {diff}
    mov %r3, {mode}
    lddw %r4, {flags}
    call 50
"""


def adjust_room(diff: int, mode: int, flags: int, again: dict | None = None) -> Program:
    second = AGAIN.format(diff=again["diff"] & MASK64, mode=again["mode"], flags=again["flags"]) if again else ""
    return program(ADJUST_ROOM.format(diff=diff & MASK64, mode=mode, flags=flags, again=second), "tc")


def summary(protocol: int, length: int, result: int = 0) -> int:
    return protocol << 32 | length << 16 | result


def test_adjust_room_mac_pushes_zeroes_between_the_mac_and_network_headers(engine):
    retval, data_out = run(adjust_room(20, MAC, ENCAP_IPV4), IPV4_FRAME, engine)
    assert retval == summary(0x0008, len(IPV4_FRAME) + 20)  # still IPv4 (0x0800, big-endian)
    assert data_out == IPV4_FRAME[:14] + bytes(20) + IPV4_FRAME[14:]


def test_adjust_room_net_works_after_the_network_header(engine):
    retval, data_out = run(adjust_room(8, NET, 0), IPV4_FRAME, engine)
    assert retval == summary(0x0008, len(IPV4_FRAME) + 8)
    assert data_out == IPV4_FRAME[:34] + bytes(8) + IPV4_FRAME[34:]
    retval, data_out = run(adjust_room(-8, NET, 0), IPV4_FRAME, engine)
    assert retval == summary(0x0008, len(IPV4_FRAME) - 8)
    assert data_out == IPV4_FRAME[:34] + IPV4_FRAME[42:]


def test_adjust_room_encap_and_decap_set_the_outer_protocol(engine):
    retval, data_out = run(adjust_room(40, MAC, ENCAP_IPV6), IPV4_FRAME, engine)
    assert retval == summary(0xDD86, len(IPV4_FRAME) + 40)  # ETH_P_IPV6 as the program reads it
    assert data_out == IPV4_FRAME[:14] + bytes(40) + IPV4_FRAME[14:]
    longer = IPV4_FRAME + bytes(20)  # 60 bytes from the network header: 40 left, an IPv6 header
    retval, data_out = run(adjust_room(-20, MAC, DECAP_IPV6), longer, engine)
    assert retval == summary(0xDD86, len(longer) - 20)
    assert data_out == longer[:14] + longer[34:]


def test_adjust_room_grows_past_the_room_the_packet_started_with(engine):
    retval, data_out = run(adjust_room(0xFFF, MAC, 0), IPV4_FRAME, engine)
    assert retval == summary(0x0008, len(IPV4_FRAME) + 0xFFF)
    assert data_out == IPV4_FRAME[:14] + bytes(0xFFF) + IPV4_FRAME[14:]


@pytest.mark.parametrize("diff,mode,flags,frame,result", [
    (4, MAC, 1 << 9, IPV4_FRAME, EINVAL),                       # an unknown flag
    (0x1000, MAC, 0, IPV4_FRAME, EFAULT),                       # more than 0xfff
    (4, MAC, 0, FRAME, ENOTSUPP),                               # not IPv4 or IPv6
    (4, 2, 0, IPV4_FRAME, ENOTSUPP),                            # no such mode
    (4, MAC, DECAP_IPV4, IPV4_FRAME, EINVAL),                   # decapsulating while growing
    (-4, MAC, DECAP_IPV4 | DECAP_IPV6, IPV4_FRAME, EINVAL),     # two inner protocols
    (4, MAC, ENCAP_IPV4 | ENCAP_IPV6, IPV4_FRAME, EINVAL),      # two outer protocols
    (28, MAC, ENCAP_IPV4 | ENCAP_GRE | ENCAP_UDP, IPV4_FRAME, EINVAL),
    (28, MAC, ENCAP_IPV4 | ENCAP_ETH | 10 << 56, IPV4_FRAME, EINVAL),  # an inner mac under 14 bytes
    (8, MAC, ENCAP_IPV4 | 14 << 56, IPV4_FRAME, EINVAL),        # an inner mac longer than the room
    (-40, MAC, 0, IPV4_FRAME, ENOTSUPP),                        # 40 bytes past the network header
    (-21, MAC, 0, IPV4_FRAME, ENOTSUPP),                        # less than an IPv4 header left
    (-20, MAC, DECAP_IPV6, IPV4_FRAME, ENOTSUPP),               # 20 bytes left: no IPv6 header
    (-4, MAC, ENCAP_IPV4, IPV4_FRAME, EINVAL),                  # shrinking with an encap flag
])
def test_adjust_room_refusals(engine, diff, mode, flags, frame, result):
    retval, data_out = run(adjust_room(diff, mode, flags), frame, engine)
    assert (retval, data_out) == (err(result), frame)


def test_a_second_encapsulation_is_ealready(engine):
    prog = adjust_room(20, MAC, ENCAP_IPV4, again={"diff": 20, "mode": MAC, "flags": ENCAP_IPV4})
    retval, data_out = run(prog, IPV4_FRAME, engine)
    assert retval == summary(0x0008, len(IPV4_FRAME) + 20, err(EALREADY))
    assert data_out == IPV4_FRAME[:14] + bytes(20) + IPV4_FRAME[14:]


# -- bpf_skb_change_tail / bpf_skb_change_head ----------------------------------------------------

CHANGE = """
    mov %r6, %r1
    lddw %r2, {size}
    lddw %r3, {flags}
    call {helper}
    jne %r0, 0, +3
    ldxw %r0, [%r6+0]
    lsh %r0, 16
    exit
    exit
"""  # r0 = the result, or skb->len << 16


def change(helper: str, size: int, flags: int = 0) -> Program:
    return program(CHANGE.format(size=size & MASK64, flags=flags, helper=HELPER_IDS[helper]), "tc")


@pytest.mark.parametrize("new_len", [14, 30, 64, 100, 4000])
def test_change_tail_trims_or_grows_with_zeroes(engine, new_len):
    retval, data_out = run(change("skb_change_tail", new_len), FRAME, engine)
    assert retval == new_len << 16
    assert data_out == (FRAME + bytes(new_len))[:new_len]


# Below the network header, over SKB_MAX_ALLOC, a flag.
@pytest.mark.parametrize("new_len,flags", [(13, 0), (16064 + 1, 0), (64, 1)])
def test_change_tail_refusals(engine, new_len, flags):
    assert run(change("skb_change_tail", new_len, flags), FRAME, engine) == (err(EINVAL), FRAME)


def test_change_tail_after_an_encapsulation_is_enotsupp(engine):
    prog = program(ADJUST_ROOM.format(diff=20, mode=MAC, flags=ENCAP_IPV4, again="""
    mov %r1, %r6
    mov %r2, 100
    mov %r3, 0
    call 38
"""), "tc")
    assert run(prog, IPV4_FRAME, engine)[0] == summary(0x0008, len(IPV4_FRAME) + 20, err(ENOTSUPP))


def test_change_head_pushes_zeroes_in_front(engine):
    retval, data_out = run(change("skb_change_head", 14), FRAME, engine)
    assert (retval, data_out) == ((len(FRAME) + 14) << 16, bytes(14) + FRAME)


@pytest.mark.parametrize("head_room,flags", [(14, 1), (0x8000_0000, 0), (16064, 0)])
def test_change_head_refusals(engine, head_room, flags):
    assert run(change("skb_change_head", head_room, flags), FRAME, engine) == (err(EINVAL), FRAME)


def test_change_head_moves_the_mac_header_for_load_bytes_relative(engine):
    prog = program("""
        mov %r6, %r1
        mov %r2, 4
        mov %r3, 0
        call 43
        mov %r1, %r6
        mov %r2, 0
        mov %r3, %r10
        add %r3, -8
        mov %r4, 4
        mov %r5, 1
        call 68
        ldxw %r0, [%r10-8]
        exit
    """, "tc")  # 4 bytes from the network header, which stays 14 bytes into the old frame
    assert run(prog, FRAME, engine)[0] == int.from_bytes(FRAME[14:18], "little")


# -- VLAN -------------------------------------------------------------------------------------------

VLAN_PUSH = """
    mov %r6, %r1
    mov %r2, {proto}
    mov %r3, {tci}
    call 18
{again}
""" + or_ctx_fields((20, 48), (28, 32), (24, 16))
# r0 = vlan_present << 48 | vlan_proto << 32 | vlan_tci << 16 | the (last) result


def vlan_push(proto: int, tci: int, again: str = "") -> Program:
    return program(VLAN_PUSH.format(proto=proto, tci=tci, again=again), "tc")


@pytest.mark.parametrize("proto,reads", [(0x0081, 0x0081), (0xA888, 0xA888), (0x1234, 0x0081)])
def test_vlan_push_sets_the_accelerated_tag_only(engine, proto, reads):
    # 802.1Q and 802.1ad are kept (as the program passes them: big-endian); anything else is 802.1Q.
    retval, data_out = run(vlan_push(proto, 100), IPV4_FRAME, engine)
    assert retval == 1 << 48 | reads << 32 | 100 << 16
    assert data_out == IPV4_FRAME


def test_a_second_vlan_push_puts_the_first_tag_in_the_packet(engine):
    again = "mov %r1, %r6\nmov %r2, 0x0081\nmov %r3, 200\ncall 18"
    retval, data_out = run(vlan_push(0x0081, 100, again), IPV4_FRAME, engine)
    assert retval == 1 << 48 | 0x0081 << 32 | 200 << 16
    assert data_out == MACS + bytes.fromhex("81000064") + IPV4_FRAME[12:]


VLAN_POP = """
    mov %r6, %r1
    call 19
""" + or_ctx_fields((16, 32), (20, 16))  # r0 = skb->protocol << 32 | vlan_present << 16 | the result


def test_vlan_pop_takes_the_tag_out_of_the_packet(engine):
    retval, data_out = run(program(VLAN_POP, "tc"), TAGGED_FRAME, engine)
    assert retval == 0x0008 << 32  # now IPv4, no tag left
    assert data_out == IPV4_FRAME[:34]


def test_vlan_pop_of_an_untagged_packet_changes_nothing(engine):
    assert run(program(VLAN_POP, "tc"), IPV4_FRAME, engine) == (0x0008 << 32, IPV4_FRAME)


def test_vlan_pop_moves_an_inner_tag_to_the_accelerated_one(engine):
    qinq = MACS + bytes.fromhex("88a80064" "810000c8") + b"\x08\x00" + IP_HEADER
    retval, data_out = run(program(VLAN_POP, "tc"), qinq, engine)
    assert retval == 0x0008 << 32 | 1 << 16  # the inner tag (200) is now the skb's
    assert data_out == IPV4_FRAME[:34]


# -- tunnel keys --------------------------------------------------------------------------------

TUNNEL = """
    mov %r6, %r1
    stw [%r10-44], 7
    stw [%r10-40], 0x0a000001
    stw [%r10-36], 0
    stw [%r10-32], 0
    stw [%r10-28], 0
    stw [%r10-24], 0x4000
    stw [%r10-20], 0
    stw [%r10-16], 0x0a000002
    stw [%r10-12], 0
    stw [%r10-8], 0
    stw [%r10-4], 0
    {set}
    mov %r1, %r6
    mov %r2, %r10
    add %r2, -88
    mov %r3, {get_size}
    mov %r4, {get_flags}
    call 20
    jne %r0, 0, +5
    ldxw %r0, [%r10-84]
    lsh %r0, 32
    ldxw %r7, [%r10-60]
    or %r0, %r7
    exit
    ldxw %r7, [%r10-88]
    lsh %r0, 32
    or %r0, %r7
    exit
"""  # got: remote_ipv4 << 32 | local_ipv4; failed: the result << 32 | the buffer's first word
SET_KEY = """
    mov %r1, %r6
    mov %r2, %r10
    add %r2, -44
    mov %r3, {size}
    mov %r4, {flags}
    call 21
    jeq %r0, 0, +1
    exit
"""


def tunnel(set_size: int = 44, set_flags: int = 0, get_size: int = 44, get_flags: int = 0, set_key=True) -> Program:
    setter = SET_KEY.format(size=set_size, flags=set_flags) if set_key else "stw [%r10-88], -1"
    return program(TUNNEL.format(set=setter, get_size=get_size, get_flags=get_flags), "tc")


def test_a_tunnel_key_set_reads_back_from_the_tunnels_side(engine):
    # The kernel reads a key as received: remote is the tunnel's source, local its destination.
    assert run(tunnel(), IPV4_FRAME, engine)[0] == 0x0A000002 << 32 | 0x0A000001


def test_a_tunnel_key_in_an_older_layout(engine):
    # 28 bytes (up to local_ipv6): the local address reads as 0.
    assert run(tunnel(set_size=28), IPV4_FRAME, engine)[0] == 0x0A000001


def test_get_tunnel_key_without_a_tunnel_is_einval_and_zeroes_the_buffer(engine):
    assert run(tunnel(set_key=False), IPV4_FRAME, engine)[0] == err(EINVAL) << 32 & MASK64


@pytest.mark.parametrize("set_size,set_flags,get_size,get_flags,result", [
    (44, 0, 44, 1, EPROTO),     # an IPv4 key read as IPv6
    (44, 0, 30, 0, EINVAL),     # no layout of 30 bytes
    (44, 0, 44, 4, EINVAL),     # an unknown get flag
])
def test_get_tunnel_key_refusals(engine, set_size, set_flags, get_size, get_flags, result):
    prog = tunnel(set_size, set_flags, get_size, get_flags)
    assert run(prog, IPV4_FRAME, engine)[0] == err(result) << 32 & MASK64


@pytest.mark.parametrize("size,flags", [(30, 0), (44, 1 << 5)])
def test_set_tunnel_key_refusals(engine, size, flags):
    # The setter's failure ends the run with its result.
    prog = tunnel(set_size=size, set_flags=flags)
    assert run(prog, IPV4_FRAME, engine)[0] == err(EINVAL)


# -- __sk_buff ctx_in / ctx_out ------------------------------------------------------------------

RETURN_ZERO = "mov %r0, 0\nexit"


def skb_ctx(**fields: int) -> bytes:
    offsets = {"len": 0, "mark": 8, "protocol": 16, "priority": 32, "ifindex": 40, "tc_index": 44, "hash": 68,
               "wire_len": 160, "gso_segs": 164}
    ctx = bytearray(192)
    for name, value in fields.items():
        struct.pack_into("<I", ctx, offsets[name], value)
    return bytes(ctx)


@pytest.mark.parametrize("field", ["len", "protocol", "tc_index", "hash"])
def test_ctx_in_fields_a_test_run_sets_must_be_zero(field):
    with pytest.raises(BPFError, match=rf"__sk_buff\.{field} must be 0.*\(EINVAL\)"):
        program(RETURN_ZERO, "tc").test_run(FRAME, ctx=skb_ctx(**{field: 1}))


@pytest.mark.parametrize("fields,errno", [({"wire_len": 63}, "EINVAL"), ({"wire_len": 0x10001}, "EINVAL"),
                                          ({"gso_segs": 0x10000}, "EINVAL"), ({"ifindex": 2}, "ENODEV")])
def test_ctx_in_values_the_kernel_refuses(fields, errno):
    with pytest.raises(BPFError, match=rf"\({errno}\)"):
        program(RETURN_ZERO, "tc").test_run(FRAME, ctx=skb_ctx(**fields))


def test_an_empty_ctx_is_einval():
    with pytest.raises(BPFError, match=r"\(EINVAL\)"):
        program(RETURN_ZERO, "tc").test_run(FRAME, ctx=b"")


def test_ctx_out_is_ctx_in_with_the_fields_a_run_copies_back(engine):
    bump_mark = """
        ldxw %r2, [%r1+8]
        add %r2, 1
        stxw [%r1+8], %r2
        mov %r0, 0
        exit
    """
    result = program(bump_mark, "tc").test_run(FRAME, ctx=skb_ctx(mark=9, priority=3), engine=engine)
    # mark + 1, priority as given, ifindex the loopback's, wire_len the packet's length; len and
    # protocol (set during the run) are not copied back.
    assert result.ctx_out == skb_ctx(mark=10, priority=3, ifindex=1, wire_len=len(FRAME))


# -- the verifier: pointer differences in 32 bits ------------------------------------------------

POINTER_ALU = """
    ldxw %r2, [%r1+76]
    ldxw %r3, [%r1+80]
    {op}
    mov %r0, %r3
    exit
"""


def test_a_32_bit_difference_of_packet_pointers_is_a_number(engine):
    prog = program(POINTER_ALU.format(op="sub32 %r3, %r2"), "tc")  # w3 = data_end - data
    assert prog.test_run(FRAME, engine=engine).retval == len(FRAME)


@pytest.mark.parametrize("op,message", [
    ("add32 %r3, %r2", "R3 pointer += pointer prohibited"),
    ("or32 %r3, %r2", "R3 pointer |= pointer prohibited"),
    ("add32 %r3, 1", "R3 32-bit pointer arithmetic prohibited"),
    ("mov %r3, 1\nsub %r3, %r2", "R3 tried to subtract pointer from scalar"),
])
def test_other_pointer_arithmetic_keeps_the_kernels_refusal(op, message):
    with pytest.raises(VerifierError) as caught:
        program(POINTER_ALU.format(op=op), "tc")
    assert caught.value.message == message


@pytest.mark.parametrize("op", ["sub32 %r3, 1", "mov %r3, 1\nsub32 %r3, %r2"])
def test_a_32_bit_subtraction_with_one_pointer_is_a_number(op):
    program(POINTER_ALU.format(op=op), "tc")  # accepted: the result is an unknown scalar


# --- what the kernel's skb test run refuses -------------------------------------------------------

@pytest.mark.parametrize("prog_type", ["tc", "socket"])
@pytest.mark.parametrize("ethertype,after,refused", [
    (0x0800, 19, True), (0x0800, 20, False), (0x86DD, 0, True), (0x86DD, 39, True), (0x86DD, 40, False),
    (0x0806, 0, False), (0x8100, 2, False),  # not IP: nothing pulled (a VLAN tag is not looked into)
])
def test_a_packet_too_short_for_the_network_header_it_announces_is_einval(engine, prog_type, ethertype, after,
                                                                         refused):
    """As Linux 6.18's test run answered through the kernel engine: an IPv4 EtherType needs 20
    bytes after the Ethernet header, IPv6 40; other EtherTypes none."""
    prog = Program.from_asm("mov %r0, 7\nexit", prog_type=prog_type)
    data = MACS + ethertype.to_bytes(2, "big") + bytes(after)
    if refused:
        with pytest.raises(BPFError, match=r"shorter than the \d+-byte IPv[46] header the kernel's test run pulls "
                                           r"\(EINVAL\)"):
            prog.test_run(data, engine=engine)
    else:
        assert prog.test_run(data, engine=engine).retval == 7


# --- which program types may call which helper -------------------------------------------------------

@pytest.mark.parametrize("prog_type,helper,offered", [
    ("socket", "skb_store_bytes", False), ("socket", "skb_adjust_room", False), ("socket", "l3_csum_replace", False),
    ("xdp", "get_hash_recalc", False), ("xdp", "skb_vlan_pop", False), ("tc", "xdp_adjust_head", False),
    ("kprobe", "skb_load_bytes", False), ("socket", "redirect", False),
    ("socket", "skb_load_bytes", True), ("cgroup_skb", "skb_load_bytes_relative", True),
    ("tc", "skb_store_bytes", True),
    ("xdp", "csum_diff", True), ("xdp", "redirect_map", True), ("kprobe", "map_lookup_elem", True),
    ("xdp", "probe_read", False), ("kprobe", "probe_read", True), ("syscall", "perf_event_output", False),
    ("kprobe", "perf_event_output", True), ("kprobe", "skc_to_tcp_sock", False), ("tc", "skc_to_tcp_sock", True),
    ("lwt_out", "csum_diff", True), ("lwt_in", "skb_store_bytes", False), ("cgroup_skb", "sk_lookup_tcp", True),
])
def test_helpers_are_offered_per_program_type_as_the_kernel_does(prog_type, helper, offered):
    """A helper of another family is refused at load with the kernel's message (net/core/filter.c's
    func_proto of each type); the rest get as far as their argument checks."""
    number = HELPER_IDS[helper]
    text = f"call {number}\nmov %r0, 0\nexit"
    refused = f"program of this type cannot use helper bpf_{helper}#{number}"
    try:
        Program.from_asm(text, prog_type=prog_type, helpers=standard_helpers(print))
    except VerifierError as error:
        assert (refused in str(error)) != offered, str(error)
    else:
        assert offered

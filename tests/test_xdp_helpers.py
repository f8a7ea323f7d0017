"""The XDP packet helpers on every engine, against results derived by hand from the kernel's
test run (net/bpf/test_run.c) and helpers (net/core/filter.c): the packet starts 256 bytes into a
zeroed 4096-byte page whose first 40 bytes (struct xdp_frame) and last 320 (skb_shared_info) no
packet byte may reach, so the linear packet holds at most 3520 bytes; longer input goes to
4096-byte frags; metadata sits right in front of the packet and data_out starts with it.
"""
from __future__ import annotations

import struct

import pytest

from bpfjit.errors import BPFError, BPFRuntimeError, VerifierError
from bpfjit.program import Program
from bpfjit.runtime.stdhelpers import standard_helpers

EFAULT, EINVAL, EACCES = 14, 22, 13
PACKET = bytes(range(1, 61))  # 60 bytes
XDP_MD = "<6I"  # data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
ADJUST_HEAD, ADJUST_META, ADJUST_TAIL, GET_BUFF_LEN, LOAD_BYTES, STORE_BYTES = 44, 54, 65, 188, 189, 190


def program(text: str, verify: bool = True) -> Program:
    return Program.from_asm(text, prog_type="xdp", helpers=standard_helpers(print), verify=verify)


def errno(retval: int) -> int:
    """The -errno a helper returned, as a positive errno (0 for success)."""
    return -(retval - (1 << 64) if retval >> 63 else retval)


# r0 = helper(ctx, offset); then r0 = its result, or the new buff length on success.
ADJUST = """
    mov %r6, %r1
    mov %r2, {offset}
    call {helper}
    jne %r0, 0, +2
    mov %r1, %r6
    call 188
    exit
"""


def adjust(helper: int, offset: int, data: bytes = PACKET, engine: str = "jit", ctx: bytes | None = None):
    return program(ADJUST.format(helper=helper, offset=offset)).test_run(data, ctx=ctx, engine=engine)


def test_adjust_head_grows_into_zeroed_headroom(engine):
    result = adjust(ADJUST_HEAD, -20, engine=engine)
    assert result.retval == 80
    assert result.data_out == bytes(20) + PACKET


def test_adjust_head_reaches_the_xdp_frame_and_no_further(engine):
    # 256 bytes of headroom, of which the first 40 hold the struct xdp_frame: 216 may be taken.
    assert adjust(ADJUST_HEAD, -216, engine=engine).retval == 60 + 216
    result = adjust(ADJUST_HEAD, -217, engine=engine)
    assert errno(result.retval) == EINVAL and result.data_out == PACKET


def test_adjust_head_shrinks_to_an_ethernet_header_and_no_further(engine):
    result = adjust(ADJUST_HEAD, 46, engine=engine)
    assert result.retval == 14 and result.data_out == PACKET[46:]
    assert errno(adjust(ADJUST_HEAD, 47, engine=engine).retval) == EINVAL


def test_adjust_tail_grows_with_zeroes_up_to_the_reserved_tail(engine):
    result = adjust(ADJUST_TAIL, 10, engine=engine)
    assert result.retval == 70 and result.data_out == PACKET + bytes(10)
    assert adjust(ADJUST_TAIL, 3520 - 60, engine=engine).retval == 3520
    assert errno(adjust(ADJUST_TAIL, 3520 - 60 + 1, engine=engine).retval) == EINVAL


def test_adjust_tail_shrinks_to_an_ethernet_header_and_no_further(engine):
    result = adjust(ADJUST_TAIL, -46, engine=engine)
    assert result.retval == 14 and result.data_out == PACKET[:14]
    assert errno(adjust(ADJUST_TAIL, -47, engine=engine).retval) == EINVAL


def test_adjust_meta_takes_room_in_front_of_data(engine):
    result = adjust(ADJUST_META, -8, engine=engine, ctx=struct.pack(XDP_MD, 0, 60, 0, 0, 0, 0))
    # data_out starts at data_meta: 8 bytes of (zeroed) headroom, then the packet. The ctx comes
    # back with data and data_end as offsets from data_meta.
    assert result.retval == 60 and result.data_out == bytes(8) + PACKET
    assert struct.unpack(XDP_MD, result.ctx_out)[:3] == (8, 68, 0)


@pytest.mark.parametrize(("offset", "code"), [(-2, EACCES), (-220, EINVAL), (4, EINVAL)])
def test_adjust_meta_refusals(engine, offset, code):
    # Metadata lies between the xdp_frame and data (EINVAL): at most 216 bytes here, never after
    # data; and it is a multiple of 4 bytes (EACCES).
    result = adjust(ADJUST_META, offset, engine=engine)
    assert errno(result.retval) == code and result.data_out == PACKET


# adjust_meta(-4); *(u32 *)data_meta = 0xaabbccdd; adjust_head(-8): the metadata moves with the
# head, and the bytes it leaves behind stay in the packet.
META_THEN_HEAD = """
    mov %r6, %r1
    mov %r2, -4
    call 54
    jne %r0, 0, +10
    ldxw %r3, [%r6+0]
    ldxw %r2, [%r6+8]
    add %r2, 4
    jgt %r2, %r3, +6
    stw [%r2-4], 0xaabbccdd
    mov %r1, %r6
    mov %r2, -8
    call 44
    mov %r0, 0
    exit
    mov %r0, 99
    exit
"""


def test_metadata_moves_with_the_head(engine):
    result = program(META_THEN_HEAD).test_run(PACKET, engine=engine)
    meta = 0xAABBCCDD.to_bytes(4, "little")
    # data_meta 252 -> 244: the metadata is copied to 244..248; data = 248, and 248..256 holds
    # 4 zeroed headroom bytes and the old copy of the metadata.
    assert result.retval == 0
    assert result.data_out == meta + bytes(4) + meta + PACKET


def test_ctx_in_metadata_comes_first_and_back_out(engine):
    # ctx_in data = 4: the first 4 bytes of data_in are metadata, in front of data.
    prog = program("""
        mov %r0, 0
        ldxw %r3, [%r1+0]
        ldxw %r2, [%r1+8]
        add %r2, 4
        jgt %r2, %r3, +1
        ldxw %r0, [%r2-4]
        exit
    """)
    data = b"\x11\x22\x33\x44" + PACKET
    result = prog.test_run(data, ctx=struct.pack(XDP_MD, 4, len(data), 0, 0, 0, 0), engine=engine)
    assert result.retval == 0x44332211
    assert result.data_out == data and struct.unpack(XDP_MD, result.ctx_out)[:3] == (4, 64, 0)


@pytest.mark.parametrize(("ctx", "message"), [
    ((0, 60, 4, 0, 0, 0), "data_meta must be 0"),
    ((2, 60, 0, 0, 0, 0), "multiple of 4"),
    ((0, 61, 0, 0, 0, 0), "past the 60 bytes"),
    ((0, 60, 0, 0, 0, 1), "egress_ifindex must be 0"),
    ((0, 60, 0, 0, 1, 0), "needs an ingress_ifindex"),
    ((0, 60, 0, 2, 0, 0), "ENODEV"),
    ((0, 60, 0, 1, 1, 0), "only rx queue 0"),
])
def test_ctx_in_the_kernel_refuses(engine, ctx, message):
    with pytest.raises(BPFError, match=message):
        adjust(ADJUST_HEAD, 0, engine=engine, ctx=struct.pack(XDP_MD, *ctx))


# r0 = xdp_load_bytes(ctx, offset, fp - 8, size), else the u32 it read.
LOAD = """
    mov %r2, {offset}
    mov %r3, %r10
    add %r3, -8
    mov %r4, {size}
    call 189
    jne %r0, 0, +1
    ldxw %r0, [%r10-8]
    exit
"""


@pytest.mark.parametrize(("offset", "size", "code"), [(56, 4, 0), (57, 4, EINVAL), (0x10000, 1, EFAULT)])
def test_load_bytes_checks_offsets(engine, offset, size, code):
    retval = program(LOAD.format(offset=offset, size=size)).test_run(PACKET, engine=engine).retval
    if code:
        assert errno(retval) == code
    else:
        assert retval == int.from_bytes(PACKET[offset:offset + 4], "little")


def test_load_bytes_reads_across_the_linear_part_and_the_frags(engine):
    data = bytes(i % 251 for i in range(5000))  # 3520 linear bytes, then a frag of 1480
    retval = program(LOAD.format(offset=3518, size=4)).test_run(data, engine=engine).retval
    assert retval == int.from_bytes(data[3518:3522], "little")


def test_store_bytes_writes_across_the_frags(engine):
    prog = program("""
        stw [%r10-4], 0x04030201
        mov %r2, 3518
        mov %r3, %r10
        add %r3, -4
        mov %r4, 4
        call 190
        exit
    """)
    data = bytes(5000)
    result = prog.test_run(data, engine=engine)
    assert result.retval == 0
    assert result.data_out == data[:3518] + b"\x01\x02\x03\x04" + data[3522:]


@pytest.mark.parametrize(("offset", "code"), [(10, 0), (57, EINVAL), (0x10000, EFAULT)])
def test_store_bytes_writes_a_linear_packet_or_refuses(engine, offset, code):
    prog = program(f"""
        stw [%r10-4], 0x04030201
        mov %r2, {offset}
        mov %r3, %r10
        add %r3, -4
        mov %r4, 4
        call 190
        exit
    """)
    result = prog.test_run(PACKET, engine=engine)
    assert errno(result.retval) == code if code else result.retval == 0
    written = PACKET[:offset] + b"\x01\x02\x03\x04" + PACKET[offset + 4:]
    assert result.data_out == (PACKET if code else written)


def test_buff_len_counts_the_frags_and_data_end_does_not(engine):
    # r0 = get_buff_len(ctx) << 32 | (data_end - data)
    prog = program("""
        mov %r6, %r1
        call 188
        lsh %r0, 32
        ldxw %r2, [%r6+0]
        ldxw %r3, [%r6+4]
        sub %r3, %r2
        or %r0, %r3
        exit
    """)
    assert prog.test_run(bytes(9000), engine=engine).retval == 9000 << 32 | 3520


@pytest.mark.parametrize(("offset", "length"), [(10, 9010), (-10, 8990), (-4100, 4900), (-8200, 800)])
def test_adjust_tail_on_frags(engine, offset, length):
    # 9000 bytes: 3520 linear, frags of 4096 and 1384. Growing fills the last frag's page;
    # shrinking empties frags from the last one back, then takes from the linear part.
    data = bytes(i % 253 for i in range(9000))
    result = adjust(ADJUST_TAIL, offset, data, engine)
    assert result.retval == length
    expected = data[:length] if offset < 0 else data + bytes(offset)
    assert result.data_out == expected


def test_adjust_tail_grows_a_frag_only_within_its_page(engine):
    data = bytes(3520 + 4096)  # the last frag's page is full
    assert errno(adjust(ADJUST_TAIL, 1, data, engine).retval) == EINVAL


def test_ctx_in_data_end_short_of_the_input_puts_the_rest_in_frags(engine):
    # As the kernel does: the linear part ends at ctx_in's data_end, the rest of data_in is a frag.
    prog = program(ADJUST.format(helper=ADJUST_HEAD, offset=0))
    result = prog.test_run(PACKET, ctx=struct.pack(XDP_MD, 0, 20, 0, 0, 0, 0), engine=engine)
    assert result.retval == 60 and result.data_out == PACKET
    assert struct.unpack(XDP_MD, result.ctx_out)[:2] == (0, 20)


def test_input_needing_more_than_17_frags_is_refused(engine):
    with pytest.raises(BPFError, match="ENOMEM"):
        adjust(ADJUST_HEAD, 0, bytes(3520 + 17 * 4096 + 1), engine)


# Unverified: adjust_head(-4), then read the byte at data + {at} (data reloaded).
SANDBOXED_READ = """
    mov %r6, %r1
    mov %r2, -4
    call 44
    ldxw %r2, [%r6+0]
    ldxb %r0, [%r2{at:+d}]
    exit
"""


def test_sandbox_checks_follow_the_moved_packet(engine):
    assert program(SANDBOXED_READ.format(at=0), verify=False).test_run(PACKET, engine=engine).retval == 0
    assert program(SANDBOXED_READ.format(at=4), verify=False).test_run(PACKET, engine=engine).retval == PACKET[0]
    with pytest.raises(BPFRuntimeError):
        program(SANDBOXED_READ.format(at=-1), verify=False).test_run(PACKET, engine=engine)


def test_an_xdp_helper_on_another_programs_context_is_an_error(engine):
    """Refused at load by the verifier, as the kernel's xdp-only func_proto does; unverified, an
    error at run time."""
    with pytest.raises(VerifierError, match="program of this type cannot use helper bpf_xdp_get_buff_len#188"):
        Program.from_asm("call 188\nexit", prog_type="tc", helpers=standard_helpers(print))
    prog = Program.from_asm("call 188\nexit", prog_type="tc", helpers=standard_helpers(print), verify=False)
    with pytest.raises(BPFRuntimeError, match="not the context of an XDP program"):
        prog.test_run(PACKET, engine=engine)

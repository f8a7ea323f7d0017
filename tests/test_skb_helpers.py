"""Socket-buffer helpers with the kernel's test-run semantics, on both engines, verified."""
from __future__ import annotations

import pytest

from bpfjit.program import Program
from bpfjit.runtime.stdhelpers import standard_helpers

MASK64 = (1 << 64) - 1
EFAULT, EINVAL = 14, 22
# A socket filter sees its packet from the network header: 14 bytes of Ethernet are not its.
FRAME = bytes(range(0x40, 0x40 + 14)) + bytes(range(1, 51))

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


def program(text: str, prog_type: str = "socket") -> Program:
    return Program.from_asm(text, prog_type=prog_type, helpers=standard_helpers(print))


@pytest.mark.parametrize("engine", ["jit", "reference"])
def test_skb_load_bytes_reads_from_the_network_header(engine):
    got = program(LOAD_BYTES.format(offset=2)).test_run(FRAME, engine=engine).retval
    assert got == int.from_bytes(FRAME[14 + 2:14 + 6], "little")


@pytest.mark.parametrize("engine", ["jit", "reference"])
def test_skb_load_bytes_past_the_end_is_efault_with_a_zeroed_buffer(engine):
    got = program(LOAD_BYTES.format(offset=48)).test_run(FRAME, engine=engine).retval
    assert got == (-EFAULT & MASK64) << 32 & MASK64  # low half: the destination, zeroed


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


@pytest.mark.parametrize("engine", ["jit", "reference"])
def test_csum_diff_is_the_folded_difference(engine):
    source, target = 0x04030201, 0x08070605
    got = program(CSUM_DIFF.format(source=source, target=target, source_size=4, seed=0), "tc")
    # ~0x04030201 + 0x08070605 = 0xfbfcfdfe + 0x08070605 = 0x1_04040403, folded: 0x04040404
    assert got.test_run(bytes(64), engine=engine).retval == 0x04040404
    assert folded(0xFBFCFDFE + 0x08070605) == 0x04040404
    seeded = program(CSUM_DIFF.format(source=source, target=target, source_size=4, seed=0xFFFFFFFF), "tc")
    assert seeded.test_run(bytes(64), engine=engine).retval == folded(0x04040404 + 0xFFFFFFFF)


@pytest.mark.parametrize("engine", ["jit", "reference"])
def test_csum_diff_refuses_sizes_that_are_not_words(engine):
    odd = program(CSUM_DIFF.format(source=1, target=2, source_size=3, seed=0), "tc")
    assert odd.test_run(bytes(64), engine=engine).retval == -EINVAL & MASK64


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


@pytest.mark.parametrize("engine", ["jit", "reference", "interp"])
@pytest.mark.parametrize("length,result", [(0, 0), (len(FRAME), 0), (len(FRAME) + 1, -12)])
def test_skb_pull_data_succeeds_up_to_the_packets_end_and_is_enomem_past_it(engine, length, result):
    got = program(PULL_DATA.format(length=length), prog_type="tc").test_run(FRAME, engine=engine).retval
    assert got == ((result << 8) | FRAME[14]) & MASK64


def test_packet_pointers_from_before_a_pull_are_forgotten():
    from bpfjit import VerifierError
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

"""Verifier rules the hostile-program fuzzer (tests/test_verifier_fuzz.py) found broken, one
program each, reduced by hand: accepted, or rejected with the kernel's message
(kernel/bpf/verifier.c). A test marked xfail(strict=True) names a bug not fixed yet; it starts
failing (XPASS) when the fix lands, and then loses its mark."""
from __future__ import annotations

import pytest

from bpfjit import VerifierError
from bpfjit.program import Program

# r3 is read at the loop head (spilled), then set to the same constant on every iteration: the
# state at the head repeats, so the loop never ends. Found as a JIT run that hung.
ENDLESS_LOOP = """
    mov %r0, 0
    mov %r3, 0
l:  stxdw [%r10-8], %r3
    mov %r3, 2
    jlt %r3, 32, l
    exit
"""


def test_endless_loop_is_detected_in_packet_programs():
    with pytest.raises(VerifierError, match="infinite loop detected at insn 2"):
        Program.from_asm(ENDLESS_LOOP, prog_type="xdp", verify=True)


def test_endless_loop_is_detected_in_raw_programs():
    """Raw loops are widened (verifier/widen.py), but only after a few exact visits of the head,
    where an exact repeat is still the endless loop the kernel would report."""
    with pytest.raises(VerifierError, match="infinite loop detected at insn 2"):
        Program.from_asm(ENDLESS_LOOP, prog_type="raw", verify=True)


# A packet pointer plus a signed 16-bit offset, checked against data_end: the check bounds the
# offset from above only, so the pointer may still lie up to 32 KiB below the packet's start.
# The widened first pass used to assume such an offset was not negative; the fuzzer's program
# (a tc program, the offset read as an s16 from a map value) then read before the packet.
def _offset_checked_against_data_end(narrowing: str) -> str:
    return f"""
        ldxw %r2, [%r1+76]
        ldxw %r8, [%r1+80]
        ldxw %r3, [%r1+8]
        {narrowing}
        add %r2, %r3
        mov %r1, %r2
        add %r1, 8
        jge %r1, %r8, out
        ldxh %r0, [%r2+6]
    out:
        mov %r0, 0
        exit
    """


@pytest.mark.parametrize("prog_type", ["tc", "xdp"])
def test_a_signed_offset_below_data_end_may_still_be_negative(prog_type):
    source = _offset_checked_against_data_end("lsh %r3, 48\narsh %r3, 48")
    if prog_type == "xdp":
        source = source.replace("[%r1+76]", "[%r1+0]").replace("[%r1+80]", "[%r1+4]").replace("[%r1+8]", "[%r1+12]")
    with pytest.raises(VerifierError, match=r"insn 9: R2 min value is negative, either use unsigned index"):
        Program.from_asm(source, prog_type=prog_type, verify=True)


def test_an_unsigned_offset_below_data_end_is_accepted():
    Program.from_asm(_offset_checked_against_data_end("and %r3, 0xffff"), prog_type="tc", verify=True)

"""Verifier rules the hostile-program fuzzer (tests/test_verifier_fuzz.py) found broken, one
program each, reduced by hand: accepted, or rejected with the kernel's message
(kernel/bpf/verifier.c). A test marked xfail(strict=True) names a bug not fixed yet; it starts
failing (XPASS) when the fix lands, and then loses its mark and its entry in the fuzzer's
KNOWN_ISSUES."""
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

"""The socket-buffer helpers of packet programs (socket filters, tc, cgroup_skb), with the kernel's
test-run semantics: the packet is the run's "packet" region, from ``skb->data`` (the network
header for a socket filter, as BPF_PROG_TEST_RUN shows it).

``csum_diff`` is the kernel's ones'-complement difference of two word arrays as x86-64 computes it
(``csum_partial``: 32-bit words summed with their carries folded back in, seed included).
"""
from __future__ import annotations

import ctypes

from errno import EFAULT, EINVAL, ENOMEM

from bpfjit.isa import MASK32

from . import helper_args, run_context
from .helpers import errno_result
from .kernel_helpers import HELPER_IDS

ENOTSUPP = 524  # the kernel's own "operation not supported" (not in errno)
CSUM_DIFF_MAX = 512  # the kernel's scratch buffer: 128 words


def skb_load_bytes(skb: int, offset: int, to: int, size: int, *_: int) -> int:
    """Copy size bytes of the packet from offset; outside it, zeroes and -EFAULT."""
    size &= MASK32
    helper_args.check(to, size, 3, write=True)
    packet = run_context.current().regions.named("packet")
    offset = offset & MASK32
    if packet is None or offset + size > packet.size:
        ctypes.memset(to, 0, size)
        return errno_result(EFAULT)
    ctypes.memmove(to, packet.start + offset, size)
    return 0


def skb_pull_data(skb: int, length: int, *_: int) -> int:
    """Make the first `length` bytes (0: the linear part) direct-accessible. A test run's packet is
    all linear already, so only a length past its end fails, with the kernel's -ENOMEM
    (pskb_may_pull). The verifier has forgotten every packet pointer: the program reloads them."""
    packet = run_context.current().regions.named("packet")
    return errno_result(ENOMEM) if packet is None or (length & MASK32) > packet.size else 0


def csum_diff(source: int, source_size: int, target: int, target_size: int, seed: int) -> int:
    """seed + the target words - the source words, folded to 32 bits as csum_partial does."""
    source_size, target_size = source_size & MASK32, target_size & MASK32
    if (source_size | target_size) & 3 or source_size + target_size > CSUM_DIFF_MAX:
        return errno_result(EINVAL)
    helper_args.check(source, source_size, 1)
    helper_args.check(target, target_size, 3)
    words = [~w & MASK32 for w in _words(source, source_size)] + _words(target, target_size)
    total = (seed & MASK32) + sum(words)
    while total >> 32:
        total = (total & MASK32) + (total >> 32)
    return total


def csum_update(skb: int, csum: int, *_: int) -> int:
    """Only CHECKSUM_COMPLETE packets carry a checksum to update; a test run's never do."""
    return errno_result(ENOTSUPP)


def _words(address: int, size: int) -> list[int]:
    data = ctypes.string_at(address, size) if size else b""
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, size, 4)]


# (helper id, implementation, argument kinds, return kind), as runtime/stdhelpers.py's table.
TABLE = [
    (HELPER_IDS["skb_load_bytes"], skb_load_bytes, ("ctx", "any", "uninit_mem", "size"), "integer"),
    (HELPER_IDS["csum_diff"], csum_diff, ("mem", "size_or_zero", "mem", "size_or_zero", "any"), "integer"),
    (HELPER_IDS["csum_update"], csum_update, ("ctx", "any"), "integer"),
    (HELPER_IDS["skb_pull_data"], skb_pull_data, ("ctx", "any"), "integer"),
]

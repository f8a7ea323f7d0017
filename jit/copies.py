"""Find the byte-by-byte copies clang emits for memcpy, so that they can be done in one go.

BPF forbids unaligned accesses, so clang lowers ``__builtin_memcpy(eth->h_dest, mac, 6)`` to
pairs of one-byte load and store through a scratch register (``r3 = *(u8 *)(r2 + 2); *(u8 *)
(r1 + 2) = r3; ...``), in whatever order its scheduler chose. LLVM merges such pairs into wide
accesses only when it can tell that the stores do not overwrite later loads; between a packet
and a map value it cannot, so the copy stays bytes, and the next read of the destination as a
word waits on several byte stores to drain.

A copy here is a run of such pairs in one block with one source register and one destination
register, the same distance between every load's offset and its store's, and loads covering a
contiguous range of at least MIN_BYTES. The scratch registers may differ from pair to pair (the
last pair often reuses the source register, dead after it); each ends up holding the last byte
loaded into it. When the two ranges do not
overlap, the order of the bytes cannot matter, so the lowering copies them with one memcpy and
falls back to the pairs as written when they do (jit/lower.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from bpfjit import isa
from bpfjit.isa import Insn

MIN_BYTES = 4
_LOAD_BYTE = isa.LDX | isa.MEM | isa.B
_STORE_BYTE = isa.STX | isa.MEM | isa.B


@dataclass(frozen=True)
class Copy:
    """Slots [start, end): pairs copying [src + low, src + low + size) to dst + delta + the same."""
    start: int
    end: int
    src: int
    dst: int
    low: int
    size: int
    delta: int
    scratch: tuple[tuple[int, int], ...]  # (register, offset from src of the last byte it loaded)


def find_copies(insns: Sequence[Insn], start: int, end: int, block_starts: frozenset[int]) -> dict[int, Copy]:
    """The copies in the function [start, end), by their first slot."""
    found: dict[int, Copy] = {}
    index = start
    while index + 1 < end:
        copy = _copy_at(insns, index, end, block_starts)
        if copy is None:
            index += 1
        else:
            found[index] = copy
            index = copy.end
    return found


def _pair(insns: Sequence[Insn], index: int) -> tuple[int, int, int, int, int] | None:
    """(src, dst, scratch, load offset, store offset) of a load-byte / store-byte pair at index."""
    load, store = insns[index], insns[index + 1]
    if load.opcode != _LOAD_BYTE or store.opcode != _STORE_BYTE or store.src != load.dst:
        return None
    return load.src, store.dst, load.dst, load.off, store.off


def _copy_at(insns: Sequence[Insn], first: int, end: int, block_starts: frozenset[int]) -> Copy | None:
    head = _pair(insns, first)
    if head is None:
        return None
    src, dst, _, offset, target = head
    if isa.FRAME_POINTER in (src, dst):
        return None  # the stack stays an alloca, without address arithmetic
    delta, offsets, index, scratch = target - offset, [], first, {}
    while index + 1 < end and (index == first or index not in block_starts) and index + 1 not in block_starts:
        pair = _pair(insns, index)
        if pair is None or pair[:2] != (src, dst) or pair[4] - pair[3] != delta or pair[3] in offsets \
                or pair[2] == dst:
            break
        offsets.append(pair[3])
        scratch[pair[2]] = pair[3]
        index += 2
        if pair[2] == src:
            break  # the load replaced the source register: the run ends with this pair
    if len(offsets) < MIN_BYTES or max(offsets) - min(offsets) + 1 != len(offsets):
        return None
    return Copy(first, index, src, dst, min(offsets), len(offsets), delta, tuple(sorted(scratch.items())))

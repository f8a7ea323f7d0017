"""The memory one test run gives a program, as BPF_PROG_TEST_RUN builds it per program type: raw
programs get a copy of the data (r1, r2 = its length); packet programs a context around a copy of
the packet, with the kernel's headroom in front; ctx-only types (raw_tp, syscall, tracing) a copy
of the context alone. After the run, ``read_out`` gives data_out and ctx_out."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Callable

from bpfjit.errors import BPFError

from .context import (ETH_HLEN, MAX_PACKET_LEN, RUN_CTX, XDP_HEADROOM, ProgramType, build_native_ctx,
                      ctx_only_image, user_ctx)
from .memory import Buffer, Region


@dataclass
class RunMemory:
    """The memory of one test run: r1/r2, the regions the program may touch, how to read results."""
    r1: int
    r2: int
    regions: list[Region]
    buffers: list[Buffer]  # kept alive for the run
    read_out: Callable[[], tuple[bytes, bytes | None]]


def run_memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None) -> RunMemory:
    """The memory program `name` of type `ptype` runs on, for this data and ctx (BPFError for
    input the kernel's test run refuses)."""
    if ptype.layout is None:
        if ctx:
            raise BPFError(f"{name}: raw programs take no ctx (r1 is the data)")
        buffer = Buffer(len(data), data)
        region = Region(buffer.address, buffer.size, True, "program memory")
        return RunMemory(buffer.address, buffer.size, [region], [buffer], lambda: (buffer.read(), None))
    if ptype.test_run == RUN_CTX:
        return _ctx_only_memory(ptype, name, data, ctx)
    return _packet_memory(ptype, name, data, ctx)


def _ctx_only_memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None) -> RunMemory:
    """r1 = a copy of the ctx and nothing else; a syscall program's ctx comes back as ctx_out, as
    BPF_PROG_TEST_RUN copies it back."""
    if data:
        raise BPFError(f"{name}: {ptype.name} programs run on a ctx alone: pass ctx=..., no data")
    image = Buffer(ptype.layout.size, ctx_only_image(ptype, ctx))
    writable = any(f.writable for f in ptype.layout.fields)
    region = Region(image.address, image.size, writable, "context")
    given = len(ctx or b"")
    read_out = (lambda: (b"", image.read()[:given])) if writable else (lambda: (b"", None))
    return RunMemory(image.address, 0, [region], [image], read_out)


def _packet_memory(ptype: ProgramType, name: str, data: bytes, ctx: bytes | None) -> RunMemory:
    """r1 = the native context around a copy of the packet, XDP_HEADROOM bytes after its buffer's
    start; a type that does not see layer 2 starts at the network header."""
    if len(data) < ptype.min_data:
        raise BPFError(f"{name}: {ptype.name} programs need at least {ptype.min_data} bytes of data")
    if len(data) > MAX_PACKET_LEN:
        raise BPFError(f"{name}: a packet of {len(data)} bytes is longer than the {MAX_PACKET_LEN} "
                       "a program may see")
    packet = Buffer(XDP_HEADROOM + len(data), bytes(XDP_HEADROOM) + data)
    pulled = 0 if ptype.sees_l2 else ETH_HLEN
    start = packet.address + XDP_HEADROOM + pulled
    native = Buffer(ptype.layout.native_size, build_native_ctx(ptype, ctx, start, len(data) - pulled, data))
    layout = ptype.layout

    def read_out() -> tuple[bytes, bytes | None]:
        fields = {f.name: f for f in layout.fields}
        image = native.read()
        begin = int.from_bytes(image[fields["data"].native_offset:][:8], "little")
        end = int.from_bytes(image[fields["data_end"].native_offset:][:8], "little")
        # A pulled Ethernet header comes back zeroed, as the kernel pushes it back.
        return bytes(pulled) + ctypes.string_at(begin, max(0, end - begin)), user_ctx(ptype, image, start)

    regions = [Region(start, len(data) - pulled, True, "packet"),
               Region(native.address, native.size, True, "context")]
    return RunMemory(native.address, 0, regions, [packet, native], read_out)

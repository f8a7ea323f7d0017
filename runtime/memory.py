"""Native memory with stable addresses, and the registry of regions a program may touch.

Both engines work on the same real bytes: the JIT bakes addresses into machine code, and the
interpreter reads and writes through ctypes at the same addresses. The interpreter checks every
access against the :class:`Regions` it was given, so an out-of-bounds access in an unverified
program is a clean :class:`~bpfjit.errors.BPFRuntimeError` there instead of a crash.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass


class Buffer:
    """A zero-initialised native buffer that never moves while referenced."""

    def __init__(self, size: int, init: bytes | bytearray | memoryview = b""):
        if len(init) > size:
            raise ValueError("initial contents larger than the buffer")
        self.size = size
        # One spare byte keeps the address valid (and distinct) for zero-sized buffers.
        self._storage = (ctypes.c_uint8 * max(size, 1))()
        self.address = ctypes.addressof(self._storage)
        if init:
            ctypes.memmove(self.address, bytes(init), len(init))

    def read(self) -> bytes:
        return ctypes.string_at(self.address, self.size)

    def write(self, data: bytes | bytearray, offset: int = 0) -> None:
        if offset < 0 or offset + len(data) > self.size:
            raise ValueError("write outside the buffer")
        ctypes.memmove(self.address + offset, bytes(data), len(data))


@dataclass(frozen=True)
class Region:
    """A range of native memory a program may access."""
    start: int
    size: int
    writable: bool
    name: str

    def contains(self, address: int, size: int) -> bool:
        return self.start <= address and address + size <= self.start + self.size


class Regions:
    """The regions one run may touch; the interpreter checks each access against them."""

    def __init__(self, regions: list[Region] | None = None):
        self._regions: list[Region] = list(regions or [])

    def add(self, start: int, size: int, writable: bool, name: str) -> Region:
        region = Region(start, size, writable, name)
        self._regions.append(region)
        return region

    def remove(self, region: Region) -> None:
        self._regions.remove(region)

    def replace(self, old: Region, new: Region) -> None:
        """Put new where old was (a packet that moved or changed size); appended if old is gone."""
        if old in self._regions:
            self._regions[self._regions.index(old)] = new
        else:
            self._regions.append(new)

    def table(self) -> ctypes.Array:
        """The regions as (start, size, writable) u64 triples, for the JIT's sandbox check."""
        flat = [number for r in self._regions for number in (r.start, r.size, int(r.writable))]
        return (ctypes.c_uint64 * len(flat))(*flat)

    def named(self, name: str) -> Region | None:
        """The region of that name (the run's "packet"), or None."""
        return next((region for region in self._regions if region.name == name), None)

    def find(self, address: int, size: int, write: bool = False) -> Region | None:
        """A region holding [address, address + size); for a write, a writable one if any does
        (regions may overlap: a read-only context with its writable fields inside it)."""
        found = None
        for region in reversed(self._regions):  # newest first: stack frames are pushed last and accessed most
            if region.contains(address, size):
                if region.writable or not write:
                    return region
                found = found or region
        return found

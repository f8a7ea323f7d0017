"""Static keys: named switches that turn static-branch sites into jumps or no-ops at run time.

A site is a JA with a flavour (docs/semantics.md#static-branches): ``nop_or_goto`` (src_reg 3,
the "unlikely" flavour) jumps only while its key is enabled; ``goto_or_nop`` (src_reg 1, the
"likely" flavour) jumps only while its key is disabled. In one rule: a site jumps iff
(key enabled) XOR (likely). Keys start disabled, so every site starts in its flavour's initial
state.

The reference interpreter asks the key at every site it executes; the native interpreter reads a
byte per site that toggling rewrites (BranchFlag). Jitted code has no test at all: each site is 5
bytes of machine code (jit/sites.py) that toggling rewrites to ``jmp rel32`` or a 5-byte NOP.

How a toggle stays safe against a concurrent run of the same code: every site lies inside one
aligned 8-byte word (the JIT aligns it so), and is rewritten with a single aligned 8-byte store
of the whole word (the other 3 bytes keep their value). A CPU fetching the site therefore sees
either the old instruction or the new one, never a mix. The code page is made writable for the
store (mprotect) and read-only again afterwards; toggles are serialised by one lock.
"""
from __future__ import annotations

import ctypes
import mmap
import threading
import weakref
from dataclasses import dataclass

from bpfjit.errors import BPFError

NOP5 = bytes.fromhex("0f1f440000")
JMP_REL32 = 0xE9
PAGE = mmap.PAGESIZE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_PROT_RX = mmap.PROT_READ | mmap.PROT_EXEC
_PROT_RWX = _PROT_RX | mmap.PROT_WRITE
_patch_lock = threading.Lock()


@dataclass(frozen=True)
class NativeSite:
    address: int
    target: int
    likely: bool


def site_bytes(site: NativeSite, jump: bool) -> bytes:
    """The 5 bytes of a site: ``jmp rel32`` to its target, or a 5-byte NOP."""
    if not jump:
        return NOP5
    rel = site.target - (site.address + 5)
    return bytes([JMP_REL32]) + (rel & 0xFFFF_FFFF).to_bytes(4, "little")


def _protect(page: int, prot: int) -> None:
    if _libc.mprotect(page, PAGE, prot) != 0:
        raise BPFError(f"mprotect of code page {page:#x} failed (errno {ctypes.get_errno()})")


class PatchableWord:
    """The aligned 8-byte word holding one jitted site, with its two possible values computed once.

    No other site shares the word (5 bytes leave room for no second one) and the other 3 bytes
    are code that never changes, so a toggle is a single store of a precomputed value.
    """

    def __init__(self, site: NativeSite):
        address = site.address & ~7
        offset = site.address - address
        if offset > 3:
            raise BPFError(f"static-branch site {site.address:#x} crosses an 8-byte boundary")
        self.site = site
        self.likely = site.likely
        self.page = address & ~(PAGE - 1)
        self.word = ctypes.c_uint64.from_address(address)
        image = bytearray(self.word.value.to_bytes(8, "little"))
        self.values = {}
        for jump in (False, True):
            image[offset:offset + 5] = site_bytes(site, jump)
            self.values[jump] = int.from_bytes(image, "little")

    def write(self, jump: bool) -> None:
        self.word.value = self.values[jump]  # one aligned 8-byte store


@dataclass(frozen=True)
class BranchFlag:
    """An interpreted site: the byte the native interpreter reads each time it executes the JA
    (jit/native_interp_image.py), 1 while it jumps. A one-byte store is atomic, and needs no
    page made writable."""
    address: int
    likely: bool
    page = None

    def write(self, jump: bool) -> None:
        ctypes.c_uint8.from_address(self.address).value = int(jump)


Patchable = PatchableWord | BranchFlag


def patch(sites: list[tuple[Patchable, bool]]) -> None:
    """Set each site to jump or not, one atomic store per site. Callers hold _patch_lock."""
    pages = {site.page for site, _ in sites if site.page is not None}
    for page in pages:
        _protect(page, _PROT_RWX)
    try:
        for site, jump in sites:
            site.write(jump)
    finally:
        for page in pages:
            _protect(page, _PROT_RX)


class StaticKey:
    """A named switch over static-branch sites, in any number of programs and on every engine.

    Sites are held per owner (the compiled code or interpreter image they live in), weakly: when
    a program's code is freed its sites leave the key with it, so a later toggle never writes
    into freed memory."""

    def __init__(self, name: str):
        self.name = name
        self._enabled = False
        self._sites: list[tuple[weakref.ref, list[Patchable]]] = []  # (owner, its sites)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def enable(self) -> None:
        self.set(True)

    def disable(self) -> None:
        self.set(False)

    def set(self, enabled: bool) -> None:
        """Switch the key; every site of it, jitted or interpreted, is set before this returns."""
        with _patch_lock:
            self._enabled = bool(enabled)
            live = self._live()  # strong references: no owner is freed mid-patch
            patch([(site, self.jumps(site.likely)) for _, sites in live for site in sites])

    def jumps(self, likely: bool) -> bool:
        """Whether a site of this key with the given flavour jumps now."""
        return self._enabled != likely

    def attach(self, owner: object, sites: list[Patchable]) -> None:
        """Take over the sites of freshly built code (`owner` keeps their memory alive), setting
        them to the key's current state."""
        with _patch_lock:
            self._sites.append((weakref.ref(owner), sites))
            patch([(site, self.jumps(site.likely)) for site in sites])

    def _live(self) -> list[tuple[object, list[Patchable]]]:
        """The sites whose owners are alive, each with its owner; the others are dropped."""
        live = [(owner, sites) for ref, sites in self._sites if (owner := ref()) is not None]
        self._sites = [(weakref.ref(owner), sites) for owner, sites in live]
        return live

    @property
    def native_sites(self) -> list[NativeSite]:
        """The jitted sites, every copy LLVM made of each."""
        with _patch_lock:
            live = self._live()
        return [site.site for _, sites in live for site in sites if isinstance(site, PatchableWord)]

    def __repr__(self) -> str:
        state = "enabled" if self._enabled else "disabled"
        return f"<StaticKey {self.name!r} {state}, {len(self.native_sites)} jitted sites>"


def set_default(sites: list[Patchable]) -> None:
    """Sites with no key behave as a disabled key's sites: jump iff likely."""
    with _patch_lock:
        patch([(site, site.likely) for site in sites])

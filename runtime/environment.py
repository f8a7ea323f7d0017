"""What a program runs against, handed identically to the interpreter and the JIT.

The environment owns the helper registry, the global memory regions (maps, global data) a program
may touch, and the meaning of every ``ld_imm64`` with a pseudo source. Giving both engines the very
same object is what keeps their results comparable byte for byte.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from bpfjit import isa
from bpfjit.errors import ProgramError
from bpfjit.isa import Insn

from .btf.functions import FunctionPointerFacts
from .helpers import HelperRegistry
from .memory import Region
from .static_keys import StaticKey

# A BPF function's "address" as programs see it (ld_imm64 src=4, function pointers in global
# data, callx targets). The kernel puts a code address there that programs may only call or pass
# to helpers; a token that both engines agree on keeps their results identical and lets the JIT
# dispatch callx with a jump table. Raw programs number functions by their start slot; an ELF
# object numbers them object-wide, because one pointer in .data serves every program.
FUNC_TOKEN_BASE = 0xBFF0_0000_0000_0000


def func_token(number: int) -> int:
    """The value a program sees for function `number`."""
    return FUNC_TOKEN_BASE | number


PseudoResolver = Callable[[Insn, int], int]


@dataclass(frozen=True)
class ArrayLayout:
    """Where an array map keeps its values: what the JIT needs to inline a lookup."""
    value_base: int
    stride: int
    max_entries: int


@dataclass(frozen=True)
class HashLayout:
    """Where a hash map keeps its chains (runtime/hash_index.py), keys and values: what the JIT
    needs to inline a lookup."""
    heads: int
    links: int
    nbuckets: int
    key_base: int
    key_stride: int
    key_size: int
    value_base: int
    stride: int


@dataclass
class Environment:
    helpers: HelperRegistry = field(default_factory=HelperRegistry)
    regions: list[Region] = field(default_factory=list)
    # Resolves ld_imm64 with a map/BTF source to its 64-bit value; None for raw programs.
    resolve_pseudo: PseudoResolver | None = None
    # Function token -> start slot in this program; None: tokens are func_token(start slot).
    function_tokens: dict[int, int] | None = None
    # bpf_conformance lets callx name a helper by id; in clang-built objects callx only reaches
    # BPF functions (function pointers).
    callx_reaches_helpers: bool = True
    # The layout of the array map whose handle this is (None: not an inlinable array map).
    array_map: Callable[[int], ArrayLayout | None] = lambda handle: None
    # The layout of the hash map whose handle this is (None: not an inlinable hash map).
    hash_map: Callable[[int], HashLayout | None] = lambda handle: None
    # The bytes at [address, address + size) if they lie in a frozen read-only map, else None.
    frozen_bytes: Callable[[int, int], bytes | None] = lambda address, size: None
    # Static-branch sites (JA with a flavour) by slot, and the key that switches each.
    static_keys: dict[int, StaticKey] = field(default_factory=dict)
    # Per function start slot, whether its BTF prototype (.BTF.ext func_info) returns an int or
    # an enum; None without func_info (raw bytecode). The kernel's rule for subprograms with
    # legacy packet loads reads it (verifier/legacy_packet.py).
    returns_int: dict[int, bool] | None = None
    # The functions a pointer may name and the slots the object's data initialises (None for raw
    # bytecode): the verifier types function pointers in global data with them.
    function_pointers: FunctionPointerFacts | None = None
    # The program's jump tables (cpu v4 .jumptables, runtime/jump_tables.py): each the slots its
    # entries name, which gotox may reach.
    jump_tables: tuple[tuple[int, ...], ...] = ()
    # The program's BTF (None for raw bytecode): the verifier types bpf_obj_new's objects and
    # kptr fields by it.
    btf: Any = None
    # The program's kernel type (enum bpf_prog_type without its prefix; "" for raw programs), which
    # decides what a helper whose kernel implementation depends on it does (bpf_redirect: XDP's or
    # the skb programs'), for the Python helper, the JIT's inlined one and the native interpreter's.
    program_type: str = ""

    def static_branch_jumps(self, index: int, insn: Insn) -> bool:
        """Whether the static-branch JA at `index` jumps now: iff its key is enabled XOR it is
        the likely flavour (goto_or_nop); a site without a key behaves as a disabled key's."""
        likely = insn.src == isa.STATIC_BRANCH_JA
        key = self.static_keys.get(index)
        return (key is not None and key.enabled) != likely

    def token_of(self, start: int) -> int:
        """The token of the function starting at slot `start`."""
        if self.function_tokens is None:
            return func_token(start)
        return next(token for token, slot in self.function_tokens.items() if slot == start)

    def function_of(self, value: int) -> int | None:
        """The start slot of the function a token names, or None if value names none."""
        if self.function_tokens is None:
            return value - FUNC_TOKEN_BASE if value & ~0xFFFF_FFFF == FUNC_TOKEN_BASE else None
        return self.function_tokens.get(value)

    def callx_targets(self, function_starts: frozenset[int]) -> list[int]:
        """Start slots of the functions a callx may reach: those that have a token."""
        if self.function_tokens is None:
            return sorted(function_starts)
        return sorted(set(self.function_tokens.values()))

    def ld_imm64_value(self, insn: Insn, index: int) -> int:
        """The 64-bit value an ld_imm64 at `index` loads, whatever its pseudo source."""
        if insn.src == 0:
            return insn.imm64
        if insn.src == isa.PSEUDO_FUNC:
            return self.token_of(index + 1 + insn.imm)
        if self.resolve_pseudo is None:
            raise ProgramError(index, f"ld_imm64 with pseudo source {insn.src} needs maps, and this program has none")
        return self.resolve_pseudo(insn, index)

"""What a program runs against, handed identically to the interpreter and the JIT.

The environment owns the helper registry, the global memory regions (maps, global data) a program
may touch, and the meaning of every ``ld_imm64`` with a pseudo source. Giving both engines the very
same object is what keeps their results comparable byte for byte.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bpfjit import isa
from bpfjit.errors import ProgramError
from bpfjit.isa import Insn

from .helpers import HelperRegistry
from .memory import Region

# A BPF function's "address" as programs see it (ld_imm64 src=4, callx targets). The kernel puts
# a code address there that programs may only call or pass to helpers; a token that both engines
# agree on keeps their results identical and lets the JIT dispatch callx with a jump table.
FUNC_TOKEN_BASE = 0xBFF0_0000_0000_0000
FUNC_TOKEN_MASK = 0xFFFF_FFFF


def func_token(index: int) -> int:
    """The value a program sees for the BPF function starting at slot `index`."""
    return FUNC_TOKEN_BASE | index


def token_function(value: int) -> int | None:
    """The slot index a function token names, or None if value is not a token."""
    if value & ~FUNC_TOKEN_MASK == FUNC_TOKEN_BASE:
        return value & FUNC_TOKEN_MASK
    return None


PseudoResolver = Callable[[Insn, int], int]


@dataclass
class Environment:
    helpers: HelperRegistry = field(default_factory=HelperRegistry)
    regions: list[Region] = field(default_factory=list)
    # Resolves ld_imm64 with a map/BTF source to its 64-bit value; None for raw programs.
    resolve_pseudo: PseudoResolver | None = None

    def ld_imm64_value(self, insn: Insn, index: int) -> int:
        """The 64-bit value an ld_imm64 at `index` loads, whatever its pseudo source."""
        if insn.src == 0:
            return insn.imm64
        if insn.src == isa.PSEUDO_FUNC:
            return func_token(index + 1 + insn.imm)
        if self.resolve_pseudo is None:
            raise ProgramError(index, f"ld_imm64 with pseudo source {insn.src} needs maps, and this program has none")
        return self.resolve_pseudo(insn, index)

"""A program as the native interpreter reads it: pre-decoded once per program, in native memory.

The interpreter loop (jit/native_interp_ir.py) knows nothing of environments, pseudo sources or
helper registries. Everything it would have to look up is settled here, once:

* the code: one u64 per slot in the layout of the kernel's ``struct bpf_insn`` (opcode, dst:4,
  src:4, off:16, imm:32), each ld_imm64's 64-bit value resolved as the JIT sees it
  (``Environment.ld_imm64_value``) into the imm fields of its two slots, as the kernel's loader
  leaves a map address; a callx's register moved into dst (LLVM <= 18 puts it in imm);
* helper calls renumbered: imm becomes an index into a dense table of (native function, flags)
  pairs, so any helper id (up to 2^31) costs one indexed load; callx looks helper ids up in a
  second table of (id, index) pairs when the environment lets callx reach helpers;
* the function table: (token, start slot) pairs callx looks its target up in;
* accesses the verifier left to the run (Facts.checked_accesses) moved to a spare addressing mode
  (native_interp_ir.CHECKED_MODE), which the fast variant checks against the raw memory;
* a byte per slot saying whether a static-branch JA jumps, read at every execution of the site
  (refresh_static_branches writes the keys' current states);
* instructions no engine runs (legacy packet loads, gotox, kfunc calls, unknown helpers) turned
  into the trap opcode, with the reference interpreter's message kept for the instruction.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from bpfjit import isa
from bpfjit.isa import Insn, MASK32
from bpfjit.runtime.environment import Environment, func_token

from .native_interp_ir import CHECKED_MODE, STOPS_ON_ZERO, TRAP_OPCODE


class ImageHeader(ctypes.Structure):
    """What the interpreter is handed; field order is native_interp_ir's IMAGE_* indexes."""
    _fields_ = [
        ("code", ctypes.c_void_p),
        ("helpers", ctypes.c_void_p),  # (function, flags) u64 pairs, by index
        ("helper_ids", ctypes.c_void_p),  # (helper id, index) u64 pairs, for callx
        ("helper_id_count", ctypes.c_uint64),
        ("functions", ctypes.c_void_p),  # (token, start slot) u64 pairs, for callx
        ("function_count", ctypes.c_uint64),
        ("branches", ctypes.c_void_p),  # one byte per slot: the static-branch JA there jumps now
    ]


@dataclass
class ProgramImage:
    header: ImageHeader
    traps: dict[int, str]  # slot -> why the reference interpreter refuses the instruction there
    insns: Sequence[Insn]
    env: Environment
    _arrays: list[ctypes.Array] = field(default_factory=list)  # kept alive with the image

    def refresh_static_branches(self) -> None:
        """Write each static-branch site's current direction (its key's state) into the image."""
        branches = self._arrays[-1]
        for index, insn in enumerate(self.insns):
            if insn.opcode == isa.JA_OP and insn.src:
                branches[index] = int(self.env.static_branch_jumps(index, insn))


def encode_slot(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> int:
    """One u64 slot in struct bpf_insn's little-endian layout."""
    return opcode | dst << 8 | src << 12 | (off & 0xFFFF) << 16 | (imm & MASK32) << 32


def _pairs(pairs: Iterable[tuple[int, int]]) -> ctypes.Array:
    flat = [word for pair in pairs for word in pair]
    return (ctypes.c_uint64 * max(1, len(flat)))(*flat)


def build_image(insns: Sequence[Insn], env: Environment, function_starts: Iterable[int],
                checked_accesses: Iterable[int], helper_address: Callable[[int], int]) -> ProgramImage:
    """Pre-decode a structurally checked program (Program.insns: ctx accesses already rewritten).

    function_starts: the slots where BPF functions start (Facts.function_starts).
    checked_accesses: the accesses a verified program checks at run time (Facts.checked_accesses).
    helper_address: the native address to call for a helper id (a native helper, or a ctypes
    callback the caller keeps alive as long as the image)."""
    checked = frozenset(checked_accesses)
    starts = frozenset(function_starts)
    helper_index: dict[int, int] = {}

    def index_of(helper_id: int) -> int:
        return helper_index.setdefault(helper_id, len(helper_index))

    code = (ctypes.c_uint64 * max(1, len(insns)))()
    traps: dict[int, str] = {}
    for index, insn in enumerate(insns):
        if isa.is_filler(insns, index):
            continue
        opcode, dst, src, off, imm = insn.opcode, insn.dst, insn.src, insn.off, insn.imm
        reason = None
        if insn.is_lddw:
            value = env.ld_imm64_value(insn, index)
            src, imm = 0, value & MASK32
            code[index + 1] = encode_slot(0, imm=value >> 32)
        elif insn.cls == isa.LD:
            reason = "legacy packet access (BPF_LD_ABS/IND) is not supported"
        elif opcode == isa.GOTOX_OP:
            reason = "gotox needs jump tables, which raw programs do not have"
        elif opcode == isa.CALL_OP and src == isa.CALL_KFUNC:
            reason = "kfunc calls are not supported"
        elif opcode == isa.CALL_OP and src == isa.CALL_HELPER:
            if env.helpers.get(imm) is None:
                reason = f"call to unknown helper {imm}"
            else:
                imm = index_of(imm)
        elif opcode == isa.CALLX_OP:
            dst, imm = insn.callx_reg, 0
        elif index in checked and insn.cls in (isa.LDX, isa.ST, isa.STX):
            base = src if insn.cls == isa.LDX or (insn.mode == isa.ATOMIC and imm == isa.LOAD_ACQ) else dst
            if base != isa.FRAME_POINTER:
                opcode = CHECKED_MODE[insn.cls | insn.mode] | insn.size
        if reason is not None:
            traps[index] = reason
            opcode, dst, src, off, imm = TRAP_OPCODE, 0, 0, 0, 0
        code[index] = encode_slot(opcode, dst, src, off, imm)
    helper_ids: list[tuple[int, int]] = []
    if env.callx_reaches_helpers and any(insn.opcode == isa.CALLX_OP for insn in insns):
        helper_ids = [(helper.id, index_of(helper.id)) for helper in env.helpers]
    helpers = _pairs((helper_address(helper_id), STOPS_ON_ZERO if env.helpers.get(helper_id).stops_on_zero else 0)
                     for helper_id in helper_index)
    if env.function_tokens is None:
        functions = [(func_token(start), start) for start in sorted(starts)]
    else:
        functions = [(token, start) for token, start in env.function_tokens.items() if start in starts]
    ids, function_table = _pairs(helper_ids), _pairs(functions)
    branches = (ctypes.c_uint8 * max(1, len(insns)))()
    header = ImageHeader(ctypes.addressof(code), ctypes.addressof(helpers), ctypes.addressof(ids), len(helper_ids),
                         ctypes.addressof(function_table), len(functions), ctypes.addressof(branches))
    image = ProgramImage(header, traps, insns, env, [code, helpers, ids, function_table, branches])
    image.refresh_static_branches()
    return image

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
* the function table: (token, start slot) pairs callx looks its target up in (and the
  loops below their callback);
* calls of the standard ``bpf_loop`` and ``bpf_for_each_map_elem`` (not a helper the user
  registered under their ids, the JIT's condition in jit/lower.py) given call codes of their own
  (native_interp_ir.CALL_BPF_LOOP, CALL_FOR_EACH_ARRAY), which the interpreter runs as native
  loops around a nested interpretation of the callback, keeping the helper's index in imm for
  the cases it hands to the Python helper (a callback or map it does not find); and a table of
  the array maps the program loads, (handle, layout) pairs, for_each finds its map in;
* calls of the standard ``bpf_tail_call`` given a call code of their own (native_interp_ir.CALL_TAIL),
  with a table of the prog arrays the program loads, (handle, (image table, max entries, the
  word of an empty slot)) pairs
  (runtime/maps/fd_array.py ProgArray.image_table), where the interpreter finds the image to
  switch to;
* accesses the verifier left to the run (Facts.checked_accesses) moved to a spare addressing mode
  (native_interp_ir.CHECKED_MODE), which the fast variant checks against the raw memory;
* a byte per slot saying whether a static-branch JA jumps, read at every execution of the site;
  the site's static key writes it when toggled (runtime/static_keys.py BranchFlag), so a toggle
  reaches a run in progress, as a patched jitted site does;
* the targets of gotox: one u32 per slot naming the set of gotox instructions that may jump
  there (those of the function whose jump tables hold it: runtime/jump_tables.py), and in each
  gotox's imm the number of its set;
* instructions no engine runs (kfunc calls, unknown helpers) turned into the trap opcode,
  with the reference interpreter's message kept for the instruction.
"""
from __future__ import annotations

import array
import ctypes
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from bpfjit import isa
from bpfjit.isa import Insn, MASK32
from bpfjit.runtime.environment import Environment, func_token
from bpfjit.runtime.jump_tables import BAD_TARGET, gotox_targets, program_tables
from bpfjit.runtime.maps import ProgArray, map_from_handle
from bpfjit.runtime.static_keys import BranchFlag
from bpfjit.runtime.status import UNLIMITED
from bpfjit.runtime.stdhelpers import (FOR_EACH_MAP_ELEM, LOOP, REDIRECT, REDIRECT_MAP, TAIL_CALL, for_each_map_elem,
                                       loop, redirect, redirect_map, tail_call)

from .native_interp_ir import (CALL_BPF_LOOP, CALL_FOR_EACH_ARRAY, CALL_REDIRECT_MAP, CALL_REDIRECT_SKB,
                               CALL_REDIRECT_XDP, CALL_TAIL, CHECKED_MODE, FALL_THROUGH_TRIP, STOPS_ON_ZERO, TAKEN_TRIP,
                               TRAP_OPCODE)

# The helpers the interpreter runs itself when they are the standard implementation (native
# loops, the tail call's switch of image, the redirects' records), and the call code it knows
# each by (bpf_redirect's is XDP's; the skb programs' is CALL_REDIRECT_SKB).
_OWN_CALLS = {LOOP: (loop, CALL_BPF_LOOP), FOR_EACH_MAP_ELEM: (for_each_map_elem, CALL_FOR_EACH_ARRAY),
              TAIL_CALL: (tail_call, CALL_TAIL), REDIRECT_MAP: (redirect_map, CALL_REDIRECT_MAP),
              REDIRECT: (redirect, CALL_REDIRECT_XDP)}


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
        ("gotox_targets", ctypes.c_void_p),  # one u32 per slot: the gotox set that may jump there (0: none)
        ("slot_count", ctypes.c_uint64),
        ("token_function_count", ctypes.c_uint64),  # the functions' leading run: those with a token
        ("array_maps", ctypes.c_void_p),  # (handle, address of (value base, stride, max entries)) pairs
        ("array_map_count", ctypes.c_uint64),
        ("prog_arrays", ctypes.c_void_p),  # (handle, address of (image table, max entries, empty word)) pairs
        ("prog_array_count", ctypes.c_uint64),
        ("trip_limit", ctypes.c_uint64),  # loop trips a run may take (Facts.trip_limit; UNLIMITED: not limited)
        ("loop_edges", ctypes.c_void_p),  # a byte per slot, TAKEN_TRIP | FALL_THROUGH_TRIP (null: no loop edge)
        ("context_proven", ctypes.c_uint64),  # 1: verified, r6 at a legacy load is the context (header offsets)
    ]


@dataclass
class ProgramImage:
    header: ImageHeader
    traps: dict[int, str]  # slot -> why the reference interpreter refuses the instruction there (or may)
    insns: Sequence[Insn]
    env: Environment
    helper_order: list[int]  # the helper ids, by their index in the code
    branches: ctypes.Array  # one byte per slot: whether the static-branch JA there jumps now
    branch_slots: list[int]  # the static-branch JAs' slots
    loaded: frozenset[int] = frozenset()  # every ld_imm64 value (map handles among them)
    _arrays: list[ctypes.Array] = field(default_factory=list)  # kept alive with the image

    def bind_helpers(self, helper_address: Callable[[int], int]) -> None:
        """Fill the helper table: the native address to call for each helper id (a native
        helper, or a ctypes callback the caller keeps alive as long as the image)."""
        helpers = _pairs((helper_address(helper_id), STOPS_ON_ZERO if self.env.helpers.get(helper_id).stops_on_zero
                          else 0) for helper_id in self.helper_order)
        self._arrays.append(helpers)
        self.header.helpers = ctypes.addressof(helpers)

    def branch_flags(self) -> list[tuple[int, BranchFlag]]:
        """Each static-branch site's byte (slot, flag), for its key to set from now on."""
        base = ctypes.addressof(self.branches)
        return [(index, BranchFlag(base + index, self.insns[index].src == isa.STATIC_BRANCH_JA))
                for index in self.branch_slots]


def encode_slot(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> int:
    """One u64 slot in struct bpf_insn's little-endian layout."""
    return opcode | dst << 8 | src << 12 | (off & 0xFFFF) << 16 | (imm & MASK32) << 32


def _pairs(pairs: Iterable[tuple[int, ...]]) -> ctypes.Array:
    """The tuples' words, flat, as u64s (at least one, so the array has an address)."""
    flat = [word for pair in pairs for word in pair]
    return (ctypes.c_uint64 * max(1, len(flat)))(*flat)


# Opcodes whose slot is not their plain encoding: the LD class (ld_imm64, legacy packet loads),
# calls and gotox; and JA, which may be a static branch.
_SPECIAL = frozenset({isa.CALL_OP, isa.CALLX_OP, isa.GOTOX_OP, isa.JA_OP}
                     | {opcode for opcode in range(256) if opcode & 7 == isa.LD})


def build_image(insns: Sequence[Insn], env: Environment, function_starts: Iterable[int],
                checked_accesses: Iterable[int],
                callx_sites: Mapping[int, frozenset[int]] | None = None,
                trip_limit: int | None = None, loop_edges: Iterable[tuple[int, int]] = (),
                context_proven: bool = False) -> ProgramImage:
    """Pre-decode a structurally checked program (Program.insns: ctx accesses already rewritten),
    except its helper addresses (ProgramImage.bind_helpers). Resolving each ld_imm64 here is
    what reports a bad pseudo source at load.

    function_starts: the slots where BPF functions start (Facts.function_starts).
    checked_accesses: the accesses a verified program checks at run time (Facts.checked_accesses).
    callx_sites: the functions each callx of a verified program may reach (Facts.callx_sites).
    trip_limit, loop_edges: the loop trips a run may take, and the jumps that are one
    (Facts.trip_limit and loop_edges; None: no limit).
    context_proven: the program is verified, so r6 at a legacy packet load is the run's context,
    whose runtime words say where the headers that negative offsets name are.

    Cheap enough to run at every load (a program of 100,000 instructions takes tens of ms): most
    slots are their plain encoding, made in one pass; only the special ones are revisited."""
    starts = frozenset(function_starts)
    helper_index: dict[int, int] = {}

    def index_of(helper_id: int) -> int:
        return helper_index.setdefault(helper_id, len(helper_index))

    words = array.array("Q", [i.opcode | i.dst << 8 | i.src << 12 | (i.off & 0xFFFF) << 16 | (i.imm & MASK32) << 32
                              for i in insns] or [0])
    code = (ctypes.c_uint64 * len(words)).from_buffer(words)
    traps: dict[int, str] = {}
    loaded: set[int] = set()  # the ld_imm64 values: the maps for_each and tail calls may be handed
    own_calls: set[int] = set()  # the call codes of _OWN_CALLS the program makes
    gotox_sets, gotox_targets_table = _gotox_table(insns, starts, env)
    special = [index for index, insn in enumerate(insns) if insn.opcode in _SPECIAL]
    functions, token_functions, callx_refs = _function_table(insns, special, starts, env, callx_sites or {})
    branch_slots = [index for index in special if insns[index].opcode == isa.JA_OP and insns[index].src]
    for index in sorted({*special, *checked_accesses}):
        insn = insns[index]
        if isa.is_filler(insns, index) or insn.opcode == isa.JA_OP:
            continue
        opcode, dst, src, off, imm = insn.opcode, insn.dst, insn.src, insn.off, insn.imm
        reason = None
        if insn.is_lddw:
            value = env.ld_imm64_value(insn, index)
            loaded.add(value)
            src, imm = 0, value & MASK32
            code[index + 1] = encode_slot(0, imm=value >> 32)
        elif opcode == isa.GOTOX_OP:
            imm = gotox_sets[index]
            traps[index] = BAD_TARGET  # what a jump to a slot the set does not hold stops with
        elif opcode == isa.CALL_OP and src == isa.CALL_KFUNC:
            reason = "kfunc calls are not supported"
        elif opcode == isa.CALL_OP and src == isa.CALL_HELPER:
            helper = env.helpers.get(imm)
            if helper is None:
                reason = f"call to unknown helper {imm}"
            else:
                standard, own_code = _OWN_CALLS.get(imm, (None, src))
                if own_code == CALL_REDIRECT_XDP and env.program_type != "XDP":
                    own_code = CALL_REDIRECT_SKB
                src = own_code if helper.impl is standard else src
                own_calls.add(src)
                imm = index_of(imm)
        elif opcode == isa.CALLX_OP:
            dst, imm = insn.callx_reg, callx_refs[index]
        elif insn.cls in (isa.LDX, isa.ST, isa.STX):  # an access the verifier left to the run
            base = src if insn.cls == isa.LDX or (insn.mode == isa.ATOMIC and imm == isa.LOAD_ACQ) else dst
            if base != isa.FRAME_POINTER:
                opcode = CHECKED_MODE[insn.cls | insn.mode] | insn.size
        if reason is not None:
            traps[index] = reason
            opcode, dst, src, off, imm = TRAP_OPCODE, 0, 0, 0, 0
        code[index] = encode_slot(opcode, dst, src, off, imm)
    helper_ids: list[tuple[int, int]] = []
    if env.callx_reaches_helpers and any(insns[index].opcode == isa.CALLX_OP for index in special):
        helper_ids = [(helper.id, index_of(helper.id)) for helper in env.helpers]
    ids, function_table = _pairs(helper_ids), _pairs(functions)
    layouts, array_maps, array_map_count = _array_maps(loaded if CALL_FOR_EACH_ARRAY in own_calls else (), env)
    tables, prog_arrays, prog_array_count = _prog_arrays(loaded if CALL_TAIL in own_calls else ())
    branches = (ctypes.c_uint8 * max(1, len(insns)))()
    trips = (ctypes.c_uint8 * (len(insns) if loop_edges else 0))()
    for source, target in loop_edges:  # (a jump to the next slot has one edge, counted either way)
        taken = insns[source].opcode == isa.GOTOX_OP or insns[source].jump_target(source) == target
        trips[source] |= (TAKEN_TRIP if taken else 0) | (FALL_THROUGH_TRIP if target == source + 1 else 0)
    header = ImageHeader(ctypes.addressof(code), 0, ctypes.addressof(ids), len(helper_ids),
                         ctypes.addressof(function_table), len(functions), ctypes.addressof(branches),
                         ctypes.addressof(gotox_targets_table), len(insns), token_functions,
                         ctypes.addressof(array_maps), array_map_count, ctypes.addressof(prog_arrays),
                         prog_array_count, UNLIMITED if trip_limit is None else trip_limit,
                         ctypes.addressof(trips) if loop_edges else 0, int(context_proven))
    for index in branch_slots:
        branches[index] = int(env.static_branch_jumps(index, insns[index]))  # its key's state now
    return ProgramImage(header, traps, insns, env, list(helper_index), branches, branch_slots, frozenset(loaded),
                        [words, ids, function_table, gotox_targets_table, layouts, array_maps, tables, prog_arrays,
                         trips])


def _function_table(insns: Sequence[Insn], special: Sequence[int], starts: frozenset[int], env: Environment,
                    callx_sites: Mapping[int, frozenset[int]]) -> tuple[list[tuple[int, int]], int, dict[int, int]]:
    """The (token, start slot) pairs callx looks its target up in; how many of them lead the
    table: the run of every function with a token (where a loop's callback is looked up); and for
    each callx the run of pairs it looks in, as its imm: the first pair's index, plus the count
    << 16. A verified program's callx has a run of its own, the functions the verifier followed
    it into (those whose prototype fits); the others share the run of every function with a
    token."""
    if env.function_tokens is None:
        functions = [(func_token(start), start) for start in sorted(starts)]
    else:
        functions = [(token, start) for token, start in env.function_tokens.items() if start in starts]
    every = len(functions) << 16
    refs = {}
    for index in special:
        if insns[index].opcode == isa.CALLX_OP:
            if index in callx_sites:
                refs[index] = len(functions) | len(callx_sites[index]) << 16
                functions += [(env.token_of(start), start) for start in sorted(callx_sites[index])]
            else:
                refs[index] = every
    return functions, every >> 16, refs


def _array_maps(values: Iterable[int], env: Environment) -> tuple[ctypes.Array, ctypes.Array, int]:
    """The array maps among the ld_imm64 values: their layouts (value base, stride, max entries),
    the (handle, address of its layout) pairs for_each looks its map up in, and their count."""
    return _keyed_words([(handle, (layout.value_base, layout.stride, layout.max_entries)) for handle in sorted(values)
                         if (layout := env.array_map(handle)) is not None])


def _prog_arrays(values: Iterable[int]) -> tuple[ctypes.Array, ctypes.Array, int]:
    """The prog arrays among the ld_imm64 values: their (image table, max entries, the word of an
    empty slot) words, the (handle, address of those words) pairs a tail call looks its array up
    in, and their count. The map keeps its table where it is for as long as it lives, and its
    handle names it alone."""
    return _keyed_words([(handle, (prog_array.image_table, prog_array.max_entries, ProgArray.EMPTY_ENTRY))
                         for handle in sorted(values) if isinstance(prog_array := map_from_handle(handle), ProgArray)])


def _keyed_words(found: Sequence[tuple[int, tuple[int, ...]]]) -> tuple[ctypes.Array, ctypes.Array, int]:
    """Each handle's words, one record after another; the (handle, address of its record) pairs
    the interpreter scans for a handle; and their count."""
    records = _pairs(words for _, words in found)
    base, offset, pairs = ctypes.addressof(records), 0, []
    for handle, words in found:
        pairs.append((handle, base + offset))
        offset += 8 * len(words)
    return records, _pairs(pairs), len(found)


def _gotox_table(insns: Sequence[Insn], starts: frozenset[int],
                 env: Environment) -> tuple[dict[int, int], ctypes.Array]:
    """Each gotox's set number (from 1; the gotox of one function share theirs), and the u32 per
    slot that names the set whose targets include it (0: a slot no gotox may reach)."""
    numbers: dict[frozenset[int], int] = {}
    table = (ctypes.c_uint32 * max(1, len(insns)))()
    sets = {}
    for index, targets in gotox_targets(insns, starts, program_tables(insns, env.ld_imm64_value)).items():
        sets[index] = numbers.setdefault(targets, len(numbers) + 1)
        for target in targets:
            table[target] = sets[index]
    return sets, table

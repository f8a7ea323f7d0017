"""Jump tables (clang's ``.jumptables``, cpu v4): what a ``gotox`` may reach, and their memory.

A C switch that clang-22 compiles for ``-mcpu=v4`` to a table loads the target's address from
the table and jumps there with ``gotox rX``. libbpf turns each table a program uses into a map of
its own, ``BPF_MAP_TYPE_INSN_ARRAY``, whose entries are instruction offsets in that program, and
the table's ``ld_imm64`` into an address in the map's value (docs/semantics.md). bpfjit does the
same: the ELF loader gives each (program, table) pair the program's slots
(:class:`JumpTable`), and :func:`create_table_map` makes its map: one read-only, frozen value of
one u64 slot number per entry, which every engine reads as the program does. The numbers are
never visible as such: the verifier types what is loaded from the map as a pointer to an
instruction, which only ``gotox`` may use.

Which targets one ``gotox`` may reach is decided as the kernel's check_cfg decides it: the
tables are those the program's ld_imm64 instructions name (:func:`program_tables`, the kernel's
insn_array_maps), and a gotox may reach every entry of every table whose first entry lies in its
function (:func:`targets_in`). The structure check, the interpreters and the JIT all ask these.
"""
from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from bpfjit import isa
from bpfjit.isa import Insn

from .map_types import MapType
from .maps import BPF_F_RDONLY_PROG, ArrayMap, MapSpec

ENTRY_SIZE = 8  # a table entry: a u64 (clang writes byte offsets; the map holds slots)
# Every engine's error for a gotox to a slot that is not one of its targets (runtime/status.py
# BAD_GOTOX gives it for the JIT).
BAD_TARGET = "gotox to a slot no jump table of its function holds"


@dataclass(frozen=True)
class JumpTable:
    """One table as one program uses it: its map's name, and the program's slot of each entry."""
    name: str  # the map's name (unique in the object)
    symbol: str  # the table's symbol in .jumptables (BPF.JT.0.0)
    targets: tuple[int, ...]


class InsnArray(ArrayMap):
    """BPF_MAP_TYPE_INSN_ARRAY as a program sees it: one value of ``8 * entries`` bytes (the
    kernel lets a program read its entries as one array of longs, map_mem_size)."""

    type_name = "insn_array"


# The live table maps by the address of their value (what the table's ld_imm64 loads).
_live: "weakref.WeakValueDictionary[int, InsnArray]" = weakref.WeakValueDictionary()


def create_table_map(table: JumpTable) -> InsnArray:
    """The table's map: its entries as u64 slot numbers, read-only for the program and frozen."""
    size = ENTRY_SIZE * len(table.targets)
    created = InsnArray(MapSpec(table.name, MapType.INSN_ARRAY, 4, size, 1, BPF_F_RDONLY_PROG, 0, 0))
    created.update_elem(0, struct.pack(f"<{len(table.targets)}Q", *table.targets))
    created.freeze()
    _live[created.value_address(0)] = created
    return created


def table_at(address: int) -> tuple[int, ...] | None:
    """The entries of the live jump table whose value holds `address`, or None."""
    for base, table in list(_live.items()):
        if base <= address < base + table.value_size:
            return entries_of(table)
    return None


def entries_of(table: InsnArray) -> tuple[int, ...]:
    """A table map's entries: the slots its value holds."""
    return struct.unpack(f"<{table.value_size // ENTRY_SIZE}Q", table[0])


def program_tables(insns: Sequence[Insn], value_of: Callable[[Insn, int], int]) -> tuple[tuple[int, ...], ...]:
    """The entries of each jump table the program's ld_imm64 instructions name (value_of:
    Environment.ld_imm64_value), in the order they first name them."""
    found: dict[int, tuple[int, ...]] = {}
    for index in isa.slots(insns):
        insn = insns[index]
        if insn.is_lddw and insn.src in (isa.PSEUDO_MAP_VALUE, isa.PSEUDO_MAP_IDX_VALUE):
            address = value_of(insn, index)
            entries = table_at(address)
            if entries is not None:
                found.setdefault(address, entries)
    return tuple(found.values())


def targets_in(tables: Iterable[Sequence[int]], start: int, end: int) -> tuple[int, ...]:
    """The slots a gotox in the function [start, end) may jump to, sorted: the entries of the
    tables whose first entry lies in that function (the kernel's create_jt). The caller checks
    that they all lie inside it."""
    return tuple(sorted({slot for table in tables if table and start <= table[0] < end for slot in table}))


def gotox_targets(insns: Sequence[Insn], function_starts: Iterable[int],
                  tables: Sequence[Sequence[int]]) -> dict[int, frozenset[int]]:
    """For each gotox of a program, the slots it may jump to (targets_in its function): what an
    engine checks a loaded entry against before it jumps."""
    bounds = sorted(function_starts) + [len(insns)]
    found: dict[int, frozenset[int]] = {}
    for start, end in zip(bounds, bounds[1:]):
        for index in isa.slots(insns, start, end):
            if insns[index].opcode == isa.GOTOX_OP:
                found[index] = frozenset(targets_in(tables, start, end))
    return found

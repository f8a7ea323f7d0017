"""BTF as the public API shows it: the type records of ``Object.btf``, and an object's BTF read
without loading the object.

Tools (``bpfjit btf dump``) and users inspecting ``obj.btf.types`` need the type classes to tell
kinds apart; they get them here, so nothing above the runtime reaches into ``bpfjit.runtime``.
"""
from __future__ import annotations

import os

from .errors import ObjectError
from .runtime import elf
from .runtime.btf import (
    BTF,
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    Array,
    BTFType,
    Datasec,
    DeclTag,
    Enum,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Modifier,
    Ptr,
    Struct,
    Var,
    dump_lines,
    dump_records,
    parse_btf,
)

__all__ = ["BTF", "INT_BOOL", "INT_CHAR", "INT_SIGNED", "Array", "BTFType", "Datasec", "DeclTag", "Enum", "Float",
           "Func", "FuncProto", "Fwd", "Int", "Kind", "Modifier", "Ptr", "Struct", "Var", "dump_lines", "dump_records",
           "fix_datasecs", "read_btf"]


def fix_datasecs(btf: BTF, obj: elf.ElfObject) -> None:
    """Fill in the DATASEC sizes and variable offsets clang leaves to the loader, as libbpf does at
    open: from the ELF's data sections and, for ``.maps``, from its map symbols."""
    for d in obj.data_sections:
        if btf.datasec(d.name) is not None:
            btf.fix_datasec(d.name, len(d.image), {n: off for n, (off, _) in d.variables.items()})
    if obj.map_symbols and btf.datasec(elf.MAPS_SECTION) is not None:
        size = max(off + size for off, size in obj.map_symbols.values())
        btf.fix_datasec(elf.MAPS_SECTION, size, {n: off for n, (off, _) in obj.map_symbols.items()})


def read_btf(path: str | os.PathLike) -> BTF:
    """The .BTF of the ELF object at path, as libbpf has it after opening the object.

    Unlike ``bpfjit.load`` this creates no maps and checks no programs, so the BTF of an object
    that would not load can still be shown.
    """
    obj = elf.read_object(path)
    if obj.btf is None:
        raise ObjectError(f"{os.fspath(path)}: no .BTF section (build with clang -g)")
    btf = parse_btf(obj.btf)
    fix_datasecs(btf, obj)
    return btf

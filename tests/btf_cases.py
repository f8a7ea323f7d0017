"""Shared helpers of the BTF parsing tests (tests/test_btf*.py): tests/progs/btf_types.o as read
with pyelftools, and the module-scoped fixtures ``obj`` (its sections and symbols) and ``btf`` (its
parsed .BTF).

A test module uses the fixtures by importing them:
``from btf_cases import btf_fixture, obj_fixture  # noqa: F401``.
"""
from __future__ import annotations

import pathlib

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from bpfjit.runtime import btf as B
from bpfjit.runtime.btf import Kind, parse_btf

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
OBJ = PROGS / "btf_types.o"
SRC = PROGS / "btf_types.c"
SRC_LINES = SRC.read_text().splitlines()


# --- the object -----------------------------------------------------------------------------------

class Obj:
    """The raw sections and symbols of btf_types.o, read with pyelftools."""

    def __init__(self, path: pathlib.Path):
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            self.sections = {s.name: s.data() for s in elf.iter_sections()}
            self.sizes = {s.name: s["sh_size"] for s in elf.iter_sections()}
            self.index = {s.name: i for i, s in enumerate(elf.iter_sections())}
            symtab = elf.get_section_by_name(".symtab")
            self.symbols = {}
            for sym in symtab.iter_symbols():
                if sym.name and sym["st_info"]["type"] in ("STT_OBJECT", "STT_FUNC"):
                    self.symbols[sym.name] = (sym["st_shndx"], sym["st_value"], sym["st_size"],
                                              sym["st_other"]["visibility"])
            self.relocs = {}
            for s in elf.iter_sections():
                if isinstance(s, RelocationSection):
                    self.relocs[s.name] = [(r["r_offset"], symtab.get_symbol(r["r_info_sym"]).name)
                                           for r in s.iter_relocations()]

    def fixed_btf(self) -> B.BTF:
        """parse .BTF and apply the loader's DATASEC fix-up from the ELF symbol table."""
        b = parse_btf(self.sections[".BTF"])
        for name, variables in b.datasecs().items():
            offsets = {v.name: self.symbols[v.name][1] for v in variables}
            hidden = [v.name for v in variables
                      if self.symbols[v.name][3] in ("STV_HIDDEN", "STV_INTERNAL")]
            b.fix_datasec(name, self.sizes[name], offsets, hidden)
        return b


@pytest.fixture(scope="module", name="obj")
def obj_fixture() -> Obj:
    return Obj(OBJ)


@pytest.fixture(scope="module", name="btf")
def btf_fixture(obj) -> B.BTF:
    return parse_btf(obj.sections[".BTF"])


def struct_id(b: B.BTF, name: str, kind=Kind.STRUCT) -> int:
    tid = b.find(name, kind)
    assert tid is not None, name
    return tid

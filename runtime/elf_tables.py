"""The raw tables of a little-endian ELF64 file: section headers, symbols, relocations.

pyelftools parses every header field through construct, which made it most of the cost of
loading a small BPF object (0.7 of 1 ms), and a load is most of a JIT cache hit. These tables are
fixed-size little-endian records, so they are read here with struct, with pyelftools' names for
the constants; each reader checks what it reads (sizes, offsets, indices) and raises
:class:`~bpfjit.errors.ObjectError` naming the file and the table. The caller has checked the
ELF header itself (magic, class, byte order, machine: runtime/elf.py).
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from elftools.elf.constants import SH_FLAGS
from elftools.elf.enums import ENUM_SH_TYPE_BASE, ENUM_ST_INFO_BIND, ENUM_ST_INFO_TYPE

from bpfjit.errors import ObjectError

SHT_PROGBITS = ENUM_SH_TYPE_BASE["SHT_PROGBITS"]
SHT_SYMTAB = ENUM_SH_TYPE_BASE["SHT_SYMTAB"]
SHT_NOBITS = ENUM_SH_TYPE_BASE["SHT_NOBITS"]
SHT_REL = ENUM_SH_TYPE_BASE["SHT_REL"]
SHF_EXECINSTR = SH_FLAGS.SHF_EXECINSTR

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr: name, type, flags, addr, offset, size, link, info, align, entsize
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size
_REL = struct.Struct("<QQ")  # Elf64_Rel: offset, info (symbol << 32 | type)
_SHN_LORESERVE, _SHN_XINDEX = 0xFF00, 0xFFFF  # special section indices
_STT = {value: name for name, value in ENUM_ST_INFO_TYPE.items() if isinstance(value, int)}
_STB = {value: name for name, value in ENUM_ST_INFO_BIND.items() if isinstance(value, int)}


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int  # SHT_*
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int
    file: bytes

    @property
    def executable(self) -> bool:
        return self.type == SHT_PROGBITS and bool(self.flags & SHF_EXECINSTR) and self.size > 0

    def data(self) -> bytes:
        """The section's bytes in the file (none for SHT_NOBITS: .bss has no file image)."""
        return b"" if self.type == SHT_NOBITS else self.file[self.offset:self.offset + self.size]


@dataclass(frozen=True)
class Symbol:
    name: str
    section: int  # section index, or -1 when undefined (an extern) or special (ABS, COMMON)
    value: int
    size: int
    kind: str  # STT_FUNC, STT_OBJECT, STT_SECTION, ...
    bind: str  # STB_GLOBAL, STB_LOCAL, STB_WEAK


def read_sections(data: bytes, label: str) -> list[Section]:
    """Every section header, each one's contents checked to lie inside the file."""
    fields = _EHDR.unpack_from(data)
    shoff, shentsize, count, shstrndx = fields[6], fields[11], fields[12], fields[13]
    if shoff == 0:
        return []
    if shentsize != _SHDR.size:
        raise ObjectError(f"{label}: bad section header size {shentsize} (expected {_SHDR.size})")
    if shoff + _SHDR.size > len(data):
        raise ObjectError(f"{label}: truncated or corrupt: the section header table starts at byte {shoff}, "
                          f"the file has {len(data)} bytes")
    first = _SHDR.unpack_from(data, shoff)
    count = count or first[5]  # more than 0xff00 sections: the count is in section 0's size
    shstrndx = first[6] if shstrndx == _SHN_XINDEX else shstrndx
    end = shoff + count * _SHDR.size
    if end > len(data):
        raise ObjectError(f"{label}: truncated or corrupt: the section header table ends at byte {end}, "
                          f"the file has {len(data)} bytes")
    headers = [_SHDR.unpack_from(data, shoff + i * _SHDR.size) for i in range(count)]
    if not 0 <= shstrndx < count:
        raise ObjectError(f"{label}: the section name table is section {shstrndx}, which does not exist")
    strings_at, strings_size = headers[shstrndx][4], headers[shstrndx][5]
    names = data[strings_at:strings_at + strings_size]
    sections = []
    for index, (name, stype, flags, _, offset, size, link, info, _, entsize) in enumerate(headers):
        stop = names.find(b"\0", name)
        if stop < 0:
            raise ObjectError(f"{label}: section {index}: name offset {name} lies outside the section name table")
        section = Section(index, names[name:stop].decode("utf-8", "replace"), stype, flags, offset, size,
                          link, info, entsize, data)
        if stype != SHT_NOBITS and offset + size > len(data):
            raise ObjectError(f"{label}: truncated or corrupt: section {section.name!r} ends at byte "
                              f"{offset + size}, the file has {len(data)} bytes")
        sections.append(section)
    return sections


def read_symbols(sections: list[Section], label: str) -> list[Symbol]:
    """The symbol table (empty when there is none), names resolved through its string table."""
    symtab = next((s for s in sections if s.type == SHT_SYMTAB), None)
    if symtab is None:
        return []
    where = f"{label}: {symtab.name}"
    if symtab.entsize != _SYM.size or symtab.size % _SYM.size:
        raise ObjectError(f"{where}: bad symbol entry size {symtab.entsize}")
    if not 0 < symtab.link < len(sections):
        raise ObjectError(f"{where}: names its strings in section {symtab.link}, which does not exist")
    strings = sections[symtab.link].data()
    result = []
    for name, info, _, shndx, value, size in _SYM.iter_unpack(symtab.data()):
        stop = strings.find(b"\0", name)
        if not 0 <= name < len(strings) or stop < 0:
            raise ObjectError(f"{where}: symbol name offset {name} lies outside the string table")
        defined = 0 < shndx < _SHN_LORESERVE
        result.append(Symbol(strings[name:stop].decode("utf-8", "replace"), shndx if defined else -1, value, size,
                             _STT.get(info & 0xF, f"STT_{info & 0xF}"), _STB.get(info >> 4, f"STB_{info >> 4}")))
    return result


@dataclass(frozen=True)
class Relocation:
    """One Elf64_Rel entry, its symbol resolved: what the loader needs to patch one place."""
    table: str  # the SHT_REL section it is read from (.relxdp)
    number: int  # its index in that table
    section: str  # the section it patches (xdp)
    offset: int  # r_offset: the byte it patches there
    type: int  # R_BPF_*
    symbol: Symbol
    symbol_name: str  # the symbol's name, or its section's for a section symbol (as libbpf prints it)

    def describe(self, insn: bool = False) -> str:
        """Which relocation, for messages: its table, index, place and symbol (and the instruction
        slot that place is, in a code section)."""
        slot = f" (insn {self.offset // 8})" if insn and self.offset % 8 == 0 else ""
        return (f"{self.table}: relocation #{self.number} at {self.section}+{self.offset:#x}{slot} "
                f"against {self.symbol_name}")


def read_relocations(sections: list[Section], symbols: list[Symbol], label: str,
                     wanted: Callable[[Section], bool]) -> dict[str, dict[int, Relocation]]:
    """Relocated section's name -> {byte offset: relocation}, from the SHT_REL tables of the
    sections `wanted` accepts.

    The others are not read, as libbpf reads none for .BTF, .BTF.ext and DWARF: a damaged entry
    there cannot stop a load. Each entry read names an existing symbol in an existing section and
    a place inside the relocated section, and no two patch the same place (one would be lost).
    """
    found: dict[str, dict[int, Relocation]] = {}
    for section in sections:
        if section.type != SHT_REL:
            continue
        where = f"{label}: {section.name}"
        if not 0 < section.info < len(sections):
            raise ObjectError(f"{where}: relocates section {section.info}, which does not exist")
        target = sections[section.info]
        if not wanted(target):
            continue
        if section.entsize != _REL.size or section.size % _REL.size:
            raise ObjectError(f"{where}: bad relocation entry size {section.entsize} or table size {section.size} "
                              f"(entries are {_REL.size} bytes)")
        table = found.setdefault(target.name, {})
        for number, (offset, info) in enumerate(_REL.iter_unpack(section.data())):
            at = f"{where}: relocation #{number} at {target.name}+{offset:#x}"
            index = info >> 32
            if not 0 <= index < len(symbols):
                raise ObjectError(f"{at}: names symbol {index}, which does not exist")
            symbol = symbols[index]
            if symbol.section >= len(sections):
                raise ObjectError(f"{at}: symbol {symbol.name or index} is in section {symbol.section}, "
                                  "which does not exist")
            section_symbol = symbol.kind == "STT_SECTION" and symbol.section >= 0
            name = symbol.name or (sections[symbol.section].name if section_symbol else f"symbol #{index}")
            reloc = Relocation(section.name, number, target.name, offset, info & 0xFFFF_FFFF, symbol, name)
            if offset >= target.size:
                raise ObjectError(f"{label}: {reloc.describe()}: the offset lies outside {target.name} "
                                  f"({target.size} bytes)")
            if offset in table:
                raise ObjectError(f"{label}: {reloc.describe()}: {table[offset].table} relocation "
                                  f"#{table[offset].number} already patches that place")
            table[offset] = reloc
    return found

"""Reading BPF object files (clang's ``-target bpf`` output): the code sections and their functions.

This is the first, minimal version of the ELF reader: it finds the executable sections of a
relocatable BPF object and the function symbols in each, which is what the disassembler needs to
reproduce ``llvm-objdump -d``. It applies no relocations and knows nothing of maps, global data,
BTF or BTF.ext; the full loader that does comes later and will grow out of this module.

Every problem with the input (not an ELF file, truncated, wrong machine or byte order, anything
pyelftools trips over) is a :class:`~bpfjit.errors.BPFError` whose message names the file and the
problem; no other exception escapes for a malformed file.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import Union

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from bpfjit.errors import BPFError

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
EM_BPF = 247
INSN_SIZE = 8
EHDR_SIZE = 64  # sizeof(Elf64_Ehdr)
_SHDR_SIZE = 64  # sizeof(Elf64_Shdr)

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


@dataclass(frozen=True)
class CodeSection:
    """One executable section: its name, its bytecode, and the functions that start in it.

    symbols: (instruction slot index, name) for each function symbol, sorted by index, the
    labels ``llvm-objdump -d`` prints (STT_FUNC symbols and global symbols of the section).
    """

    name: str
    code: bytes
    symbols: tuple[tuple[int, str], ...]


def is_elf(data: bytes) -> bool:
    """True when data starts with the ELF magic number."""
    return bytes(data[:4]) == ELF_MAGIC


def code_sections(source: Source, name: str | None = None) -> list[CodeSection]:
    """The non-empty executable PROGBITS sections of a BPF object, in section-header order.

    source: a path, or the object's bytes. name: how messages refer to the object (default: the
    path, or ``<bytes>`` for in-memory data).
    """
    data, label = _read(source, name)
    _check_header(data, label)
    try:
        return _code_sections(ELFFile(io.BytesIO(data)), len(data), label)
    except BPFError:
        raise
    except Exception as exc:  # pyelftools raises many kinds (ELFError, struct/construct errors, ...)
        raise BPFError(f"{label}: malformed ELF file: {_describe(exc)}") from exc


def _read(source: Source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    label = name or os.fspath(source)
    try:
        with open(source, "rb") as f:
            return f.read(), label
    except OSError as exc:
        raise BPFError(f"{label}: cannot read: {exc.strerror or exc}") from exc


def _check_header(data: bytes, label: str) -> None:
    """The checks pyelftools does not make, with messages that say what is wrong."""
    if not is_elf(data):
        raise BPFError(f"{label}: not an ELF file (no ELF magic number)")
    if len(data) < EHDR_SIZE:
        raise BPFError(f"{label}: truncated ELF header ({len(data)} bytes, an ELF64 header has {EHDR_SIZE})")
    ei_class, ei_data = data[4], data[5]
    if ei_class != ELFCLASS64:
        raise BPFError(f"{label}: not a 64-bit ELF file (EI_CLASS {ei_class}); BPF objects are ELF64")
    if ei_data != ELFDATA2LSB:
        raise BPFError(f"{label}: not a little-endian ELF file (EI_DATA {ei_data}); "
                       "only little-endian BPF (-target bpfel) is supported")
    (machine,) = struct.unpack_from("<H", data, 18)
    if machine != EM_BPF:
        raise BPFError(f"{label}: not a BPF object (e_machine {machine}, expected EM_BPF = {EM_BPF})")


def _check_layout(elf: ELFFile, file_size: int, label: str) -> None:
    """Every section header and every section's contents must lie inside the file."""
    shoff, shentsize, count = elf["e_shoff"], elf["e_shentsize"], elf.num_sections()
    if count and shentsize != _SHDR_SIZE:
        raise BPFError(f"{label}: bad section header size {shentsize} (expected {_SHDR_SIZE})")
    if shoff + count * shentsize > file_size:
        raise BPFError(f"{label}: truncated or corrupt: the section header table ends at byte "
                       f"{shoff + count * shentsize}, the file has {file_size} bytes")
    for section in elf.iter_sections():
        header = section.header
        end = header["sh_offset"] + header["sh_size"]
        if header["sh_type"] != "SHT_NOBITS" and end > file_size:
            raise BPFError(f"{label}: truncated or corrupt: section {section.name!r} ends at byte "
                           f"{end}, the file has {file_size} bytes")


def _code_sections(elf: ELFFile, file_size: int, label: str) -> list[CodeSection]:
    _check_layout(elf, file_size, label)
    executable = []
    for index, section in enumerate(elf.iter_sections()):
        header = section.header
        if (header["sh_type"] == "SHT_PROGBITS" and header["sh_flags"] & SH_FLAGS.SHF_EXECINSTR
                and header["sh_size"]):
            executable.append((index, section))
    symbols = _function_symbols(elf, {index for index, _ in executable}, label)
    result = []
    for index, section in executable:
        size = section.header["sh_size"]
        if size % INSN_SIZE:
            raise BPFError(f"{label}: section {section.name}: size {size} is not a multiple of "
                           f"{INSN_SIZE} (the instruction size)")
        named = sorted(symbols.get(index, ()))
        for slot, sym_name in named:
            if slot * INSN_SIZE >= size:
                raise BPFError(f"{label}: section {section.name}: symbol {sym_name} at slot {slot} "
                               f"lies outside the section ({size // INSN_SIZE} slots)")
        result.append(CodeSection(section.name, section.data(), tuple(named)))
    return result


def _function_symbols(elf: ELFFile, sections: set[int], label: str) -> dict[int, set[tuple[int, str]]]:
    """section index -> {(slot, name)} for the STT_FUNC and global symbols defined there."""
    found: dict[int, set[tuple[int, str]]] = {}
    symtabs = [s for s in elf.iter_sections()
               if isinstance(s, SymbolTableSection) and s["sh_type"] == "SHT_SYMTAB"]
    for symbol in (symbol for symtab in symtabs for symbol in symtab.iter_symbols()):
        shndx = symbol["st_shndx"]
        if not isinstance(shndx, int) or shndx not in sections:
            continue  # undefined, absolute, common, or in a non-code section
        info = symbol["st_info"]
        if info["type"] == "STT_SECTION" or not symbol.name:
            continue
        if info["type"] != "STT_FUNC" and info["bind"] != "STB_GLOBAL":
            continue
        value = symbol["st_value"]
        if value % INSN_SIZE:
            raise BPFError(f"{label}: symbol {symbol.name} at offset {value} is not on an "
                           f"instruction boundary")
        found.setdefault(shndx, set()).add((value // INSN_SIZE, symbol.name))
    return found


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

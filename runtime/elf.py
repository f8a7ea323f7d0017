"""Reading BPF object files (clang's ``-target bpf`` output): the code sections and their functions.

Two readers share the checks here. :func:`code_sections` gives the executable sections as they
are in the file, with their function symbols: what the disassembler needs to reproduce
``llvm-objdump -d``. :func:`read_object` is the loader's view: every program with the subprograms
it calls linked in after it (as libbpf does), its map, global-data and function references turned
into ``ld_imm64`` pseudo sources, plus the data sections, the ``.maps`` symbols, BTF and license.
Creating maps and running programs is the runtime's job, not this module's.

Every problem with the input (not an ELF file, truncated, wrong machine or byte order, a
relocation against a missing symbol or one that does not fit the place it patches, anything the
table readers trip over) is an :class:`~bpfjit.errors.ObjectError` whose message names the file
and the section or symbol, and for a relocation its table, index and place; no other exception
escapes for a malformed file. A relocation is never skipped: an instruction it should have
patched would run with its placeholder immediate as an address.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Union

from bpfjit.errors import BPFError, DecodeError, ObjectError
from bpfjit.isa import (CALL_HELPER, CALL_LOCAL, CALL_OP, GOTOL_OP, JA_OP, LDDW, PSEUDO_FUNC, PSEUDO_MAP_IDX,
                        PSEUDO_MAP_IDX_VALUE, STATIC_BRANCH_JA, STATIC_BRANCH_NOP, Insn, decode, is_filler, slots)

from .elf_tables import (SHF_EXECINSTR, SHT_NOBITS, SHT_PROGBITS, Relocation, Section, Symbol, read_relocations,
                         read_sections, read_symbols)
from .jump_tables import ENTRY_SIZE, JumpTable
from .kfuncs import kfunc_id, known_kfuncs

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
EM_BPF = 247
INSN_SIZE = 8
EHDR_SIZE = 64  # sizeof(Elf64_Ehdr)

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


@dataclass(frozen=True)
class CodeSection:
    """One executable section: its name, its bytecode, and the functions that start in it.

    symbols: (instruction slot index, name) for each named symbol of the section, sorted by index:
    the labels ``llvm-objdump -d`` prints (functions, and block labels such as the ``LBB0_1``
    that ``asm goto`` leaves in the symbol table).
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
        return _code_sections(data, label)
    except BPFError:
        raise
    except Exception as exc:  # a malformed file may trip anything (struct errors, bad indices, ...)
        raise ObjectError(f"{label}: malformed ELF file: {_describe(exc)}") from exc


def _read(source: Source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    label = name or os.fspath(source)
    try:
        with open(source, "rb") as f:
            return f.read(), label
    except OSError as exc:
        raise ObjectError(f"{label}: cannot read: {exc.strerror or exc}") from exc


def _check_header(data: bytes, label: str) -> None:
    """The ELF header: an ELF64 little-endian BPF object, or a message that says what is wrong."""
    if not is_elf(data):
        raise ObjectError(f"{label}: not an ELF file (no ELF magic number)")
    if len(data) < EHDR_SIZE:
        raise ObjectError(f"{label}: truncated ELF header ({len(data)} bytes, an ELF64 header has {EHDR_SIZE})")
    ei_class, ei_data = data[4], data[5]
    if ei_class != ELFCLASS64:
        raise ObjectError(f"{label}: not a 64-bit ELF file (EI_CLASS {ei_class}); BPF objects are ELF64")
    if ei_data != ELFDATA2LSB:
        raise ObjectError(f"{label}: not a little-endian ELF file (EI_DATA {ei_data}); "
                       "only little-endian BPF (-target bpfel) is supported")
    (machine,) = struct.unpack_from("<H", data, 18)
    if machine != EM_BPF:
        raise ObjectError(f"{label}: not a BPF object (e_machine {machine}, expected EM_BPF = {EM_BPF})")


def _code_sections(data: bytes, label: str) -> list[CodeSection]:
    sections = read_sections(data, label)
    executable = {s.index: s for s in sections if s.executable}
    symbols = _function_symbols(read_symbols(sections, label), executable, label)
    result = []
    for index, section in executable.items():
        if section.size % INSN_SIZE:
            raise ObjectError(f"{label}: section {section.name}: size {section.size} is not a multiple of "
                              f"{INSN_SIZE} (the instruction size)")
        named = sorted(symbols.get(index, ()))
        for slot, sym_name in named:
            if slot * INSN_SIZE >= section.size:
                raise ObjectError(f"{label}: section {section.name}: symbol {sym_name} at slot {slot} "
                                  f"lies outside the section ({section.size // INSN_SIZE} slots)")
        result.append(CodeSection(section.name, section.data(), tuple(named)))
    return result


def _function_symbols(symbols: list[Symbol], sections: dict[int, Section],
                      label: str) -> dict[int, set[tuple[int, str]]]:
    """section index -> {(slot, name)} for the named symbols defined there, but section and file
    symbols: functions, global symbols and block labels (asm goto keeps LBB labels)."""
    found: dict[int, set[tuple[int, str]]] = {}
    for symbol in symbols:
        if symbol.section not in sections or symbol.kind in ("STT_SECTION", "STT_FILE") or not symbol.name:
            continue
        if symbol.value % INSN_SIZE:
            raise ObjectError(f"{label}: symbol {symbol.name} at offset {symbol.value} is not on an "
                              f"instruction boundary")
        found.setdefault(symbol.section, set()).add((symbol.value // INSN_SIZE, symbol.name))
    return found


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- the loader's view: programs, data sections, maps --------------------------------------------

# The relocation types of the BPF ELF ABI (llvm's BPF backend).
R_BPF_NONE, R_BPF_64_64, R_BPF_64_ABS64, R_BPF_64_ABS32, R_BPF_64_NODYLD32, R_BPF_64_32 = 0, 1, 2, 3, 4, 10
_RELOCATION_NAMES = {R_BPF_NONE: "R_BPF_NONE", R_BPF_64_64: "R_BPF_64_64", R_BPF_64_ABS64: "R_BPF_64_ABS64",
                     R_BPF_64_ABS32: "R_BPF_64_ABS32", R_BPF_64_NODYLD32: "R_BPF_64_NODYLD32",
                     R_BPF_64_32: "R_BPF_64_32"}
MAPS_SECTION = ".maps"
STATIC_KEYS_SECTION = ".static_keys"
STATIC_KEY_RECORD = 16  # {u32 JA offset, u32 target offset, u64 key reference | likely bit}
JUMP_TABLES_SECTION = ".jumptables"  # clang's switch tables (cpu v4): byte offsets in the code section
_DATA_PREFIXES = {".data": "data", ".rodata": "rodata", ".bss": "bss"}


@dataclass(frozen=True)
class Function:
    """A BPF function in a code section: slots [start, end) of that section."""
    number: int  # object-wide: its pointer token is func_token(number)
    name: str
    section: str
    start: int
    end: int
    is_program: bool


@dataclass(frozen=True)
class DataSection:
    """A global-data section (.data, .rodata, .bss, .data.X, .rodata.str1.1, ...): one array map."""
    name: str
    kind: str  # "data", "rodata" or "bss"
    image: bytes  # initial contents (zeros for bss)
    variables: dict[str, tuple[int, int]]  # name -> (offset, size), from the symbol table
    # Pointer words to fill in at load: (offset, ("func", number) or ("data", section, addend)).
    pointers: tuple[tuple[int, tuple], ...]


class _ExternCall(ObjectError):
    """A call to a function the object does not define (a kfunc): its program cannot be linked."""


@dataclass(frozen=True)
class LinkedProgram:
    """One program, its callees appended after it, every reference turned into a pseudo source.

    ld_imm64 src=5 (MAP_IDX) and src=6 (MAP_IDX_VALUE) carry an index into ElfObject.map_names;
    an ld_imm64 of a jump table is an src=6 into the value of that table's map (jump_tables).
    """
    name: str
    section: str
    insns: tuple[Insn, ...]
    function_tokens: dict[int, int]  # function number -> start slot in insns
    origins: tuple[tuple[str, int], ...]  # per slot: (section, slot in that section)
    static_sites: tuple[tuple[int, str], ...] = ()  # (slot of a flavoured JA, its key's name)
    # The function numbers whose address is taken (in data, or by an ld_imm64): the only ones a
    # callx or a helper's callback may reach.
    address_taken: frozenset[int] = frozenset()
    link_error: BPFError | None = None  # why it cannot be linked (then it has no instructions)
    jump_tables: tuple[JumpTable, ...] = ()  # the .jumptables tables it loads, in this program's slots


@dataclass(frozen=True)
class ElfObject:
    name: str
    programs: tuple[LinkedProgram, ...]
    functions: tuple[Function, ...]
    data_sections: tuple[DataSection, ...]
    map_symbols: dict[str, tuple[int, int]]  # BTF-defined maps: name -> (offset, size) in .maps
    map_relocations: tuple[tuple[int, tuple], ...]  # .rel.maps: (offset in .maps, ("func", n) or ("map", name))
    map_names: tuple[str, ...]  # index used by ld_imm64 src 5/6: the .maps maps, then data sections
    btf: bytes | None
    btf_ext: bytes | None
    license: str
    static_keys: tuple[str, ...] = ()  # names of the keys .static_keys declares
    # Every program's jump tables, each a map of its own (libbpf's BPF_MAP_TYPE_INSN_ARRAY), named
    # last in map_names in this order.
    jump_tables: tuple[JumpTable, ...] = ()


def read_object(source: Source, name: str | None = None) -> ElfObject:
    """Read a clang-built BPF object into linked programs, data sections and map references."""
    data, label = _read(source, name)
    _check_header(data, label)
    try:
        return _Loader(data, label).load()
    except BPFError:
        raise
    except Exception as exc:  # a malformed file may trip anything (struct errors, bad indices, ...)
        raise ObjectError(f"{label}: malformed ELF file: {_describe(exc)}") from exc


# What the linker may have to rewrite (ld_imm64, calls, static-branch gotos); any other
# instruction without a relocation is copied as it is.
_LINKED_OPCODES = frozenset({LDDW, CALL_OP, JA_OP, GOTOL_OP})


def _where(function: "Function", slot: int) -> str:
    """An instruction's place, for messages: section+offset (insn N)."""
    return f"{function.section}+{slot * INSN_SIZE:#x} (insn {slot})"


class _Loader:
    def __init__(self, data: bytes, label: str):
        self.label = label
        self.sections = read_sections(data, label)
        self.symbols = read_symbols(self.sections, label)
        self.code = {s.name: s for s in self.sections if s.executable}
        self.data_sizes = {s.name: s.size for s in self.sections if self._data_kind(s) is not None and s.size}
        self.relocations = read_relocations(self.sections, self.symbols, label, self._applies_relocations)
        for name, relocs in self.relocations.items():
            if name in self.code:
                self._check_code_relocations(self.code[name], relocs)

    def fail(self, where: str, reason: str) -> ObjectError:
        return ObjectError(f"{self.label}: {where}: {reason}")

    def reloc_error(self, reloc: Relocation, reason: str) -> ObjectError:
        return ObjectError(f"{self.label}: {reloc.describe(insn=reloc.section in self.code)}: {reason}")

    def _applies_relocations(self, section: Section) -> bool:
        """Whether the loader reads a section's relocations: code and .maps, as libbpf, and the
        global data and .static_keys words bpfjit resolves. Those of .BTF, .BTF.ext and DWARF are
        left unread, as libbpf leaves them."""
        return (bool(section.flags & SHF_EXECINSTR) or self._data_kind(section) is not None
                or section.name in (MAPS_SECTION, STATIC_KEYS_SECTION))

    def _check_code_relocations(self, section: Section, relocs: dict[int, Relocation]) -> None:
        """Each relocation of a code section patches an instruction that takes its kind, as
        libbpf requires (bpf_program__record_reloc): R_BPF_64_64 an ld_imm64 (a map, global data
        or a function's address), R_BPF_64_32 a bpf-to-bpf call or an ld_imm64 of a function.
        Anything else would leave an instruction unpatched whose immediate then runs as an address."""
        try:
            insns = decode(section.data(), checked=False)  # each program's fields are checked when linked
        except DecodeError as exc:
            raise self.fail(section.name, str(exc)) from None
        for offset, reloc in relocs.items():
            if offset % INSN_SIZE:
                raise self.reloc_error(reloc, f"the offset is not on an instruction boundary ({INSN_SIZE} bytes)")
            slot = offset // INSN_SIZE
            insn = insns[slot]
            if is_filler(insns, slot):
                raise self.reloc_error(reloc, f"the offset is the second slot of the ld_imm64 at insn {slot - 1}")
            if insn.opcode == CALL_OP and reloc.symbol.section < 0:
                continue  # an extern (a kfunc): refused when a program that calls it is linked
            if (reloc.type == R_BPF_64_64 and insn.is_lddw) or (
                    reloc.type == R_BPF_64_32 and (insn.is_lddw or insn.is_local_call)):
                continue
            if reloc.type not in _RELOCATION_NAMES:
                raise self.reloc_error(reloc, f"unknown relocation type {reloc.type}")
            kind = _RELOCATION_NAMES[reloc.type]
            if reloc.type not in (R_BPF_64_64, R_BPF_64_32):
                raise self.reloc_error(reloc, f"{kind} relocates data, not an instruction")
            takes = "an ld_imm64" if reloc.type == R_BPF_64_64 else (
                f"a bpf-to-bpf call (src {CALL_LOCAL}) or an ld_imm64")
            raise self.reloc_error(reloc, f"{kind} relocates {takes}, not opcode {insn.opcode:#04x} "
                                          f"with src {insn.src}")

    def section_name(self, index: int) -> str:
        return self.sections[index].name if 0 <= index < len(self.sections) else f"<section {index}>"

    # --- functions -----------------------------------------------------------------------------
    def functions(self) -> list[Function]:
        found: dict[tuple[str, int], Function] = {}
        for symbol in self.symbols:
            if symbol.kind != "STT_FUNC" or symbol.section < 0:
                continue
            section = self.section_name(symbol.section)
            if section not in self.code:
                continue
            if symbol.value % INSN_SIZE or symbol.size % INSN_SIZE:
                raise self.fail(section, f"function {symbol.name} is not on instruction boundaries")
            start, end = symbol.value // INSN_SIZE, (symbol.value + symbol.size) // INSN_SIZE
            if end * INSN_SIZE > self.code[section].size or end <= start:
                raise self.fail(section, f"function {symbol.name} lies outside its section")
            is_program = section != ".text" and symbol.bind == "STB_GLOBAL"
            found[(section, start)] = Function(0, symbol.name, section, start, end, is_program)
        for section, contents in self.code.items():  # code without function symbols: one program
            if not any(key[0] == section for key in found):
                slots = contents.size // INSN_SIZE
                found[(section, 0)] = Function(0, section, section, 0, slots, section != ".text")
        ordered = sorted(found.values(), key=lambda f: (list(self.code).index(f.section), f.start))
        return [Function(n, f.name, f.section, f.start, f.end, f.is_program) for n, f in enumerate(ordered)]

    # --- data ----------------------------------------------------------------------------------
    def data_sections(self, by_place: dict[tuple[str, int], Function],
                      map_symbols: dict[str, tuple[int, int]]) -> list[DataSection]:
        result = []
        for index, section in enumerate(self.sections):
            kind = self._data_kind(section)
            if kind is None or not section.size:
                continue
            image = bytes(section.size) if kind == "bss" else section.data()
            variables = {s.name: (s.value, s.size) for s in self.symbols
                         if s.section == index and s.kind == "STT_OBJECT" and s.name}
            pointers = []
            for offset, reloc in sorted(self.relocations.get(section.name, {}).items()):
                self._check_pointer_word(reloc, section.size)
                addend = int.from_bytes(image[offset:offset + 8], "little")
                pointers.append((offset, self._pointer_target(reloc, addend, by_place, map_symbols)))
            result.append(DataSection(section.name, kind, image, variables, tuple(pointers)))
        return result

    @staticmethod
    def _data_kind(section: Section) -> str | None:
        name, stype = section.name, section.type
        if section.flags & SHF_EXECINSTR:
            return None
        for prefix, kind in _DATA_PREFIXES.items():
            if name == prefix or name.startswith(prefix + "."):
                if (kind == "bss") == (stype == SHT_NOBITS) and stype in (SHT_PROGBITS, SHT_NOBITS):
                    return kind
        return None

    def _check_pointer_word(self, reloc: Relocation, size: int) -> None:
        """A relocation of global data or .maps fills in one 64-bit pointer inside the section."""
        if reloc.type != R_BPF_64_ABS64:
            kind = _RELOCATION_NAMES.get(reloc.type, f"unknown relocation type {reloc.type}")
            raise self.reloc_error(reloc, f"{kind} in {reloc.section}: data holds 64-bit pointers (R_BPF_64_ABS64)")
        if reloc.offset + 8 > size:
            raise self.reloc_error(reloc, f"the 8-byte pointer overruns {reloc.section} ({size} bytes)")

    def _pointer_target(self, reloc: Relocation, addend: int, by_place: dict[tuple[str, int], Function],
                        map_symbols: dict[str, tuple[int, int]], in_maps: bool = False) -> tuple:
        """What a 64-bit pointer word in data (or, in_maps, a .maps initialiser) points at: a
        function, a map, or a place in global data. A .maps slot holds a program (a prog array)
        or a map (a map of maps), as libbpf requires."""
        symbol = reloc.symbol
        if symbol.section < 0:
            raise self.reloc_error(reloc, f"{reloc.symbol_name} is not defined in this object")
        section = self.section_name(symbol.section)
        if section in self.code:
            address = symbol.value + (addend if symbol.kind == "STT_SECTION" else 0)
            function = by_place.get((section, address // INSN_SIZE)) if address % INSN_SIZE == 0 else None
            if function is None:
                raise self.reloc_error(reloc, f"points to {section}+{address:#x}, which is not the start of a function")
            if in_maps and not function.is_program:
                raise self.reloc_error(reloc, f"a .maps slot points to {function.name}, which is not a program")
            return ("func", function.number)
        if section == MAPS_SECTION:
            if symbol.name not in map_symbols:
                raise self.reloc_error(reloc, f"points into {MAPS_SECTION}, not at a map it defines")
            return ("map", symbol.name)
        if in_maps:
            raise self.reloc_error(reloc, f"a .maps slot points into {section}, which holds neither maps nor programs")
        if section not in self.data_sizes:
            raise self.reloc_error(reloc, f"points into {section}, which is not a global-data section")
        offset, size = symbol.value + addend, self.data_sizes[section]
        if offset > size:
            raise self.reloc_error(reloc, f"points to {section}+{offset:#x}, past its end ({size} bytes)")
        return ("data", section, offset)

    # --- linking -------------------------------------------------------------------------------
    def load(self) -> ElfObject:
        functions = self.functions()
        by_place = {(f.section, f.start): f for f in functions}
        maps_index = next((i for i, s in enumerate(self.sections) if s.name == MAPS_SECTION), None)
        map_symbols = {s.name: (s.value, s.size) for s in self.symbols
                       if maps_index is not None and s.section == maps_index and s.name and s.kind != "STT_SECTION"}
        data_sections = self.data_sections(by_place, map_symbols)
        map_names = tuple(sorted(map_symbols, key=lambda n: map_symbols[n][0])) + tuple(d.name for d in data_sections)
        maps_size = self.sections[maps_index].size if maps_index is not None else 0
        map_relocations = tuple(
            (offset, self._map_slot_target(reloc, maps_size, by_place, map_symbols))
            for offset, reloc in sorted(self.relocations.get(MAPS_SECTION, {}).items()))
        # Functions whose address is stored in data can be called from any program: link them all in.
        address_taken = [target[1] for d in data_sections for _, target in d.pointers if target[0] == "func"]
        address_taken += [target[1] for _, target in map_relocations if target[0] == "func"]
        self.sites = self._static_key_sites()
        self.jump_tables: list[JumpTable] = []  # every linked program's, in map index order
        programs = tuple(self._link_or_note(f, functions, by_place, map_names, address_taken)
                         for f in functions if f.is_program)
        btf = self._section_bytes(".BTF")
        license_bytes = self._section_bytes("license") or b""
        return ElfObject(self.label, programs, tuple(functions), tuple(data_sections), map_symbols, map_relocations,
                         map_names + tuple(table.name for table in self.jump_tables), btf,
                         self._section_bytes(".BTF.ext"), license_bytes.split(b"\0", 1)[0].decode(errors="replace"),
                         tuple(sorted({key for key, _, _ in self.sites.values()})), tuple(self.jump_tables))

    def _map_slot_target(self, reloc: Relocation, maps_size: int, by_place: dict[tuple[str, int], Function],
                         map_symbols: dict[str, tuple[int, int]]) -> tuple:
        """What a .maps initialiser slot (an 8-byte aligned pointer word) holds: a program or a map."""
        self._check_pointer_word(reloc, maps_size)
        if reloc.offset % 8:
            raise self.reloc_error(reloc, "a .maps slot is not 8-byte aligned")
        return self._pointer_target(reloc, 0, by_place, map_symbols, in_maps=True)

    def _static_key_sites(self) -> dict[tuple[str, int], tuple[str, bool, int]]:
        """(section, JA slot) -> (key name, likely, target slot), from bpfjit's .static_keys records."""
        data = self._section_bytes(STATIC_KEYS_SECTION)
        if not data:
            return {}
        relocs = self.relocations.get(STATIC_KEYS_SECTION, {})
        if len(data) % STATIC_KEY_RECORD:
            raise self.fail(STATIC_KEYS_SECTION, f"size {len(data)} is not a multiple of {STATIC_KEY_RECORD}")
        sites = {}
        for offset in range(0, len(data), STATIC_KEY_RECORD):
            where = f"{STATIC_KEYS_SECTION}+{offset:#x}"
            ja_word, target_word, key_word = struct.unpack_from("<IIQ", data, offset)
            found = [relocs.get(offset + delta) for delta in (0, 4, 8)]
            if None in found:
                raise self.fail(where, "static-key record without its three relocations")
            ja_symbol, target_symbol, key_symbol = (reloc.symbol for reloc in found)
            section = self.section_name(ja_symbol.section)
            if section not in self.code or self.section_name(target_symbol.section) != section:
                raise self.fail(where, "static-key site outside a code section")
            ja, target = ja_symbol.value + ja_word, target_symbol.value + target_word
            for name, place in (("goto", ja), ("target", target)):
                if place % INSN_SIZE or place >= self.code[section].size:
                    raise self.fail(where, f"the {name} at {section}+{place:#x} is not an instruction of {section}")
            sites[(section, ja // INSN_SIZE)] = (self._key_name(key_symbol, key_word & ~1, where), bool(key_word & 1),
                                                 target // INSN_SIZE)
        return sites

    def _key_name(self, symbol: Symbol, offset: int, where: str) -> str:
        """The key variable a record names: its own symbol, or (a static key) the object at offset."""
        if symbol.kind != "STT_SECTION":
            return symbol.name
        for candidate in self.symbols:
            if candidate.section == symbol.section and candidate.kind == "STT_OBJECT" and candidate.value == offset:
                return candidate.name
        raise self.fail(where, f"static key at {self.section_name(symbol.section)}+{offset:#x} has no symbol")

    def _section_bytes(self, name: str) -> bytes | None:
        section = next((s for s in self.sections if s.name == name), None)
        return None if section is None else section.data()

    def _link_or_note(self, main: Function, functions: list[Function], by_place: dict[tuple[str, int], Function],
                      map_names: tuple[str, ...], address_taken: list[int]) -> LinkedProgram:
        """A program that cannot be linked (it calls a kfunc, or one of its instructions is
        malformed) fails when it is loaded, as in libbpf, not the object's other programs."""
        try:
            return self.link(main, functions, by_place, map_names, address_taken)
        except (_ExternCall, DecodeError) as exc:
            return LinkedProgram(main.name, main.section, (), {}, (), link_error=exc)

    def link(self, main: Function, functions: list[Function], by_place: dict[tuple[str, int], Function],
             map_names: tuple[str, ...], address_taken: list[int]) -> LinkedProgram:
        order: list[Function] = [main]
        for number in address_taken:
            if functions[number] not in order:
                order.append(functions[number])
        starts: dict[int, int] = {}
        pending: list[tuple[int, Function, str]] = []  # (slot in output, target, kind "call"|"func")
        out: list[Insn] = []
        origins: list[tuple[str, int]] = []
        static_sites: list[tuple[int, str]] = []
        tables: dict[str, JumpTable] = {}  # this program's, by symbol
        first_table = len(map_names) + len(self.jump_tables)  # the map index of its first table
        position = 0
        while position < len(order):
            function = order[position]
            position += 1
            starts[function.number] = len(out)
            code = self.code[function.section].data()
            insns = decode(code[function.start * INSN_SIZE:function.end * INSN_SIZE])
            relocs = self.relocations.get(function.section, {})
            for i, insn in enumerate(insns):
                slot = function.start + i
                reloc = relocs.get(slot * INSN_SIZE)
                if reloc is None and insn.opcode not in _LINKED_OPCODES:  # most instructions: as they are
                    out.append(insn)
                    origins.append((function.section, slot))
                    continue
                if reloc is not None and insn.opcode == CALL_OP and reloc.symbol.section < 0:
                    out.append(self._kfunc_call(reloc))
                    origins.append((function.section, slot))
                    continue
                if insn.is_local_call or (insn.is_lddw and reloc and self._is_code(reloc.symbol)):
                    target = self._code_target(insn, slot, function.section, reloc, by_place, _where(function, slot))
                    if target not in order:
                        order.append(target)
                    pending.append((len(out), target, "call" if insn.is_local_call else "func"))
                elif insn.is_lddw and reloc and self._is_jump_table(reloc.symbol):
                    table = tables.get(reloc.symbol.name) or self._jump_table(reloc, function, starts[function.number],
                                                                            main.name)
                    tables[table.symbol] = table
                    insn = self._table_reference(insn, reloc, first_table + list(tables).index(table.symbol))
                elif insn.is_lddw and reloc:
                    insn = self._data_reference(insn, reloc, map_names)
                elif insn.is_lddw and insn.src:
                    raise self.fail(_where(function, slot), f"ld_imm64 with pseudo source {insn.src} and no relocation")
                elif (function.section, slot) in self.sites:
                    insn = self._static_site(insn, slot, function.section, _where(function, slot))
                    static_sites.append((len(out), self.sites[(function.section, slot)][0]))
                out.append(insn)
                origins.append((function.section, slot))
        for index, target, kind in pending:
            insn, delta = out[index], starts[target.number] - (index + 1)
            if kind == "call":
                out[index] = Insn(insn.opcode, insn.dst, insn.src, insn.off, delta)
            else:
                out[index] = Insn(insn.opcode, insn.dst, PSEUDO_FUNC, 0, delta, 0)
        for index in slots(out):  # second slots carry what the first slot now says
            if out[index].is_lddw:
                out[index + 1] = Insn(0, imm=out[index].next_imm)
        tokens = {number: start for number, start in starts.items()}
        taken = frozenset(address_taken) | {target.number for _, target, kind in pending if kind == "func"}
        self.jump_tables.extend(tables.values())
        return LinkedProgram(main.name, main.section, tuple(out), tokens, tuple(origins), tuple(static_sites),
                             taken, jump_tables=tuple(tables.values()))

    # --- jump tables ---------------------------------------------------------------------------
    def _is_jump_table(self, symbol: Symbol) -> bool:
        return symbol.section >= 0 and self.section_name(symbol.section) == JUMP_TABLES_SECTION

    def _jump_table(self, reloc: Relocation, function: Function, start: int, program: str) -> JumpTable:
        """The table a relocation names, as libbpf's create_jt_map reads it: the symbol's u64
        entries are byte offsets in the code section of the function that loads the table; each
        becomes a slot of the program, where that function starts at `start`. Whether the slots
        lie inside the function is the structure check's to say (verifier/cfg.py), as the kernel's."""
        symbol, data = reloc.symbol, self._section_bytes(JUMP_TABLES_SECTION) or b""
        where = f"map '{JUMP_TABLES_SECTION}'"
        if symbol.kind == "STT_SECTION" or not symbol.size:
            raise self.reloc_error(reloc, f"{where}: a jump table is named by a symbol of its size")
        if symbol.value % ENTRY_SIZE or symbol.size % ENTRY_SIZE:
            raise self.reloc_error(reloc, f"{where}: jumptable start {symbol.value} and size {symbol.size} "
                                          f"should be multiples of {ENTRY_SIZE}")
        if symbol.value + symbol.size > len(data):
            raise self.reloc_error(reloc, f"{where}: {JUMP_TABLES_SECTION} has {len(data)} bytes, the table "
                                          f"ends at {symbol.value + symbol.size}")
        targets = []
        for number in range(symbol.size // ENTRY_SIZE):
            offset = symbol.value + number * ENTRY_SIZE
            (entry,) = struct.unpack_from("<Q", data, offset)
            slot = start + entry // INSN_SIZE - function.start
            if entry % INSN_SIZE or not 0 <= slot <= 0xFFFF_FFFF:
                raise self.reloc_error(reloc, f"{where}: invalid jump table value {entry:#x} at offset {offset}")
            targets.append(slot)
        return JumpTable(f"{JUMP_TABLES_SECTION}.{program}.{symbol.name}", symbol.name, tuple(targets))

    def _table_reference(self, insn: Insn, reloc: Relocation, map_index: int) -> Insn:
        """An ld_imm64 of a jump table: the address of its entries, in the value of its map."""
        if reloc.type != R_BPF_64_64:
            raise self.reloc_error(reloc, f"{_RELOCATION_NAMES[reloc.type]} on an ld_imm64 of a jump table: "
                                          "tables take R_BPF_64_64")
        offset = insn.imm & 0xFFFF_FFFF
        if offset >= reloc.symbol.size:
            raise self.reloc_error(reloc, f"refers to {reloc.symbol_name}+{offset:#x}, past its end "
                                          f"({reloc.symbol.size} bytes)")
        return Insn(insn.opcode, insn.dst, PSEUDO_MAP_IDX_VALUE, 0, map_index, offset)

    def _static_site(self, insn: Insn, slot: int, section: str, where: str) -> Insn:
        """The JA a .static_keys record names, turned into goto_or_nop (likely) or nop_or_goto."""
        _, likely, target = self.sites[(section, slot)]
        if insn.opcode not in (JA_OP, GOTOL_OP) or insn.src != 0:
            raise self.fail(where, "a .static_keys record names an instruction that is not a goto")
        if insn.jump_target(slot) != target:
            raise self.fail(where, f"the goto's target (insn {insn.jump_target(slot)}) is not the "
                                   f"record's (insn {target})")
        flavour = STATIC_BRANCH_JA if likely else STATIC_BRANCH_JA | STATIC_BRANCH_NOP
        return Insn(insn.opcode, insn.dst, flavour, insn.off, insn.imm, insn.next_imm)

    def _is_code(self, symbol: Symbol) -> bool:
        return symbol.section >= 0 and self.section_name(symbol.section) in self.code

    def _code_target(self, insn: Insn, slot: int, section: str, reloc: Relocation | None,
                     by_place: dict[tuple[str, int], Function], where: str) -> Function:
        """The function a bpf-to-bpf call or an ld_imm64 of a function's address refers to: a
        relocation's symbol plus the instruction's addend, on an instruction boundary (libbpf)."""
        if reloc is None:  # a call inside the same section: already relative
            place = (section, slot + 1 + insn.imm)
            if place not in by_place:
                raise self.fail(where, f"call to {section}+{place[1] * INSN_SIZE:#x}, which is not the start "
                                       "of a function")
            return by_place[place]
        symbol = reloc.symbol
        offset = (insn.imm + 1) * INSN_SIZE if insn.is_local_call else (
            insn.imm if symbol.kind == "STT_SECTION" else 0)
        address, target_section = symbol.value + offset, self.section_name(symbol.section)
        function = by_place.get((target_section, address // INSN_SIZE)) if address % INSN_SIZE == 0 else None
        if function is None:
            raise self.reloc_error(reloc, f"refers to {target_section}+{address:#x}, which is not the start of a "
                                          "function")
        return function

    def _kfunc_call(self, reloc: Relocation) -> Insn:
        """A call of a ``__ksym`` extern: a call of the helper id bpfjit gives that kfunc
        (runtime/kfuncs.py), or, for a name no kfunc has, the program cannot be linked."""
        number = kfunc_id(reloc.symbol_name)
        if number is None:
            known = ", ".join(known_kfuncs())
            raise _ExternCall(self.reloc_error(reloc, f"call to {reloc.symbol_name}, which is not defined "
                                                      "in this object (kfuncs and externs are not supported): "
                                                      f"bpfjit knows only the kfuncs {known}"))
        return Insn(CALL_OP, 0, CALL_HELPER, 0, number)

    def _data_reference(self, insn: Insn, reloc: Relocation, map_names: tuple[str, ...]) -> Insn:
        """An ld_imm64 of a map (src 5) or of an address in global data (src 6), as libbpf makes
        them; the offset must lie inside the data, as the kernel requires of a map value address."""
        symbol = reloc.symbol
        if reloc.type != R_BPF_64_64:
            raise self.reloc_error(reloc, f"{_RELOCATION_NAMES[reloc.type]} on an ld_imm64 of data: "
                                          "maps and global data take R_BPF_64_64")
        if symbol.section < 0:
            raise self.reloc_error(reloc, f"{reloc.symbol_name} is not defined in this object "
                                          "(extern __kconfig/__ksym variables are not supported)")
        section = self.section_name(symbol.section)
        if section == MAPS_SECTION:
            if symbol.name not in map_names:
                raise self.reloc_error(reloc, f"{reloc.symbol_name} is not a map .maps defines")
            return Insn(insn.opcode, insn.dst, PSEUDO_MAP_IDX, 0, map_names.index(symbol.name), 0)
        if section not in map_names:
            raise self.reloc_error(reloc, f"{reloc.symbol_name} is in {section}, which is not a map or "
                                          "global-data section")
        offset = (insn.imm & 0xFFFF_FFFF) + symbol.value
        if offset >= self.data_sizes[section]:
            raise self.reloc_error(reloc, f"refers to {section}+{offset:#x}, past its end "
                                          f"({self.data_sizes[section]} bytes)")
        return Insn(insn.opcode, insn.dst, PSEUDO_MAP_IDX_VALUE, 0, map_names.index(section), offset)

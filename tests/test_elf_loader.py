"""The ELF loader: linking subprograms, map / global-data / function references, bad objects."""
from __future__ import annotations

import io
import pathlib
import struct
from dataclasses import dataclass

import pytest
from elftools.elf.elffile import ELFFile

from bpfjit import isa
from bpfjit.errors import ObjectError
from bpfjit.runtime import elf
from bpfjit.runtime.kfuncs import is_kfunc_call
from bpfjit.verifier import cfg

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
GLOBALS = PROGS / "globals.o"
REL = struct.Struct("<QQ")  # Elf64_Rel: r_offset, r_info (symbol << 32 | type)


# --- editing relocation tables (also used by test_reloc_fuzz.py) ---------------------------------

@dataclass(frozen=True)
class RelTable:
    """One SHT_REL section of an object file: where its entries are in the file."""
    name: str  # .relxdp
    target: str  # the section it relocates: xdp
    at: int  # file offset of its first entry
    count: int


def rel_tables(data: bytes) -> dict[str, RelTable]:
    elf_file = ELFFile(io.BytesIO(data))
    return {s.name: RelTable(s.name, elf_file.get_section(s["sh_info"]).name, s["sh_offset"], s["sh_size"] // REL.size)
            for s in elf_file.iter_sections() if s["sh_type"] == "SHT_REL"}


def rel_entries(data: bytes, table: RelTable) -> list[tuple[int, int, int]]:
    """(r_offset, symbol index, type) of each entry."""
    return [(offset, info >> 32, info & 0xFFFF_FFFF)
            for offset, info in REL.iter_unpack(data[table.at:table.at + table.count * REL.size])]


def edit_reloc(data: bytes, table: str, number: int, offset: int | None = None, symbol: int | None = None,
               rtype: int | None = None) -> bytes:
    """The object with one relocation's offset, symbol or type replaced."""
    where = rel_tables(data)[table].at + number * REL.size
    old_offset, info = REL.unpack_from(data, where)
    new_symbol = info >> 32 if symbol is None else symbol
    new_type = info & 0xFFFF_FFFF if rtype is None else rtype
    edited = bytearray(data)
    REL.pack_into(edited, where, old_offset if offset is None else offset, new_symbol << 32 | new_type)
    return bytes(edited)


def symbol_index(data: bytes, name: str) -> int:
    """The index of the symbol called name (a section symbol by its section's name)."""
    elf_file = ELFFile(io.BytesIO(data))
    for index, sym in enumerate(elf_file.get_section_by_name(".symtab").iter_symbols()):
        section_symbol = sym["st_info"]["type"] == "STT_SECTION"
        if (elf_file.get_section(sym["st_shndx"]).name if section_symbol else sym.name) == name:
            return index
    raise LookupError(name)


@pytest.fixture(scope="module")
def obj() -> elf.ElfObject:
    return elf.read_object(GLOBALS)


def program(obj, name):
    return next(p for p in obj.programs if p.name == name)


def test_programs_and_license(obj):
    assert [(p.name, p.section) for p in obj.programs] == [("prog_a", "xdp"), ("prog_b", "socket")]
    assert obj.license == "GPL"
    assert obj.btf and obj.btf_ext


def test_maps_and_data_sections(obj):
    # BTF-defined maps first (by .maps offset), then the data sections in section order.
    assert obj.map_names[0] == "counts"
    assert set(obj.map_names[1:]) == {".rodata", ".data", ".data.custom", ".bss"}
    sections = {d.name: d for d in obj.data_sections}
    assert sections[".rodata"].kind == "rodata" and sections[".bss"].kind == "bss"
    assert sections[".rodata"].image[:4] == (3).to_bytes(4, "little")  # const volatile factor = 3
    assert sections[".data"].variables["total"] == (0, 8)
    assert sections[".data"].image[:8] == (10).to_bytes(8, "little")  # total = 10
    assert sections[".data.custom"].image == (7).to_bytes(4, "little")  # secret = 7
    assert sections[".bss"].image == bytes(4)


def test_function_pointers_in_data_resolve_to_functions(obj):
    by_number = {f.number: f.name for f in obj.functions}
    pointers = {offset: by_number[target[1]] for offset, target in
                {d.name: d for d in obj.data_sections}[".data"].pointers}
    assert pointers == {8: "twice", 16: "thrice"}  # op_t ops[2] = { twice, thrice } after total


def test_subprograms_are_linked_after_each_program(obj):
    for prog in obj.programs:
        insns = list(prog.insns)
        facts = cfg.analyse(insns, helper_ids=range(1000), entry_points=prog.function_tokens.values())
        names = {f.number: f.name for f in obj.functions}
        linked = {names[n]: start for n, start in prog.function_tokens.items()}
        assert linked[prog.name] == 0
        assert {"helper_sum", "twice", "thrice"} <= set(linked)  # pointer targets are linked into every program
        assert facts.function_starts == set(prog.function_tokens.values())
        calls = [(i, insn.call_target(i)) for i, insn in enumerate(insns) if insn.is_local_call]
        assert calls and all(target == linked["helper_sum"] for _, target in calls)


def test_references_become_pseudo_sources(obj):
    insns = program(obj, "prog_a").insns
    loads = [(insn.src, obj.map_names[insn.imm], insn.next_imm) for i, insn in enumerate(insns)
             if insn.is_lddw and not isa.is_filler(insns, i)]
    assert (isa.PSEUDO_MAP_IDX, "counts", 0) in loads
    assert (isa.PSEUDO_MAP_IDX_VALUE, ".bss", 0) in loads  # hits
    assert (isa.PSEUDO_MAP_IDX_VALUE, ".data", 8) in loads  # ops, at offset 8 of .data
    assert (isa.PSEUDO_MAP_IDX_VALUE, ".data.custom", 0) in loads  # secret, in twice()
    for i, insn in enumerate(insns):  # second slots agree with first slots
        if insn.is_lddw and not isa.is_filler(insns, i):
            assert insns[i + 1] == isa.Insn(0, imm=insn.next_imm)


def _section_offsets(data: bytes, name: str) -> tuple[int, int]:
    import io
    section = ELFFile(io.BytesIO(data)).get_section_by_name(name)
    return section["sh_offset"], section["sh_size"]


def test_relocation_to_a_missing_symbol():
    data = bytearray(GLOBALS.read_bytes())
    offset, _ = _section_offsets(bytes(data), ".relxdp")
    info = struct.unpack_from("<Q", data, offset + 8)[0]
    struct.pack_into("<Q", data, offset + 8, (0xFFFF << 32) | (info & 0xFFFFFFFF))
    with pytest.raises(ObjectError, match=r"bad.o: \.relxdp: .*symbol 65535"):
        elf.read_object(bytes(data), "bad.o")


def test_reference_to_an_undefined_symbol():
    data = bytearray(GLOBALS.read_bytes())
    offset, size = _section_offsets(bytes(data), ".symtab")
    for entry in range(offset, offset + size, 24):  # Elf64_Sym: name, info, other, shndx, value, size
        name_off = struct.unpack_from("<I", data, entry)[0]
        strtab_off, _ = _section_offsets(bytes(data), ".strtab")
        name = bytes(data[strtab_off + name_off:]).split(b"\0", 1)[0]
        if name == b"hits":
            struct.pack_into("<H", data, entry + 6, 0)  # SHN_UNDEF: now an extern
    with pytest.raises(ObjectError, match=r"^bad.o: \.relxdp: relocation #1 at xdp\+0x58 \(insn 11\) against hits: "
                                          r"hits is not defined in this object"):
        elf.read_object(bytes(data), "bad.o")


@pytest.mark.parametrize("cut", [0, 10, 64, 500, 2000, 4000])
def test_truncated_objects_raise_object_errors(cut):
    with pytest.raises(ObjectError):
        elf.read_object(GLOBALS.read_bytes()[:cut], "cut.o")


def test_wrong_machine():
    data = bytearray(GLOBALS.read_bytes())
    struct.pack_into("<H", data, 18, 62)
    with pytest.raises(ObjectError, match="not a BPF object"):
        elf.read_object(bytes(data), "x86.o")


# --- relocations the loader rejects (libbpf's bpf_object__collect_prog_relos and record_reloc) ---

G = GLOBALS.read_bytes()
TEXT, DATA_CUSTOM, DEBUG_ABBREV = (symbol_index(G, n) for n in (".text", ".data.custom", ".debug_abbrev"))
# .relsocket #3 is prog_b's `r1 = .rodata+4 ll` (insn 9): the format string of its bpf_printk.
BAD_RELOCATIONS = [
    ("outside the section", edit_reloc(G, ".relsocket", 3, offset=0x1048),
     r"\.relsocket: relocation #3 at socket\+0x1048 against \.rodata: the offset lies outside socket \(120 bytes\)"),
    ("between instructions", edit_reloc(G, ".relsocket", 3, offset=0x4C),
     r"relocation #3 at socket\+0x4c against \.rodata: the offset is not on an instruction boundary"),
    ("second slot of an ld_imm64", edit_reloc(G, ".relsocket", 3, offset=0x50),
     r"socket\+0x50 \(insn 10\) against \.rodata: the offset is the second slot of the ld_imm64 at insn 9"),
    ("on a load", edit_reloc(G, ".relsocket", 3, offset=0x40),
     r"\(insn 8\) against \.rodata: R_BPF_64_64 relocates an ld_imm64, not opcode 0x61"),
    ("twice the same place", edit_reloc(G, ".relsocket", 3, offset=0x30),
     r"relocation #3 at socket\+0x30 against \.rodata: \.relsocket relocation #2 already patches that place"),
    ("call relocation on a store", edit_reloc(G, ".relxdp", 4, offset=0x100),
     r"\.relxdp: relocation #4 at xdp\+0x100 \(insn 32\) against \.text: R_BPF_64_32 relocates a bpf-to-bpf call "
     r"\(src 1\) or an ld_imm64, not opcode 0x7b"),
    ("call relocation on a helper call", edit_reloc(G, ".relxdp", 4, offset=0x30),
     r"\(insn 6\) against \.text: R_BPF_64_32 relocates a bpf-to-bpf call .* not opcode 0x85 with src 0"),
    ("R_BPF_64_64 on a call", edit_reloc(G, ".relxdp", 4, rtype=1),
     r"\(insn 31\) against \.text: R_BPF_64_64 relocates an ld_imm64, not opcode 0x85 with src 1"),
    ("a data relocation type on code", edit_reloc(G, ".relxdp", 0, rtype=2),
     r"relocation #0 at xdp\+0x20 \(insn 4\) against counts: R_BPF_64_ABS64 relocates data, not an instruction"),
    ("unknown type", edit_reloc(G, ".relxdp", 0, rtype=99), r"against counts: unknown relocation type 99"),
    ("call type on an ld_imm64 of data", edit_reloc(G, ".relxdp", 1, rtype=10),
     r"against hits: R_BPF_64_32 on an ld_imm64 of data"),
    ("ld_imm64 past the end of the data", edit_reloc(G, ".relsocket", 3, symbol=DATA_CUSTOM),
     r"against \.data\.custom: refers to \.data\.custom\+0x4, past its end \(4 bytes\)"),
    ("ld_imm64 of a function between instructions", edit_reloc(G, ".relsocket", 3, symbol=TEXT),
     r"against \.text: refers to \.text\+0x4, which is not the start of a function"),
    ("ld_imm64 of a debug section", edit_reloc(G, ".relsocket", 3, symbol=DEBUG_ABBREV),
     r"against \.debug_abbrev: \.debug_abbrev is in \.debug_abbrev, which is not a map or global-data section"),
    ("data pointer overrunning its section", edit_reloc(G, ".rel.data", 1, offset=0x14),
     r"\.rel\.data: relocation #1 at \.data\+0x14 against \.text: the 8-byte pointer overruns \.data \(24 bytes\)"),
    ("32-bit data pointer", edit_reloc(G, ".rel.data", 0, rtype=3),
     r"against \.text: R_BPF_64_ABS32 in \.data: data holds 64-bit pointers"),
    ("data pointer into a debug section", edit_reloc(G, ".rel.data", 0, symbol=DEBUG_ABBREV),
     r"against \.debug_abbrev: points into \.debug_abbrev, which is not a global-data section"),
]


@pytest.mark.parametrize("data, message", [case[1:] for case in BAD_RELOCATIONS],
                         ids=[case[0] for case in BAD_RELOCATIONS])
def test_bad_relocations_are_object_errors(data, message):
    # file, table, relocation index and place, then (anywhere after) what the case expects
    named = r"(?=bad\.o: \.rel\S*: relocation #\d+ at \S+\+0x[0-9a-f]+ )"
    with pytest.raises(ObjectError, match="^" + named + "(?=.*" + message + ")"):
        elf.read_object(data, "bad.o")


def test_relocation_against_a_symbol_in_a_missing_section():
    data = bytearray(G)
    symtab = ELFFile(io.BytesIO(G)).get_section_by_name(".symtab")
    struct.pack_into("<H", data, symtab["sh_offset"] + symbol_index(G, "hits") * 24 + 6, 200)  # st_shndx
    with pytest.raises(ObjectError, match=r"^bad\.o: \.rel\.text: relocation #2 at \.text\+0x70: symbol hits is in "
                                          r"section 200, which does not exist"):
        elf.read_object(bytes(data), "bad.o")


def test_prog_array_slot_must_hold_a_program():
    calls = (PROGS / "calls.o").read_bytes()
    data = edit_reloc(calls, ".rel.maps", 0, symbol=symbol_index(calls, "visit"))  # a .text subprogram
    with pytest.raises(ObjectError, match=r"^bad\.o: \.rel\.maps: relocation #0 at \.maps\+0x20 against visit: "
                                          r"a \.maps slot points to visit, which is not a program"):
        elf.read_object(data, "bad.o")
    with pytest.raises(ObjectError, match=r"relocation #0 at \.maps\+0x24 against leaf: a \.maps slot is not "
                                          r"8-byte aligned"):
        elf.read_object(edit_reloc(calls, ".rel.maps", 0, offset=0x24), "bad.o")


def test_relocations_of_btf_and_dwarf_are_not_read():
    # libbpf ignores them; so does the loader: wrecking them changes nothing it builds.
    data = G
    for table in (".rel.BTF", ".rel.BTF.ext", ".rel.debug_info"):
        for number in range(rel_tables(G)[table].count):
            data = edit_reloc(data, table, number, offset=0xFFFF_0000, symbol=0xFFFF, rtype=77)
    assert elf.read_object(data, "wrecked.o").programs == elf.read_object(G, "wrecked.o").programs


def test_every_committed_object_relocates_only_ld_imm64_and_calls():
    """What clang emits passes the checks: each relocated instruction of each committed object
    became a pseudo source (ld_imm64 src 4/5/6), a bpf-to-bpf call or a kfunc call."""
    for path in sorted(PROGS.glob("*.o")):
        data = path.read_bytes()
        obj = elf.read_object(data, path.name)
        relocated = {(table.target, offset // 8) for table in rel_tables(data).values()
                     for offset, _, _ in rel_entries(data, table)}
        for prog in obj.programs:
            for index, origin in enumerate(prog.origins):
                insn = prog.insns[index]
                if origin in relocated and not isa.is_filler(prog.insns, index):
                    assert insn.is_local_call or is_kfunc_call(insn) or (insn.is_lddw and insn.src in (
                        isa.PSEUDO_FUNC, isa.PSEUDO_MAP_IDX, isa.PSEUDO_MAP_IDX_VALUE)), (path.name, origin, insn)

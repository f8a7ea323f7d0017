"""The ELF loader: linking subprograms, map / global-data / function references, bad objects."""
from __future__ import annotations

import pathlib
import struct

import pytest
from elftools.elf.elffile import ELFFile

from bpfjit import isa
from bpfjit.errors import ObjectError
from bpfjit.runtime import elf
from bpfjit.verifier import cfg

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
GLOBALS = PROGS / "globals.o"


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
    with pytest.raises(ObjectError, match=r"bad.o: xdp\+0x58 \(insn 11\): reference to hits, which is not defined"):
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

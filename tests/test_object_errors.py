"""Malformed objects fail at load with a bpfjit error naming what is wrong, never a traceback."""
from __future__ import annotations

import io
import pathlib
import struct

import pytest
from elftools.elf.elffile import ELFFile

import bpfjit
import bpfjit.cli
from bpfjit.errors import BPFError, BTFError, MapError, ObjectError
from bpfjit.runtime import btf as btf_module

GLOBALS = pathlib.Path(__file__).resolve().parent / "progs" / "globals.o"
BTF_KIND_ARRAY = 3


def section_span(data: bytes, name: str) -> tuple[int, int]:
    section = ELFFile(io.BytesIO(data)).get_section_by_name(name)
    return section["sh_offset"], section["sh_size"]


def load_bytes(tmp_path, data: bytes):
    path = tmp_path / "bad.o"
    path.write_bytes(data)
    return bpfjit.load(path)


def test_bad_btf_magic(tmp_path):
    data = bytearray(GLOBALS.read_bytes())
    offset, _ = section_span(bytes(data), ".BTF")
    data[offset:offset + 2] = b"\0\0"
    with pytest.raises(BTFError):
        load_bytes(tmp_path, bytes(data))


def test_btf_without_its_types(tmp_path):
    data = bytearray(GLOBALS.read_bytes())
    offset, _ = section_span(bytes(data), ".BTF")
    assert struct.unpack_from("<I", data, offset + 4)[0] == 24  # the classic header layout
    struct.pack_into("<I", data, offset + 12, 0)  # type_len = 0: every type reference dangles
    with pytest.raises(BPFError, match="map 'counts' in .maps has no BTF definition"):
        load_bytes(tmp_path, bytes(data))


def test_a_broken_btf_ext_fails_only_what_reads_it(tmp_path, capsys):
    # As libbpf goes on without a .BTF.ext it cannot parse, a load does not read it: programs
    # run; reading it is a one-line error, and a dump, which wants its source lines, goes on
    # without them, as libbpf loads without line info.
    data = bytearray(GLOBALS.read_bytes())
    offset, _ = section_span(bytes(data), ".BTF.ext")
    data[offset + 2] = 9  # header version 9
    obj = load_bytes(tmp_path, bytes(data))
    name = next(iter(obj.programs))
    assert obj.programs[name].test_run(bytes(64), engine="jit").retval == \
        obj.programs[name].test_run(bytes(64), engine="reference").retval
    with pytest.raises(BTFError, match="unsupported version 9"):
        _ = obj.btf_ext
    assert bpfjit.cli.main(["prog", "dump", str(GLOBALS), "-p", name]) == 0
    intact = capsys.readouterr().out.splitlines()
    assert bpfjit.cli.main(["prog", "dump", str(tmp_path / "bad.o"), "-p", name]) == 0
    assert capsys.readouterr().out.splitlines() == [line for line in intact if not line.startswith("; ")]


def test_unknown_map_type_names_the_map(tmp_path):
    data = bytearray(GLOBALS.read_bytes())
    offset, size = section_span(bytes(data), ".BTF")
    btf = btf_module.parse_btf(bytes(data[offset:offset + size]))
    definition = btf.resolved(btf.type(btf.find("counts", btf_module.Kind.VAR)).type)
    array = btf.type(btf.type(definition.member("type").type).type)  # __uint(type, 2): PTR -> ARRAY[2]
    record = struct.pack("<IIIIII", 0, BTF_KIND_ARRAY << 24, 0, array.type, array.index_type, array.nelems)
    at = bytes(data).find(record, offset)
    assert at > 0 and bytes(data).find(record, at + 1) < 0, "the array record must be unique"
    struct.pack_into("<I", data, at + 20, 99)  # map type 99
    with pytest.raises(MapError, match="counts.*unknown map type 99"):
        load_bytes(tmp_path, bytes(data))


def test_not_an_object(tmp_path):
    with pytest.raises(BPFError, match="not an ELF file"):
        load_bytes(tmp_path, b"hello")


def test_relocation_moved_outside_its_section(tmp_path, capsys):
    """The hostile-input campaign's reproducer: an edit of one r_offset's low two bytes in globals.o moves
    prog_b's `r1 = .rodata+4 ll` (bpf_printk's format string) outside the socket section. The
    loader used to skip it: the ld_imm64 kept its immediate, 4, which bpf_printk then read as an
    address, and test_run(engine="reference") died of a segfault. Now the load fails, naming the
    file, the relocation table, the relocation, its place and its symbol."""
    data = bytearray(GLOBALS.read_bytes())
    table, _ = section_span(bytes(data), ".relsocket")
    entry = table + 3 * 16  # Elf64_Rel #3: r_offset 0x48, R_BPF_64_64 against .rodata
    assert struct.unpack_from("<QQ", data, entry) == (0x48, (10 << 32) | 1)
    data[entry + 1] = 0x10  # r_offset 0x48 -> 0x1048
    assert sum(a != b for a, b in zip(data, GLOBALS.read_bytes())) == 1
    message = (r"bad\.o: \.relsocket: relocation #3 at socket\+0x1048 against \.rodata: the offset lies outside "
               r"socket \(120 bytes\)$")
    with pytest.raises(ObjectError, match=message):
        load_bytes(tmp_path, bytes(data))
    assert bpfjit.cli.main(["run", str(tmp_path / "bad.o"), "-p", "prog_b", "--engine", "reference"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"bpfjit: error: {tmp_path / 'bad.o'}: .relsocket: relocation #3 at socket+0x1048")

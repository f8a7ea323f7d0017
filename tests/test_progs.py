"""The C test programs in tests/progs: our disassembly against LLVM's, object freshness, the ELF reader.

tests/progs/build.sh builds every X.c into X.o and writes X.objdump.txt with llvm-objdump-19 -d;
both are committed, so these tests run without a compiler. The golden listing is LLVM's output,
never ours: the disassembler must reproduce it character for character.
"""
from __future__ import annotations

import pathlib
import random
import shutil
import struct
import subprocess

import pytest

from bpfjit import disasm, isa
from bpfjit.errors import BPFError
from bpfjit.runtime import elf
from bpfjit.verifier import cfg

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
SOURCES = sorted(PROGS.glob("*.c"))
OBJECTS = sorted(PROGS.glob("*.o"))
XDP = PROGS / "xdp_parse.o"
DISASSEMBLY = "Disassembly of section"
CLANG_FLAGS = ["-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c"]
XDP_DROP, XDP_PASS = 1, 2


def _from_disassembly(text: str) -> str:
    """llvm-objdump's output from the first "Disassembly of section" line to the end."""
    start = text.find(DISASSEMBLY)
    assert start >= 0, "no disassembly in the listing"
    return text[start:]


def our_objdump(path: pathlib.Path) -> str:
    """bpfjit's rendering of `llvm-objdump -d path`, without the file-format header."""
    text = "".join(f"\n{DISASSEMBLY} {section.name}:\n\n"
                   + disasm.listing(isa.decode(section.code), section.symbols)
                   for section in elf.code_sections(path))
    return _from_disassembly(text)


def _first_difference(ours: str, golden: str) -> str:
    for number, (a, b) in enumerate(zip(ours.splitlines(), golden.splitlines()), 1):
        if a != b:
            return f"line {number}:\n  ours: {a!r}\n  llvm: {b!r}"
    return f"line counts differ: ours {len(ours.splitlines())}, llvm {len(golden.splitlines())}"


# --- the committed objects -----------------------------------------------------------------------

def test_every_source_is_built():
    assert SOURCES, f"no C programs in {PROGS}"
    for source in SOURCES:
        for suffix in (".o", ".objdump.txt"):
            built = source.with_suffix(suffix)
            assert built.exists(), f"{built.name} is missing: run tests/progs/build.sh"


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda p: p.name)
def test_disassembly_matches_llvm_objdump(obj: pathlib.Path):
    golden = _from_disassembly(obj.with_suffix(".objdump.txt").read_text())
    ours = our_objdump(obj)
    assert ours == golden, _first_difference(ours, golden)


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda p: p.name)
def test_code_sections_round_trip(obj: pathlib.Path):
    for section in elf.code_sections(obj):
        assert isa.encode(isa.decode(section.code)) == section.code, section.name


# --- freshness: the committed objects are what the committed sources compile to -------------------

def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed: freshness of committed objects not checked")
    return path


def _run(*args: str, cwd: pathlib.Path | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_committed_objects_are_fresh(source: pathlib.Path, tmp_path: pathlib.Path):
    clang = _tool("clang-19")
    objdump = _tool("llvm-objdump-19")
    fresh = tmp_path / source.with_suffix(".o").name
    # Same flags as build.sh, run from the same directory with the same relative source name.
    _run(clang, *CLANG_FLAGS, source.name, "-o", str(fresh), cwd=PROGS)

    golden = _from_disassembly(source.with_suffix(".objdump.txt").read_text())
    assert _from_disassembly(_run(objdump, "-d", str(fresh))) == golden, \
        f"{source.name} no longer compiles to the committed listing: run tests/progs/build.sh"
    committed = elf.code_sections(source.with_suffix(".o"))
    assert elf.code_sections(fresh) == committed, \
        f"{source.name} no longer compiles to the committed object: run tests/progs/build.sh"


# --- the XDP program -----------------------------------------------------------------------------

def test_xdp_program_structure():
    sections = elf.code_sections(XDP)
    assert [(s.name, [name for _, name in s.symbols]) for s in sections] == [
        (".text", ["ipv4_csum_ok"]), ("xdp", ["prog"])]
    (linked,) = elf.read_object(XDP).programs  # the .text subprogram is appended after prog
    insns = list(linked.insns)
    facts = cfg.analyse(insns, helper_ids=set())
    assert [f.start for f in facts.functions] == sorted(linked.function_tokens.values())
    assert len(facts.functions) == 2
    assert not any(i.opcode == isa.CALL_OP and i.src == isa.CALL_HELPER for i in insns)
    # What the program is meant to exercise: a bpf-to-bpf call and a loop (a backward jump).
    assert any(insn.is_local_call for insn in insns)
    assert any(insn.is_jump and insn.op not in (isa.CALL, isa.EXIT) and insn.off < 0
               for i, insn in enumerate(insns) if not isa.is_filler(insns, i))


# --- malformed objects: always BPFError, never another exception ---------------------------------

def _xdp_bytes() -> bytes:
    return XDP.read_bytes()


def _cut_points(data: bytes) -> list[int]:
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    return sorted({1, 3, 4, 10, 16, 19, 20, 40, 63, 64, 65, 200, len(data) // 2,
                   shoff - 1, shoff, shoff + 1, shoff + 64, len(data) - 64, len(data) - 1})


def test_truncated_objects_are_rejected():
    data = _xdp_bytes()
    for cut in _cut_points(data):
        with pytest.raises(BPFError, match="<bytes>"):
            elf.code_sections(data[:cut])


def test_truncated_file_names_the_file(tmp_path: pathlib.Path):
    path = tmp_path / "cut.o"
    path.write_bytes(_xdp_bytes()[:len(_xdp_bytes()) // 2])
    with pytest.raises(BPFError, match="cut.o: truncated"):
        elf.code_sections(path)


def test_wrong_machine_is_rejected(tmp_path: pathlib.Path):
    data = bytearray(_xdp_bytes())
    struct.pack_into("<H", data, 18, 62)  # EM_X86_64
    path = tmp_path / "x86.o"
    path.write_bytes(data)
    with pytest.raises(BPFError, match=r"x86\.o: not a BPF object \(e_machine 62"):
        elf.code_sections(path)


def test_empty_file_is_rejected(tmp_path: pathlib.Path):
    path = tmp_path / "empty.o"
    path.write_bytes(b"")
    with pytest.raises(BPFError, match="empty.o: not an ELF file"):
        elf.code_sections(path)
    assert not elf.is_elf(b"")


def test_missing_file_is_rejected(tmp_path: pathlib.Path):
    with pytest.raises(BPFError, match="nothing.o: cannot read"):
        elf.code_sections(tmp_path / "nothing.o")


def test_random_bytes_with_elf_magic_are_rejected():
    rng = random.Random(1)
    bpf_ident = _xdp_bytes()[:20]  # a plausible ELF64/LSB/EM_BPF prefix, garbage after it
    for size in (4, 5, 20, 64, 65, 128, 1000, 4096):
        for prefix in (elf.ELF_MAGIC, bpf_ident[:min(size, 20)]):
            data = prefix + rng.randbytes(max(size - len(prefix), 0))
            assert elf.is_elf(data)
            with pytest.raises(BPFError):
                elf.code_sections(data)


def test_corrupted_objects_never_raise_anything_else():
    """Random byte changes in the headers and tables: a clean result or a BPFError, nothing else."""
    data = _xdp_bytes()
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    places = list(range(64)) + list(range(shoff, len(data)))
    rng = random.Random(2)
    for _ in range(500):
        copy = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            copy[rng.choice(places)] = rng.randrange(256)
        try:
            sections = elf.code_sections(bytes(copy))
        except BPFError:
            continue
        assert all(isinstance(s, elf.CodeSection) for s in sections)


def test_is_elf():
    assert elf.is_elf(_xdp_bytes())
    assert not elf.is_elf(b"\x7fEL")
    assert not elf.is_elf(b"MZ\x90\x00")

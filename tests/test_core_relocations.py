"""CO-RE relocations (``bpfjit.load(btf=...)``, runtime/btf/core.py): field offsets, sizes,
existence, signedness and bitfields, type and enum facts, resolved against the object's own types
(the default: clang's answers stand) or a target BTF whose types differ, and poisoned where the
target cannot satisfy them, as libbpf does.

tests/progs/core_reloc.c stores what it reads and the relocated constants in ``out[]``;
tests/progs/core_target.c declares the same type names laid out differently (fields moved,
resized, renamed, gone; other bitfield widths and enumerator values). The packets the tests build
hold the struct in the layout of whichever types the load resolved against, so every field read
must land on the value put there.
"""
from __future__ import annotations

import pathlib
import struct

import pytest

import bpfjit
from bpfjit import isa
from bpfjit.cli import main
from bpfjit.errors import BPFError, BTFError, ProgramError, VerifierError
from bpfjit.runtime.btf import CoreRelo, core
from bpfjit.runtime.elf_tables import read_sections

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
OBJECT = str(PROGS / "core_reloc.o")
TARGET = str(PROGS / "core_target.o")
VMLINUX = pathlib.Path("/sys/kernel/btf/vmlinux")
POISON = f"invalid func unknown#{core.POISON_HELPER}"
MASK64 = (1 << 64) - 1

# The field values every packet holds, whichever layout it is in.
A, B, C, D = -5, 0xBEEF, 0x7A, 0x1122334455667788
LO, SGN, ARR2, X, Y = 9, -3, 0xA2, 0x51, 0x52
WIDE_B = 0x1BEEF  # the target's b is 32 bits: a 16-bit load would cut it
TARGET_LO, TARGET_SGN = 0x55, -7  # 7 and 5 bits wide in the target


def local_packet() -> bytes:
    """struct sample as core_reloc.c declares it: a@0 b@4 c@6 d@8, lo:4 and sgn:6 at bit 128,
    arr[4]@20, in{x, y}@36."""
    p = bytearray(64)
    struct.pack_into("<iHBxq", p, 0, A, B, C, D)
    struct.pack_into("<I", p, 16, LO | (SGN & 0x3F) << 4)
    struct.pack_into("<I", p, 20 + 2 * 4, ARR2)
    struct.pack_into("<II", p, 36, X, Y)
    return bytes(p)


def target_packet() -> bytes:
    """struct sample as core_target.c declares it: d@0 b(u32)@8 a@12 arr[6]@16, pad:3 sgn:5 lo:7
    at bit 320, in{y, pad, x}@44; no c."""
    p = bytearray(64)
    struct.pack_into("<qIi", p, 0, D, WIDE_B, A)
    struct.pack_into("<I", p, 16 + 2 * 4, ARR2)
    struct.pack_into("<I", p, 40, (TARGET_SGN & 0x1F) << 3 | TARGET_LO << 8)
    struct.pack_into("<III", p, 44, Y, 0, X)
    return bytes(p)


def run_out(obj, program: str, engine: str, data: bytes, ctx: bytes | None = None) -> tuple[int, list[int]]:
    obj.globals["out"] = [0] * 16
    retval = obj.programs[program].test_run(data, ctx=ctx, engine=engine).retval
    return retval, list(obj.globals["out"])


@pytest.fixture(scope="module")
def local_obj():
    """The object against its own types (one load for the module: each load allocates maps)."""
    return bpfjit.load(OBJECT)


@pytest.fixture(scope="module")
def target_obj():
    """The object against core_target.o's types."""
    return bpfjit.load(OBJECT, btf=TARGET)


def poisoned_slots(program) -> list[int]:
    return [i for i, insn in enumerate(program.original_insns) if insn == core.poisoned()]


# --- the object's own types: clang's answers stand ----------------------------------------------------

def test_against_its_own_types_every_field_reads_as_clang_laid_it_out(engine, local_obj):
    obj = local_obj
    retval, out = run_out(obj, "fields", engine, local_packet())
    assert retval == 2  # XDP_PASS
    assert out[:14] == [A & MASK64, B, C, D, LO, SGN & MASK64, ARR2, Y,
                        2, 8, 1, 1,  # sizeof b, offsetof d, c exists, sgn is signed
                        A & MASK64,  # sample___v1.renamed is the local flavour's first int
                        X]           # bpf_core_read of in.x
    assert not any("substituting" in line for line in obj.core_log)


def test_against_its_own_types_type_and_enum_facts_are_the_local_ones(engine, local_obj):
    obj = local_obj
    sample = obj.btf.find("sample", bpfjit.btf.Kind.STRUCT)
    _, out = run_out(obj, "types", engine, bytes(14))
    assert out[:13] == [1, 1, obj.btf.size(sample), 1, 1, sample, sample,
                        1, 4, 1, 8, 1 << 32, 8]


def test_the_core_log_says_what_each_relocation_did(local_obj):
    assert [line for line in local_obj.core_log if "'skb_fields'" in line] == [
        "prog 'skb_fields': relo #0: <byte_off> [36] struct __sk_buff___mine.len (0:2 @ offset 8): "
        "patched insn #0 (LDX/ST/STX) off 8 -> 8",
        "prog 'skb_fields': relo #1: <byte_off> [36] struct __sk_buff___mine.mark (0:1 @ offset 4): "
        "patched insn #1 (LDX/ST/STX) off 4 -> 4",
        "prog 'skb_fields': relo #2: <byte_off> [36] struct __sk_buff___mine.priority (0:0 @ offset 0): "
        "patched insn #2 (LDX/ST/STX) off 0 -> 0",
    ]


# --- a target whose types differ ---------------------------------------------------------------------

def test_against_a_target_fields_are_read_where_the_target_has_them(engine, target_obj):
    obj = target_obj
    retval, out = run_out(obj, "fields", engine, target_packet())
    assert retval == 2
    assert out[:14] == [A & MASK64, WIDE_B, 0xCC, D, TARGET_LO, TARGET_SGN & MASK64, ARR2, Y,
                        4, 0, 0, 1,  # b is 4 bytes, d at 0, c is gone, sgn still signed
                        0xDEAD,      # no flavour of sample has 'renamed': the guarded read is dead
                        X]


def test_the_relocated_values_are_the_targets_layout(target_obj):
    log = "\n".join(target_obj.core_log)
    assert "struct sample.a (0:0 @ offset 0): patched insn #6 (LDX/ST/STX) off 0 -> 12" in log
    assert "struct sample.b (0:1 @ offset 4): patched insn #12 (LDX/ST/STX) off 4 -> 8, mem_sz 2 -> 4" in log
    assert "struct sample.arr[2] (0:6:2 @ offset 28): patched insn #75 (LDX/ST/STX) off 28 -> 24" in log
    assert "<lshift_u64> [8] struct sample.lo (0:4 @ offset 16): patched insn #39 (ALU/ALU64) imm 60 -> 49" in log


def test_unsatisfiable_relocations_in_dead_branches_are_poisoned(target_obj):
    assert poisoned_slots(target_obj.programs["fields"]) == [17, 89]  # s->c and sample___v1.renamed
    assert poisoned_slots(target_obj.programs["types"]) == [29, 30]  # VIOLET's value, an ld_imm64
    assert sum("no matching target found" in line for line in target_obj.core_log) == 3


def test_against_a_target_type_and_enum_facts_are_the_targets(engine, target_obj):
    obj = target_obj
    target = core.read_target(TARGET)
    sample = target.find("sample", bpfjit.btf.Kind.STRUCT)
    _, out = run_out(obj, "types", engine, bytes(14))
    assert out[:13] == [0,  # struct only_here is not in the target
                        1, target.size(sample),
                        1, 0,  # inner matches (a member more is fine); pair does not (first is a long)
                        obj.btf.find("sample", bpfjit.btf.Kind.STRUCT), sample,
                        1, 40,  # GREEN exists, BLUE is 40
                        0, 0x77,  # VIOLET is gone: its guarded value is dead code
                        2 << 32, 12]  # the 64-bit enumerator, and sizeof(struct inner)


def test_a_parsed_btf_is_a_target_too():
    obj = bpfjit.load(OBJECT, btf=core.read_target(TARGET), programs=["types"])
    _, out = run_out(obj, "types", "reference", bytes(14))
    assert out[8] == 40


# --- the context through a flavour of __sk_buff ------------------------------------------------------

def skb_ctx(mark: int, priority: int) -> bytes:
    ctx = bytearray(192)  # struct __sk_buff: mark at 8, priority at 32
    struct.pack_into("<I", ctx, 8, mark)
    struct.pack_into("<I", ctx, 32, priority)
    return bytes(ctx)


def test_ctx_fields_are_relocated_to_the_targets_sk_buff(engine):
    obj = bpfjit.load(OBJECT, btf=TARGET, programs=["skb_fields"])  # loads before the dead-code change too
    retval, out = run_out(obj, "skb_fields", engine, bytes(60), skb_ctx(0x11, 0x22))
    assert out[:3] == [60, 0x11, 0x22]
    assert retval == 0x22113C


def test_ctx_fields_against_its_own_flavour_read_the_local_offsets(engine, local_obj):
    _, out = run_out(local_obj, "skb_fields", engine, bytes(60), skb_ctx(0x11, 0x22))
    assert (out[0], out[2]) == (0x11, 60)  # 'len' at 8 is the real mark; 'priority' at 0 the real len


@pytest.mark.slow  # parsing the kernel's BTF takes seconds
@pytest.mark.skipif(not VMLINUX.exists(), reason="the running kernel exposes no BTF at /sys/kernel/btf/vmlinux")
def test_ctx_fields_against_the_kernels_btf():
    obj = bpfjit.load(OBJECT, btf=VMLINUX, programs=["skb_fields"])
    assert obj.programs["skb_fields"].test_run(bytes(60), ctx=skb_ctx(0x11, 0x22)).retval == 0x22113C


@pytest.mark.kernel
def test_the_kernel_relocates_ctx_fields_as_bpfjit_does_against_its_btf(kernel_engine):
    from bpfjit.kernel import kernel_test_run
    kernel = kernel_test_run(OBJECT, "skb_fields", bytes(60), skb_ctx(0x11, 0x22))
    obj = bpfjit.load(OBJECT, btf=VMLINUX, programs=["skb_fields"])
    ours = obj.programs["skb_fields"].test_run(bytes(60), ctx=skb_ctx(0x11, 0x22))
    assert kernel.retval == ours.retval == 0x22113C


# --- poisoned instructions a path reaches -------------------------------------------------------------

REACHABLE = [
    ("unguarded", 6, "relo #0: <byte_off> [16] struct sample___v1.renamed (0:0 @ offset 0): "
                     "no matching target found"),
    ("resized_signed", 6, "relo #1: <byte_off> [8] struct sample.narrow (0:8 @ offset 44): accesses field "
                          "incorrectly (make sure you are accessing pointers, unsigned integers, or fields of "
                          "matching type and size)"),
]


@pytest.mark.parametrize("program,slot,failed", REACHABLE)
def test_a_reachable_poisoned_instruction_is_refused_with_the_kernels_message(program, slot, failed):
    with pytest.raises(ProgramError) as caught:
        bpfjit.load(OBJECT, btf=TARGET, programs=[program])
    assert (caught.value.index, caught.value.reason) == (slot, POISON)


@pytest.mark.parametrize("program,slot,failed", REACHABLE)
def test_the_refusal_names_the_relocation_that_failed(program, slot, failed):
    with pytest.raises(VerifierError) as caught:
        bpfjit.load(OBJECT, btf=TARGET, programs=[program])
    error = caught.value
    assert (error.index, error.message, error.insn) == (slot, POISON, "<invalid CO-RE relocation>")
    assert f"{slot}: <invalid CO-RE relocation>\nfailed to resolve CO-RE relocation {failed}" in error.log


@pytest.mark.parametrize("program", ["unguarded", "resized_signed"])
def test_a_program_poisoned_against_a_target_loads_against_its_own_types(program):
    obj = bpfjit.load(OBJECT, programs=[program])
    assert poisoned_slots(obj.programs[program]) == []


# --- names ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,essential", [
    ("task_struct___v5_10", "task_struct"), ("sample___v1", "sample"), ("__sk_buff___mine", "__sk_buff"),
    ("a___b___c", "a___b"), ("plain", "plain"), ("x____y", "x____y"), ("x___", "x___"), ("___y", "___y"),
])
def test_the_essential_name_drops_the_flavour(name, essential):
    assert core.essential_name(name) == essential


# --- bad input: a clear error, never a traceback -----------------------------------------------------------

def relocation(obj, access: str, kind: int, type_name: str = "sample") -> CoreRelo:
    return CoreRelo("xdp", 0, obj.btf.find(type_name), access, kind)


@pytest.mark.parametrize("access,kind,message", [
    ("0:99", 0, "parsing [8] struct sample + 0:99 failed: access string '0:99': member 99 of type id 8 does "
                "not exist (9 members)"),
    ("0:a", 0, "parsing [8] struct sample + 0:a failed: access string '0:a' is not a list of indexes"),
    ("", 0, "parsing [8] struct sample +  failed: access string '' is empty or starts with ':'"),
    ("1", 8, "parsing [8] struct sample + 1 failed: access string '1' of a type relocation is not \"0\""),
    ("0:6:9", 0, "parsing [8] struct sample + 0:6:9 failed: access string '0:6:9': index 9 past the 4 elements"),
    ("0:0:0", 0, "parsing [8] struct sample + 0:0:0 failed: access string '0:0:0' (step 2) reaches type id"),
    ("0", 77, "unrecognized CO-RE relocation kind 77"),
])
def test_a_record_the_local_types_do_not_have_is_a_btf_error(local_obj, access, kind, message):
    with pytest.raises(BTFError) as caught:
        core.resolve(relocation(local_obj, access, kind), local_obj.btf, None)
    assert str(caught.value).startswith(message)


def test_an_instruction_that_does_not_hold_the_local_value_is_a_btf_error(local_obj):
    result = core.resolve(relocation(local_obj, "0:3", 0), local_obj.btf, None)  # offsetof d: 8
    insns = [isa.Insn(isa.LDX | isa.MEM | isa.DW, 1, 2, off=16)]
    with pytest.raises(BTFError, match=r"unexpected insn #0 \(LDX/ST/STX\) value: got 16, exp 8 -> 8"):
        core.patch(insns, 0, result)
    with pytest.raises(BTFError, match="trying to relocate unrecognized insn #0"):
        core.patch([isa.Insn(isa.EXIT_OP)], 0, result)


def corrupt_first_record(tmp_path, field: int, value: int) -> str:
    """core_reloc.o with one word of its first CO-RE record (0 insn_off, 1 type_id, 2 access_str_off,
    3 kind) replaced."""
    data = bytearray(pathlib.Path(OBJECT).read_bytes())
    ext = next(s for s in read_sections(bytes(data), OBJECT) if s.name == ".BTF.ext")
    hdr_len = struct.unpack_from("<I", data, ext.offset + 4)[0]
    core_off = struct.unpack_from("<I", data, ext.offset + 24)[0]
    first = ext.offset + hdr_len + core_off + 4 + 8  # rec_size, then the first section's name and count
    struct.pack_into("<I", data, first + 4 * field, value)
    path = tmp_path / "core_bad.o"
    path.write_bytes(bytes(data))
    return str(path)


def test_a_record_of_an_unknown_kind_fails_the_load(tmp_path):
    with pytest.raises(BTFError, match=r"^core_bad.o: prog 'fields': relo #0: unrecognized CO-RE relocation kind 77$"):
        bpfjit.load(corrupt_first_record(tmp_path, 3, 77))


def test_a_record_off_its_instruction_fails_the_load(tmp_path):
    with pytest.raises(BTFError, match="core_bad.o: .*: relo #0: insn offset 3 is not on an instruction boundary"):
        bpfjit.load(corrupt_first_record(tmp_path, 0, 3))


def test_an_unparsable_btf_ext_is_ignored_without_a_target_and_refused_with_one(tmp_path):
    path = corrupt_first_record(tmp_path, 1, 1 << 20)  # a type id past the last type
    assert bpfjit.load(path, programs=["skb_fields"]).core_log == []  # as libbpf: clang's answers stand
    with pytest.raises(BTFError, match=r"core_bad.o: CO-RE relocations cannot be applied: BTF.ext: core_relo "
                                       r"at byte offset \d+: type id 1048576 out of range"):
        bpfjit.load(path, btf=TARGET, programs=["skb_fields"])


@pytest.mark.parametrize("contents,message", [
    (b"hello", "neither a BTF file nor an ELF file with a .BTF section"),
    (b"\x9f\xeb\x01\x00", r"target: BTF: header hdr_len at byte offset 4 \(\+4\) past the end"),
    (b"\x7fELF\x01\x01" + bytes(58), "only 64-bit little-endian ELF files are read for BTF"),
])
def test_a_target_that_is_not_btf_is_a_btf_error(tmp_path, contents, message):
    path = tmp_path / "target"
    path.write_bytes(contents)
    with pytest.raises(BTFError, match=message):
        bpfjit.load(OBJECT, btf=path, programs=["skb_fields"])


def test_an_elf_target_without_btf_and_a_missing_target_are_btf_errors(tmp_path):
    data = bytearray(pathlib.Path(OBJECT).read_bytes())
    btf = next(s for s in read_sections(bytes(data), OBJECT) if s.name == ".BTF")
    names = next(s for s in read_sections(bytes(data), OBJECT) if s.index == struct.unpack_from("<H", data, 62)[0])
    at = names.offset + bytes(data[names.offset:names.offset + names.size]).index(b".BTF\0")
    data[at:at + 4] = b".XYZ"  # the section is still there, under another name
    assert btf.size
    path = tmp_path / "nobtf.o"
    path.write_bytes(bytes(data))
    with pytest.raises(BTFError, match="nobtf.o: no .BTF section"):
        bpfjit.load(OBJECT, btf=path)
    with pytest.raises(BTFError, match="missing.o: cannot read"):
        bpfjit.load(OBJECT, btf=tmp_path / "missing.o")
    with pytest.raises(BPFError, match="btf= takes a path to a BTF or ELF file, or a BTF, not 7"):
        bpfjit.load(OBJECT, btf=7)


# --- the command line ------------------------------------------------------------------------------------

def test_the_cli_loads_against_a_target_with_btf(capsys):
    ctx = skb_ctx(0x11, 0x22).hex()
    assert main(["run", OBJECT, "-p", "skb_fields", "--btf", TARGET, "--data-hex", "00" * 60,
                 "--ctx-hex", ctx, "--engine", "reference"]) == 0
    assert str(0x22113C) in capsys.readouterr().out
    assert main(["run", OBJECT, "-p", "skb_fields", "--data-hex", "00" * 60, "--ctx-hex", ctx,
                 "--engine", "reference"]) == 0
    assert str(0x22113C) not in capsys.readouterr().out

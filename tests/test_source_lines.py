"""The C source line of a rejected instruction (.BTF.ext line info on the linked program), in the
VerifierError and woven into its log as the kernel prints it (``; <text> @ <file>:<line>``).

tests/progs/rejected_lines.c is written to be rejected; the lines expected here are found in that
source by their marker comments, and the expected instruction indexes are counted by hand from its
llvm-objdump listing (tests/progs/rejected_lines.objdump.txt) and match the Linux kernel's log of
the same object.
"""
from __future__ import annotations

import pathlib

import pytest

import bpfjit
from bpfjit import VerifierError
from bpfjit.program import Program
from bpfjit.runtime.btf import LineInfo
from bpfjit.runtime.elf_tables import read_sections
from bpfjit.source_lines import SourceLine, annotate_log, source_map

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
OBJECT = PROGS / "rejected_lines.o"
SOURCE = (PROGS / "rejected_lines.c").read_text().splitlines()


def line_of(marker: str) -> tuple[int, str]:
    """(number, text without its indentation) of the one source line holding marker."""
    (found,) = [(number, text.strip()) for number, text in enumerate(SOURCE, 1) if marker in text]
    return found


def kernel_form(marker: str) -> str:
    number, text = line_of(marker)
    return f"{text} @ rejected_lines.c:{number}"


def rejection(program: str, path: pathlib.Path = OBJECT, log_level: int = 1) -> VerifierError:
    with pytest.raises(VerifierError) as caught:
        bpfjit.load(path, programs=[program], verify=True, log_level=log_level)
    return caught.value


# --- a rejection names its C line ----------------------------------------------------------------

def test_rejection_in_the_program_names_its_line():
    error = rejection("unchecked_lookup")
    # socket+7 in the listing: "r0 = *(u64 *)(r0 + 0x0)", the load of *value.
    assert error.index == 7
    assert error.insn == "(79) r0 = *(u64 *)(r0 +0)"
    assert error.line == kernel_form("REJECTED: unchecked_lookup")
    assert error.message == "R0 invalid mem access 'map_value_or_null'"


def test_rejection_in_a_text_subprogram_names_its_line():
    error = rejection("unchecked_in_subprog")
    # The program is 7 slots; bump (.text 0-10) is placed at 7, bump_unchecked (.text 11-20) at 18,
    # so its load of *value (.text slot 17) is slot 18 + 6 = 24, as in the kernel's log.
    assert error.index == 24
    assert error.insn == "(79) r1 = *(u64 *)(r0 +0)"
    assert error.line == kernel_form("REJECTED: unchecked_in_subprog")


def test_the_message_is_one_line_with_index_instruction_and_source():
    error = rejection("unchecked_in_subprog")
    text = str(error)
    assert "\n" not in text
    assert text == ("unchecked_in_subprog: insn 24: R0 invalid mem access 'map_value_or_null'"
                    f" | 24: (79) r1 = *(u64 *)(r0 +0) | {kernel_form('REJECTED: unchecked_in_subprog')}")
    assert error.reason == error.message  # the kernel's words alone, as before


# --- the log -------------------------------------------------------------------------------------

def _annotations(log: str) -> list[int]:
    return [int(line.rsplit(":", 1)[1]) for line in log.splitlines() if line.startswith("; ")]


def test_log_shows_each_new_line_before_its_first_instruction():
    log = rejection("unchecked_in_subprog").log.splitlines()
    at = log.index(f"; {kernel_form('REJECTED: unchecked_in_subprog')}")
    assert log[at + 1] == "24: (79) r1 = *(u64 *)(r0 +0)"
    assert log[-1] == "R0 invalid mem access 'map_value_or_null'"


def test_log_lines_are_the_kernels():
    # The line numbers the Linux 6.18 verifier printed for this program, in order: the program's
    # own lines, bump's (entered at 24, its declaration), back to the caller (54), bump_unchecked's.
    log = rejection("unchecked_in_subprog").log
    assert _annotations(log) == [51, 53, 24, 26, 28, 29, 30, 54, 33, 35, 37]
    assert f"; {line_of('bump_unchecked(__u32 key)')[1]} @ rejected_lines.c:33" in log


def test_successful_verification_log_at_level_2_has_source_lines():
    obj = bpfjit.load(OBJECT, programs=["accepted"], verify=True, log_level=2)
    log = obj.programs["accepted"].verification.log.splitlines()
    number, text = line_of("return bump(skb->len);")
    assert log[0] == f"; {text} @ rejected_lines.c:{number}"
    assert log[1].startswith("0: (61) r1 = *(u32 *)(r1 +0)")


# --- without line info ---------------------------------------------------------------------------

def _without_btf_ext(tmp_path: pathlib.Path, corrupt: bool) -> pathlib.Path:
    """The object with its .BTF.ext renamed away, or with its magic number broken."""
    data = OBJECT.read_bytes()
    if corrupt:
        ext = next(s for s in read_sections(data, OBJECT.name) if s.name == ".BTF.ext")
        data = data[:ext.offset] + b"\0\0" + data[ext.offset + 2:]
    else:
        data = data.replace(b".BTF.ext\0", b".BTF.xxx\0")
    path = tmp_path / "no_lines.o"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("corrupt", [False, True], ids=["absent", "unparsable"])
def test_without_line_info_the_error_has_no_source(tmp_path, corrupt):
    error = rejection("unchecked_lookup", _without_btf_ext(tmp_path, corrupt))
    assert error.index == 7 and error.line is None
    assert str(error) == ("unchecked_lookup: insn 7: R0 invalid mem access 'map_value_or_null'"
                          " | 7: (79) r0 = *(u64 *)(r0 +0)")
    assert not any(line.startswith("; ") for line in error.log.splitlines())


def test_assembly_has_no_source_lines():
    with pytest.raises(VerifierError) as caught:
        Program.from_asm("exit", verify=True)
    assert caught.value.line is None
    assert str(caught.value) == "prog: insn 0: R0 !read_ok | 0: (95) exit"  # no source part


def test_object_lists_the_line_of_every_slot():
    obj = bpfjit.load(OBJECT, programs=["accepted"])
    lines = obj.source_lines("unchecked_in_subprog")  # linked, though not loaded
    assert len(lines) == 7 + 11 + 10  # the program, bump, bump_unchecked (slots, ld_imm64 is two)
    assert str(lines[24]) == kernel_form("REJECTED: unchecked_in_subprog")
    assert lines[24].file.endswith("rejected_lines.c")
    with pytest.raises(KeyError):
        obj.source_lines("nope")


# --- the mapping ---------------------------------------------------------------------------------

def _record(slot: int, line: int, text: str = "x") -> LineInfo:
    return LineInfo(slot * 8, "/src/dir/p.c", f"\t{text}", line, 1)


def test_subprogram_records_follow_the_subprogram():
    # Main: sec slots 0-2; then .text slots 4-5 (a second .text function) placed at 3.
    origins = [("sec", 0), ("sec", 1), ("sec", 2), (".text", 4), (".text", 5)]
    records = {"sec": [_record(0, 10), _record(2, 12)], ".text": [_record(0, 1), _record(4, 20, "sub")]}
    lines = source_map(origins, records)
    assert [line.line if line else None for line in lines] == [10, 10, 12, 20, 20]
    assert str(lines[3]) == "sub @ p.c:20"


def test_a_function_without_a_record_at_its_start_inherits_nothing():
    origins = [("sec", 0), ("sec", 1), (".text", 7), (".text", 8)]
    records = {"sec": [_record(0, 10)], ".text": [_record(8, 30)]}
    assert [line.line if line else None for line in source_map(origins, records)] == [10, 10, None, 30]


def test_annotate_repeats_nothing_and_skips_state_lines():
    lines = [SourceLine("p.c", 5, "a;"), SourceLine("p.c", 5, "a;"), SourceLine("p.c", 6, "b;")]
    log = "0: R1=ctx() R10=fp0\n0: (b7) r0 = 0\n1: (b7) r1 = 0\nfrom 1 to 2: R0=0\n2: (95) exit"
    assert annotate_log(log, lines).splitlines() == [
        "0: R1=ctx() R10=fp0", "; a; @ p.c:5", "0: (b7) r0 = 0", "1: (b7) r1 = 0", "from 1 to 2: R0=0",
        "; b; @ p.c:6", "2: (95) exit"]
    assert annotate_log(log, None) == log

"""Malformed bpf_conformance ``.data`` test files: one ``bpfjit: error: line N: ...`` line, exit 1.

Each file below is broken in one place; the CLI (``bpfjit run FILE.data``) must name that line of
the file and print nothing else, and ``asm.parse_test_file`` must raise an ``AsmError`` with the
same line. The well-formed parts of the format (notes sections, comments, several bytes per
``-- mem`` line) keep working.
"""
from __future__ import annotations

import pytest

from bpfjit import asm
from bpfjit.cli import main
from bpfjit.errors import AsmError

PROGRAM = "-- asm\nmov %r0, 1\nexit\n"

# (id, file text, line the error names, words the message must hold)
BROKEN = [
    ("bad hex in mem", PROGRAM + "-- mem\n00 11\n22 zz 44\n-- result\n0x1\n", 6, "-- mem: '22 zz 44'"),
    ("odd hex digit in mem", PROGRAM + "-- mem\n0a b\n-- result\n0x1\n", 5, "-- mem"),
    ("result not an integer", PROGRAM + "-- result\n0xfg\n", 5, "-- result: '0xfg' is not an integer"),
    ("result with two values", PROGRAM + "-- result\n0x1\n0x2\n", 6, "holds 2 values"),
    ("empty result", PROGRAM + "-- result\n\n", 4, "holds 0 values"),
    ("unknown section", PROGRAM + "-- memory\n00\n-- result\n0x1\n", 4, "unknown section '-- memory'"),
    ("repeated section", PROGRAM + "-- result\n0x1\n-- asm\nexit\n", 6,
     "a second '-- asm' section (the first is at line 1)"),
    ("raw word not hex", "-- raw\n0x00000001000000b7\n0x95q\n-- result\n0x1\n", 3, "-- raw: '0x95q'"),
    ("raw word over 64 bits", "-- raw\n0x1000000000000000095\n-- result\n0x1\n", 2, "64-bit"),
    ("no program at all", "# just a comment\n-- mem\n00\n-- result\n0x1\n", 5, "no program"),
    ("asm section without instructions", "-- asm\n# nothing\n\n-- result\n0\n", 1, "no program"),
    ("text before the first section", "# header\nmov %r0, 1\n-- asm\nexit\n", 2, "text before the first section"),
    ("assembly error", "# header\n\n" + PROGRAM + "bogus %r1\n-- result\n0x1\n", 6, "unknown mnemonic 'bogus'"),
]


@pytest.mark.parametrize("text, line, words", [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_broken_file_is_one_error_line_naming_the_line(capsys, tmp_path, text, line, words):
    path = tmp_path / "broken.data"
    path.write_text(text)
    assert main(["run", str(path), "--engine", "reference"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"bpfjit: error: {path}: line {line}: "), err
    assert words in err


@pytest.mark.parametrize("text, line", [case[1:3] for case in BROKEN if case[0] != "assembly error"],
                         ids=[case[0] for case in BROKEN if case[0] != "assembly error"])
def test_parse_test_file_raises_asm_error_with_the_line(text, line):
    with pytest.raises(AsmError) as caught:
        asm.parse_test_file(text)
    assert caught.value.line == line


def test_assembler_errors_name_the_files_line():
    # The -- asm text keeps its place in the file, so the assembler's line is the file's.
    case = asm.parse_test_file("# two\n# comment lines\n-- asm\nmov %r0, 1\nbogus\n-- result\n0\n")
    with pytest.raises(AsmError, match=r"^line 5: unknown mnemonic 'bogus'"):
        asm.assemble(case.asm)


def test_well_formed_file_parts():
    text = ("# Copyright line\n-- asm\nldxb %r0, [%r1+2]  # a comment\nexit\n-- mem\n0a0b 0c\n"
            "dd\n-- result\n0xC\n-- no register offset\ncall instruction\n-- c\nint x;\n")
    case = asm.parse_test_file(text)
    assert case.mem == bytes([0x0A, 0x0B, 0x0C, 0xDD])
    assert case.result == 0x0C
    assert case.notes == {"no register offset": "call instruction", "c": "int x;"}
    assert case.raw is None
    assert asm.assemble(case.asm) == asm.assemble("ldxb %r0, [%r1+2]\nexit")


def test_bad_hex_file_runs_after_the_fix(capsys, tmp_path):
    """The reproducer with its hex repaired runs: the error above came from the bad byte alone."""
    path = tmp_path / "fixed.data"
    path.write_text("-- asm\nldxb %r0, [%r1+1]\nexit\n-- mem\n00 2a 44\n-- result\n0x2a\n")
    assert main(["run", str(path), "--engine", "reference", "--json"]) == 0
    assert '"retval": 42' in capsys.readouterr().out

"""``bpfjit verify``: veristat-style verdicts and figures, and the kernel-style log of a rejection."""
from __future__ import annotations

import json
import pathlib

from bpfjit.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIREWALL = ROOT / "bpfjit" / "data" / "firewall.o"
GLOBALS = ROOT / "tests" / "progs" / "globals.o"
REJECTED = ROOT / "tests" / "progs" / "rejected_lines.o"  # see tests/test_source_lines.py


def source_line(marker: str) -> str:
    """The kernel's form of the line of rejected_lines.c holding marker: "<text> @ <file>:<n>"."""
    lines = (ROOT / "tests" / "progs" / "rejected_lines.c").read_text().splitlines()
    (number,) = [n for n, text in enumerate(lines, 1) if marker in text]
    return f"{lines[number - 1].strip()} @ rejected_lines.c:{number}"


def test_verified_program_gets_a_table_row(capsys):
    assert main(["verify", str(FIREWALL)]) == 0
    header, rule, row = capsys.readouterr().out.splitlines()[:3]
    assert header.split()[:3] == ["File", "Program", "Verdict"] and set(rule) <= {"-", " "}
    assert row.split()[:3] == ["firewall.o", "firewall", "success"]
    assert int(row.split()[4]) > 100  # instructions processed


def test_rejection_names_the_instruction_and_exits_1(capsys):
    # unchecked_lookup dereferences bpf_map_lookup_elem's result without checking it for NULL.
    assert main(["verify", str(REJECTED), "-p", "unchecked_lookup"]) == 1
    out = capsys.readouterr().out
    assert "unchecked_lookup: insn 7: R0 invalid mem access 'map_value_or_null'" in out
    assert out.rstrip().endswith("7: (79) r0 = *(u64 *)(r0 +0)\nR0 invalid mem access 'map_value_or_null'")


def test_json_has_veristat_figures(capsys):
    assert main(["verify", str(FIREWALL), str(REJECTED), str(GLOBALS), "--json"]) == 1
    records = {r["program"]: r for r in json.loads(capsys.readouterr().out)}
    assert records["firewall"]["verdict"] == "success" and records["firewall"]["states_total"] > 0
    assert records["unchecked_lookup"]["verdict"] == "failure" and records["accepted"]["verdict"] == "success"
    # prog_a calls through a function pointer in .data: verified against the functions whose address
    # the object takes (bpfjit's extension, docs/semantics.md#calls).
    assert records["prog_a"]["verdict"] == "success" and records["prog_b"]["verdict"] == "success"


def test_unknown_program_is_one_error_line(capsys):
    assert main(["verify", str(FIREWALL), "-p", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no program 'nope'" in err


def test_rejection_shows_source_line_and_instruction(capsys):
    assert main(["verify", str(REJECTED), "-p", "unchecked_in_subprog"]) == 1
    out = capsys.readouterr().out.splitlines()
    at = out.index("unchecked_in_subprog: insn 24: R0 invalid mem access 'map_value_or_null'")
    assert out[at + 1:at + 3] == [f"  ; {source_line('REJECTED: unchecked_in_subprog')}",
                                  "  24: (79) r1 = *(u64 *)(r0 +0)"]
    # Then the log (-p), with the kernel's source annotations.
    assert f"; {source_line('REJECTED: unchecked_in_subprog')}" in out[at + 3:]


def test_several_objects_in_one_table_rejections_without_figures(capsys):
    assert main(["verify", str(REJECTED), str(FIREWALL)]) == 1
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:6]]
    assert [row[:3] for row in rows] == [["rejected_lines.o", "unchecked_lookup", "failure"],
                                         ["rejected_lines.o", "unchecked_in_subprog", "failure"],
                                         ["rejected_lines.o", "accepted", "success"],
                                         ["firewall.o", "firewall", "success"]]
    assert rows[0][3:] == ["-"] * 5  # a rejection reports no figures
    assert all(int(cell) > 0 for row in rows[2:] for cell in row[3:7])  # time, insns, states (loops may be 0)


def test_json_rejection_has_index_instruction_and_source(capsys):
    assert main(["verify", str(REJECTED), "--json"]) == 1
    records = {r["program"]: r for r in json.loads(capsys.readouterr().out)}
    rejected = records["unchecked_lookup"]
    assert (rejected["insn_index"], rejected["insn"], rejected["message"]) == (
        7, "(79) r0 = *(u64 *)(r0 +0)", "R0 invalid mem access 'map_value_or_null'")
    assert rejected["source_line"] == source_line("REJECTED: unchecked_lookup")
    assert rejected["insns_processed"] is None and rejected["log"].endswith(rejected["message"])
    assert records["accepted"]["insn_index"] is None and records["accepted"]["insns_processed"] > 0

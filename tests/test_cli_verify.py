"""``bpfjit verify``: veristat-style verdicts and figures, and the kernel-style log of a rejection."""
from __future__ import annotations

import json
import pathlib

from bpfjit.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIREWALL = ROOT / "bpfjit" / "data" / "firewall.o"
GLOBALS = ROOT / "tests" / "progs" / "globals.o"


def test_verified_program_gets_a_table_row(capsys):
    assert main(["verify", str(FIREWALL)]) == 0
    header, rule, row = capsys.readouterr().out.splitlines()[:3]
    assert header.split()[:3] == ["File", "Program", "Verdict"] and set(rule) <= {"-", " "}
    assert row.split()[:3] == ["firewall.o", "firewall", "success"]
    assert int(row.split()[4]) > 100  # instructions processed


def test_rejection_names_the_instruction_and_exits_1(capsys):
    # prog_a calls through a function pointer loaded from .data: the verifier cannot type it.
    assert main(["verify", str(GLOBALS), "-p", "prog_a"]) == 1
    out = capsys.readouterr().out
    assert "prog_a: insn 28: callx R2 type=scalar expected=func" in out
    assert "28: (8d) callx r2" in out  # the log, in the kernel's text, ends at the failing insn


def test_json_has_veristat_figures(capsys):
    assert main(["verify", str(FIREWALL), str(GLOBALS), "--json"]) == 1
    records = {r["program"]: r for r in json.loads(capsys.readouterr().out)}
    assert records["firewall"]["verdict"] == "success" and records["firewall"]["states_total"] > 0
    assert records["prog_a"]["verdict"] == "failure" and records["prog_b"]["verdict"] == "success"


def test_unknown_program_is_one_error_line(capsys):
    assert main(["verify", str(FIREWALL), "-p", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no program 'nope'" in err

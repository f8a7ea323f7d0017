"""The command line: each verb, its JSON output, and clean one-line errors."""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from bpfjit.cli import main

DATA = pathlib.Path(__file__).resolve().parent / "data"


def run_cli(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        import io
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_data_file_both_engines(capsys):
    # byte_sum.data sums the bytes of its "-- mem" section (01 02 03 fe ff) in a loop
    for engine in ("reference", "jit"):
        code, out, _ = run_cli(capsys, "run", str(DATA / "byte_sum.data"), "--engine", engine, "--json")
        assert code == 0
        record = json.loads(out)
        assert record["engine"] == engine and record["program"] == "byte_sum"
        assert record["retval"] == 0x203 and record["data_out"] == "010203feff"


def test_run_asm_with_data_hex_and_repeat(capsys, tmp_path):
    source = tmp_path / "len.asm"
    source.write_text("mov %r0, %r2\nldxb %r3, [%r1+1]\nadd %r0, %r3\nstb [%r1+0], 7\nexit\n")
    code, out, _ = run_cli(capsys, "run", str(source), "--data-hex", "0102aa", "--repeat", "5", "--json")
    record = json.loads(out)
    assert code == 0 and record["retval"] == 3 + 2
    assert record["data_out"] == "0702aa"


def test_asm_then_disasm_then_run_raw(capsys, tmp_path):
    source = tmp_path / "p.asm"
    source.write_text("lddw %r0, 0x1122334455667788\nexit\n")
    binary = tmp_path / "p.bin"
    assert run_cli(capsys, "asm", str(source), "-o", str(binary))[0] == 0
    assert binary.read_bytes().hex() == "1800000088776655000000004433221195" + "00" * 7
    code, out, _ = run_cli(capsys, "disasm", str(binary))
    assert code == 0
    assert "r0 = 0x1122334455667788 ll" in out and "exit" in out
    code, out, _ = run_cli(capsys, "run", str(binary))
    assert code == 0 and "retval=0x1122334455667788" in out


def test_conformance_plugin_protocol(capsys, monkeypatch):
    # mov %r0, %r2 ; exit -> the memory length, printed in hex without a prefix
    program = "bf 20 00 00 00 00 00 00 95 00 00 00 00 00 00 00"
    code, out, _ = run_cli(capsys, "conformance-plugin", "00112233445566778899aabbccddeeff00",
                           stdin=program, monkeypatch=monkeypatch)
    assert code == 0 and out.strip() == "11"


@pytest.mark.parametrize("argv, message", [
    (["run", "/nonexistent/file.bin"], "No such file"),
    (["run", "--data-hex", "zz"], "not hexadecimal"),
    (["disasm", "-"], "-"),
])
def test_errors_are_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 1
    assert err.startswith("bpfjit: error:") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_bad_bytecode_error_names_the_instruction(capsys, tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes.fromhex("b700000001000000" "9500000001000000"))  # exit with imm=1
    code, _, err = run_cli(capsys, "run", str(bad))
    assert code == 1 and "insn 1" in err and "reserved" in err


def test_default_job_console_script():
    """The README's first set-up command runs the bundled firewall on both engines."""
    exe = shutil.which("bpfjit")
    argv = [exe, "run"] if exe else [sys.executable, "-m", "bpfjit.cli", "run"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "engines jit, interp, reference" in done.stdout and "agree on every engine" in done.stdout
    assert "XDP_DROP" in done.stdout and "XDP_PASS" in done.stdout and "XDP_TX" in done.stdout
    assert "mean per packet: jit" in done.stdout and "reference" in done.stdout
    assert "faster than the native interpreter" in done.stdout


# --- bench -------------------------------------------------------------------------------------------

def test_bench_prints_the_table_and_writes_json_and_plot(capsys, tmp_path):
    png, results = tmp_path / "bench.png", tmp_path / "bench.json"
    code, out, err = run_cli(capsys, "bench", "--filter", "^simple$", "--rounds", "1", "--no-native",
                             "--json", str(results), "--plot", str(png))
    assert code == 0, err
    assert out.startswith("CPU: ") and "\nsimple " in out
    (row,) = json.loads(results.read_text())["results"]
    assert row["name"] == "simple" and row["native_ns"] is None
    assert 0 < row["jit_small_ns"] < row["reference_ns"] and row["compile"]["total"] > 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_bench_capture_alone_runs_the_capture_passes(capsys, tmp_path, monkeypatch):
    from bpfjit.bench import capture
    monkeypatch.setattr(capture, "PACKETS", 2_000)  # the figures are not the point here
    results = tmp_path / "bench.json"
    code, out, err = run_cli(capsys, "bench", "--filter", "^capture$", "--rounds", "1", "--json", str(results))
    assert code == 0, err
    assert "capture: the firewall once per packet over 2,000 in-memory packets" in out and "\nsimple " not in out
    passes = json.loads(results.read_text())["capture"]
    assert [p["engine"] for p in passes] == ["jit, 1 thread", "jit, 2 threads", "interp, 1 thread"]
    assert all(p["packets"] == 2_000 and p["packets_per_second"] > 0 for p in passes)


def test_bench_refuses_an_output_it_cannot_write_before_running(capsys, tmp_path):
    code, out, err = run_cli(capsys, "bench", "--filter", "simple", "--plot", str(tmp_path / "missing" / "b.png"))
    assert (code, out) == (1, "")
    assert err == f"bpfjit: error: {tmp_path / 'missing' / 'b.png'}: no such folder\n"


def test_asm_output_to_a_missing_folder_is_a_clean_error(capsys, tmp_path):
    source = tmp_path / "p.asm"
    source.write_text("mov %r0, 1\nexit\n")
    code, _, err = run_cli(capsys, "asm", str(source), "-o", str(tmp_path / "missing" / "p.bin"))
    assert code == 1 and err.startswith("bpfjit: error: ") and "No such file or directory" in err

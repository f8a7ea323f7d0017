"""bpf_conformance's official runner driving bpfjit's plugin, on every engine (issue 16's acceptance).

test_conformance.py runs the suite's programs in-process; this runs them the way other BPF
runtimes are measured: ``bpf_conformance_runner`` starts ``bpfjit conformance-plugin`` once per
test, program hex on stdin, and compares what it prints. That checks the plugin protocol too.

Opt-in: BPF_CONFORMANCE_RUNNER names the built runner (``tests/build_conformance_runner.sh
SRC_DIR`` builds it and prints its path); without it the module skips. Each test starts a Python
process, so a run of the suite takes minutes per engine.

The runner counts a skipped test as neither run nor failed and still exits 0, so the exit code
alone proves nothing: its per-test lines are counted here, and a skip is a failure.
"""
from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys
from collections import Counter

import pytest

from bpfjit.program import ENGINES

from conftest import conformance_dir

RUNNER_VARIABLE = "BPF_CONFORMANCE_RUNNER"
RUNNER = os.environ.get(RUNNER_VARIABLE)
if not RUNNER:
    pytest.skip(f"{RUNNER_VARIABLE} is not set: it names the built bpf_conformance_runner "
                "(tests/build_conformance_runner.sh builds it)", allow_module_level=True)

SUITE_SIZE = 313
# The runner's options that let every test in: the v4 instruction set (sdiv/smod, movsx, ldsx,
# bswap, gotol, 32-bit jumps, atomics) and the groups it leaves out by default (callx, legacy packet).
EVERY_INSTRUCTION = ("--cpu_version", "v4", "--include_groups", "callx", "packet")
RUN_TIMEOUT = 3600  # seconds for one run of the whole suite: far above the few minutes it takes
# One line per test in the runner's summary: "PASS: \"path\"", "FAIL: \"path\" why", ...
VERDICT_LINE = re.compile(r'^(PASS|FAIL|ERROR|SKIP|UNKNOWN): "(.+?)"(?: (.*))?$')
TOTALS_LINE = re.compile(r"^Passed (\d+) out of (\d+) tests\.$", re.MULTILINE)


def write_plugin(folder: pathlib.Path, engine: str) -> pathlib.Path:
    """The runner takes one executable and appends its options after the memory argument: this
    script is ``bpfjit conformance-plugin ARGS --engine ENGINE``, on the Python running the tests."""
    plugin = folder / f"bpfjit-plugin-{engine}"
    command = [sys.executable, "-m", "bpfjit.cli", "conformance-plugin"]
    plugin.write_text(f'#!/bin/sh\nexec {shlex.join(command)} "$@" --engine {shlex.quote(engine)}\n')
    plugin.chmod(0o755)
    return plugin


def run_suite(plugin: pathlib.Path, *options: str) -> tuple[Counter, list[str], tuple[int, int], int]:
    """Run the whole suite through the runner: (count per verdict, the lines that are not a pass,
    the runner's own "passed, run" totals, its exit status)."""
    done = subprocess.run([RUNNER, "--test_file_directory", str(conformance_dir()), "--plugin_path", str(plugin),
                           *EVERY_INSTRUCTION, *options],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    summary = done.stdout.partition("Test results:\n")[2]
    verdicts: Counter = Counter()
    not_passed = []
    for line in summary.splitlines():
        match = VERDICT_LINE.match(line)
        if match:
            verdicts[match[1]] += 1
            if match[1] != "PASS":
                not_passed.append(line)
    totals = TOTALS_LINE.search(summary)
    assert totals, f"no totals in the runner's output:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return verdicts, not_passed, (int(totals[1]), int(totals[2])), done.returncode


def assert_all_passed(plugin: pathlib.Path, *options: str) -> None:
    assert len(list(conformance_dir().glob("*.data"))) == SUITE_SIZE
    verdicts, not_passed, totals, status = run_suite(plugin, *options)
    assert not_passed == [], f"{len(not_passed)} of {SUITE_SIZE} did not pass:\n" + "\n".join(not_passed)
    assert verdicts == Counter(PASS=SUITE_SIZE)
    assert totals == (SUITE_SIZE, SUITE_SIZE)
    assert status == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_runner_passes_every_test(engine, tmp_path):
    assert_all_passed(write_plugin(tmp_path, engine))


def test_runner_passes_every_test_as_elf(tmp_path):
    # --elf true: the runner wraps each program in an ELF object (section .text, function main) and
    # adds --elf to the plugin's arguments. One engine is enough: the object only changes how the
    # plugin gets the bytecode, and it is the native interpreter's acceptance.
    assert_all_passed(write_plugin(tmp_path, "interp"), "--elf", "true")

"""Ctrl-C stops ``bpfjit`` at once, even while a jitted program loops in native code.

The command runs in a child process, as a user would run it; SIGINT is what a terminal sends on
Ctrl-C. The child starts with SIGINT at its default disposition: a test runner started in the
background may have it ignored, and a child inherits that.
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

# A loop of 400 multiplications and additions that LLVM cannot fold, whose exit waits for a value
# r0 does not take: a raw program's run ends after RAW_LOOP_TRIPS trips (2**28), which takes
# minutes here, and in the JIT never comes back to Python until then. It runs with --no-verify:
# sandboxed code must stop at Ctrl-C as well.
ENDLESS = "mov %r0, 1\n" + "mul %r0, %r0\nadd %r0, 1\n" * 200 + "jeq %r0, 12345, +1\nja -402\nexit\n"
STARTUP_TIMEOUT = 60.0  # imports and argument parsing on a loaded machine
EXIT_TIMEOUT = 5.0


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


def _wait_until_working(child: subprocess.Popen) -> None:
    """Until the verb's worker thread runs (the main thread then only waits for it), plus a
    second for the program to be compiled and in its loop."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while _threads(child.pid) < 2:
        assert child.poll() is None, f"the command ended early: {child.communicate()}"
        assert time.monotonic() < deadline, "the command never started its work"
        time.sleep(0.05)
    time.sleep(1.0)
    assert child.poll() is None, f"the endless loop ended: {child.communicate()}"


def test_ctrl_c_stops_an_endless_jitted_loop_at_once(tmp_path: pathlib.Path):
    program = tmp_path / "loop.asm"
    program.write_text(ENDLESS)
    child = subprocess.Popen([sys.executable, "-m", "bpfjit.cli", "run", "--no-verify", str(program)],  # jit
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_until_working(child)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=EXIT_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert time.monotonic() - sent < EXIT_TIMEOUT
    assert child.returncode == 130
    assert err.decode() == "bpfjit: interrupted\n"  # one line, no traceback
    assert out == b""

"""engine="auto": the tiered start. A program's first runs take the native interpreter at once;
the JIT compiles in the background and later runs move to it, with maps and globals carrying
over and no run lost. Static keys reach both tiers, also while a run is in progress."""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading

import pytest

from bpfjit.cli import main
from bpfjit.errors import BPFError
from bpfjit.isa import Insn
from bpfjit.jit.tiers import CHUNK_NS, Tiering, chunk_runs
from bpfjit.program import Program
from bpfjit.runtime.helpers import HelperRegistry

from test_static_keys_raw import EXPECTED, SOURCE, program_with_keys

# r0 = the run's count: a hash-free array map would need an object, so count in the raw memory.
COUNTER = "ldxdw %r0, [%r1]\nadd %r0, 1\nstxdw [%r1], %r0\nexit"


def long_program(additions: int) -> Program:
    """r0 = additions, in a straight line of that many instructions."""
    return Program([Insn(0xB7, 0, 0, 0, 0), *[Insn(0x07, 0, 0, 0, 1)] * additions, Insn(0x95)], verify=False)


def test_the_first_run_is_interpreted_and_later_runs_are_jitted():
    program = Program.from_asm(COUNTER)
    first = program.test_run(bytes(8), engine="auto")
    assert first.retval == 1 and first.tiers == {"interp": 1}
    assert program.wait_for_jit(timeout=60)
    later = program.test_run(first.data_out, engine="auto", repeat=5)
    assert later.retval == 6 and later.tiers == {"jit": 5}


def test_no_run_is_lost_across_the_switch():
    """A long repeat that starts before the JIT is ready counts every run once, whichever tier
    ran it: the memory carries over from chunk to chunk and from tier to tier."""
    program = long_program(3_000)
    counter = Program.from_asm(COUNTER)
    result = counter.test_run(bytes(8), engine="auto", repeat=300_000)
    assert result.retval == 300_000 and sum(result.tiers.values()) == 300_000
    assert int.from_bytes(result.data_out, "little") == 300_000
    first = program.test_run(engine="auto", repeat=50)
    assert first.retval == 3_000 and sum(first.tiers.values()) == 50


def test_tiers_agree_with_the_reference():
    program = long_program(500)
    assert program.test_run(engine="auto").retval == program.test_run(engine="reference").retval == 500
    program.wait_for_jit(timeout=60)
    assert program.test_run(engine="auto").tiers == {"jit": 1}


def test_runs_during_the_compile_are_not_held_up_by_it(monkeypatch):
    """The background compile holds the program's compile lock for as long as it runs; a run
    meanwhile takes the interpreter at once instead of waiting for that lock."""
    program = Program.from_asm(COUNTER)
    release, compiling = threading.Event(), threading.Event()
    original = Program.compile

    def slow_compile(self, sandboxed=False):
        with self._compile_lock:
            compiling.set()
            release.wait(60)
        return original(self, sandboxed)

    monkeypatch.setattr(Program, "compile", slow_compile)
    first = program.test_run(bytes(8), engine="auto")
    assert compiling.wait(30)
    second = program.test_run(first.data_out, engine="auto", repeat=3)
    assert not release.is_set() and second.tiers == {"interp": 3} and second.retval == 4
    release.set()
    assert program.wait_for_jit(timeout=60)
    assert program.test_run(second.data_out, engine="auto").tiers == {"jit": 1}


def test_a_failed_compile_fails_the_next_run():
    tiering = Tiering(lambda: 1 // 0)
    assert tiering.tier() == "interp"
    assert tiering.wait(timeout=10)
    with pytest.raises(ZeroDivisionError):
        tiering.tier()


def test_the_compile_starts_only_when_asked():
    started = threading.Event()
    tiering = Tiering(started.set)
    assert tiering.tier() == "interp" and not started.is_set()
    tiering.start()
    assert started.wait(10) and tiering.wait(10) and tiering.tier() == "jit"


@pytest.mark.parametrize("previous, ns_per_run, remaining, expected", [
    (0, 100.0, 10, 1),  # the first chunk is one run
    (4, 100.0, 1_000, 8),  # then doubling
    (8, 100.0, 5, 5),  # never past what is left
    (1 << 20, 100.0, 1 << 30, CHUNK_NS // 100),  # and at most CHUNK_NS worth of runs
    (1 << 20, 1e12, 1 << 30, 1),  # however slow a run, at least one
])
def test_chunks(previous, ns_per_run, remaining, expected):
    assert chunk_runs(previous, ns_per_run, remaining) == expected


@pytest.mark.parametrize("engine", ["auto", "interp", "jit", "reference"])
def test_a_key_toggled_during_a_run_takes_effect_at_the_next_site(engine):
    """A helper switches the key on in the middle of the run: the site after it sees the new
    state, on every engine (the JIT's code is patched, the interpreter's site byte rewritten)."""
    helpers = HelperRegistry()
    holder = {}
    helpers.register(1000, lambda *args: holder["debug"].enable() or 0, "enable_debug")
    prog = Program.from_asm("call 1000\n" + SOURCE, helpers=helpers)
    holder["debug"] = prog.declare_static_key("debug", [2])
    assert not holder["debug"].enabled
    assert prog.run(engine=engine) == EXPECTED[(True, False)]
    holder["debug"].disable()
    assert prog.run(engine=engine) == EXPECTED[(True, False)]  # the helper enabled it again


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_a_key_drops_the_sites_of_freed_programs(engine):
    """A toggle after a program is gone writes nothing into its freed code or image."""
    prog, debug, _ = program_with_keys()
    prog.run(engine=engine)
    assert debug._sites
    del prog
    gc.collect()
    debug.set(True)
    assert not debug._sites and debug.native_sites == []


def test_declaring_a_key_after_an_interpreted_run_fails():
    prog = Program.from_asm(SOURCE)
    prog.run(engine="interp")
    with pytest.raises(BPFError, match="before the program is first compiled or run"):
        prog.declare_static_key("debug", [1])


def test_the_cli_says_which_tiers_ran(tmp_path, capsys):
    source = tmp_path / "count.s"
    source.write_text(COUNTER)
    assert main(["run", str(source), "--engine", "auto", "--data-hex", "00" * 8, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["engine"] == "auto" and record["tiers"] == {"interp": 1} and record["retval"] == 1
    assert main(["run", str(source), "--engine", "auto", "--data-hex", "00" * 8]) == 0
    assert "tiers: interp 1" in capsys.readouterr().out


CONCURRENT_COMPILES = """
import threading
from bpfjit.isa import Insn
from bpfjit.program import Program

def straight(n):
    return Program([Insn(0xB7, 0, 0, 0, 0), *[Insn(0x07, 0, 0, 0, 1)] * n, Insn(0x95)], verify=False)

programs = [straight(2_000 + k) for k in range(3)]
for program in programs:  # each starts its own background compile
    assert program.test_run(engine="auto").tiers == {"interp": 1}
results = []
threads = [threading.Thread(target=lambda k=k: results.append(straight(100 + k).run() == 100 + k)) for k in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert all(program.wait_for_jit(60) for program in programs) and results == [True] * 6
assert [program.test_run(engine="auto").retval for program in programs] == [2_000, 2_001, 2_002]
print("ok")
"""


def test_programs_compile_on_several_threads_at_once():
    """Background compiles and threads compiling their own programs share LLVM's context, which
    is not thread-safe (two background compiles once aborted the process in an LLVM assertion,
    before every use of the context took jit/engine.py's llvm_lock; the race is rare, so this
    is a smoke test): in a child process, so that a crash fails this test alone."""
    done = subprocess.run([sys.executable, "-c", CONCURRENT_COMPILES], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


WARMING = """
import sys, time
from bpfjit.bench.scaling import early_returns
from bpfjit.program import Program, WARM_NATIVE_INSNS

Program(early_returns(10))
small = "bpfjit.jit.native_interp" in sys.modules
Program(early_returns(WARM_NATIVE_INSNS // 3 + 1))
deadline = time.monotonic() + 60
while "bpfjit.jit.native_interp" not in sys.modules and time.monotonic() < deadline:
    time.sleep(0.05)
print(small, "bpfjit.jit.native_interp" in sys.modules)
"""


def test_a_large_programs_load_brings_the_native_interpreter_along():
    """A program of WARM_NATIVE_INSNS or more loads LLVM and the native interpreter on a thread of
    their own while it is verified, so its first engine="auto" run answers at once even in a new
    process; a small program's load loads neither."""
    done = subprocess.run([sys.executable, "-c", WARMING], capture_output=True, text=True, timeout=180)
    assert done.stdout.split() == ["False", "True"], done.stderr

"""The persistent object-code cache (jit/cache.py): hits give the same machine behaviour as a
compile, in this process and in another one, and a bad or foreign entry is never used."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

import bpfjit
from bpfjit.jit import cache

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
GLOBALS = PROGS / "globals.o"
STATIC_KEYS = PROGS / "static_keys.o"
XDP_PARSE = PROGS / "xdp_parse.o"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> pathlib.Path:
    monkeypatch.setenv("BPFJIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("BPFJIT_CACHE", raising=False)
    return tmp_path


def entries(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(folder.glob("*.o"))


def globals_run(rodata: dict | None = None):
    obj = bpfjit.load(GLOBALS, rodata=rodata or {"factor": 5})
    prog = obj.programs["prog_a"]
    compiled = prog.compile()
    retvals = [prog.test_run(bytes(64), engine="jit").retval for _ in range(3)]
    # total after three runs: 47 with factor 5, 55 with factor 7 (worked out in test_object.py)
    return compiled, retvals + [obj.globals["total"]], obj.maps["counts"][1]


def test_second_compile_is_a_hit_with_the_same_results(cache_dir):
    first, results_a, state_a = globals_run()
    assert not first.times.cache_hit and len(entries(cache_dir)) == 1
    second, results_b, state_b = globals_run()
    assert second.times.cache_hit and second.times.optimise == 0 and second.times.codegen == 0
    assert (results_b, state_b) == (results_a, state_a)
    # The optimised IR comes back from the cache too (prog dump --ir).
    assert second.optimised_ir == first.optimised_ir
    # Every map and global is in another place in the second object: the symbols were re-bound.
    assert set(first.bindings) == set(second.bindings)
    assert first.bindings != second.bindings


def test_folded_rodata_is_part_of_the_key(cache_dir):
    _, with_5, _ = globals_run({"factor": 5})
    other, with_7, _ = globals_run({"factor": 7})
    assert not other.times.cache_hit and len(entries(cache_dir)) == 2
    assert (with_5[-1], with_7[-1]) == (47, 55)
    again, with_7_again, _ = globals_run({"factor": 7})
    assert again.times.cache_hit and with_7_again == with_7


def test_static_key_sites_work_from_a_cached_object(cache_dir):
    bpfjit.load(STATIC_KEYS).programs["sk_main"].compile()
    obj = bpfjit.load(STATIC_KEYS)
    prog = obj.programs["sk_main"]
    assert prog.compile().times.cache_hit
    off = prog.test_run(bytes(64), engine="jit").retval
    obj.static_keys["fast_path"].enable()
    on = prog.test_run(bytes(64), engine="jit").retval
    assert (off, on) == (2, 3)  # XDP_PASS, then XDP_TX once fast_path jumps


def test_damaged_entries_are_misses(cache_dir):
    reference = bpfjit.load(XDP_PARSE)
    name = next(iter(reference.programs))
    packet = bytes(range(60))
    expected = reference.programs[name].test_run(packet, engine="reference").retval
    bpfjit.load(XDP_PARSE).programs[name].compile()
    (entry,) = entries(cache_dir)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    prog = bpfjit.load(XDP_PARSE).programs[name]
    assert not prog.compile().times.cache_hit
    assert prog.test_run(packet, engine="jit").retval == expected
    entry.write_bytes(b"short")
    prog = bpfjit.load(XDP_PARSE).programs[name]
    assert not prog.compile().times.cache_hit
    assert prog.test_run(packet, engine="jit").retval == expected


def test_cache_off_writes_nothing(cache_dir, monkeypatch):
    monkeypatch.setenv("BPFJIT_CACHE", "off")
    assert cache.directory() is None
    globals_run()
    second, _, _ = globals_run()
    assert not second.times.cache_hit and entries(cache_dir) == []


def test_unwritable_cache_only_costs_a_compile(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BPFJIT_CACHE_DIR", str(blocker / "cache"))
    compiled, results, _ = globals_run()
    assert not compiled.times.cache_hit and results[-1] == 47


CHILD = """
import json, sys, bpfjit
obj = bpfjit.load(sys.argv[1], rodata={"factor": 5})
prog = obj.programs["prog_a"]
hit = prog.compile().times.cache_hit
retvals = [prog.test_run(bytes(64)).retval for _ in range(3)]
print(json.dumps({"hit": hit, "retvals": retvals + [obj.globals["total"]]}))
"""


def test_a_hit_in_another_process(cache_dir):
    """The entry holds no address of the process that wrote it: another process links it to its own."""
    def child() -> dict:
        done = subprocess.run([sys.executable, "-c", CHILD, str(GLOBALS)], capture_output=True, text=True,
                              env=dict(os.environ), timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first, second = child(), child()
    assert (first["hit"], second["hit"]) == (False, True)
    assert first["retvals"] == second["retvals"]
    _, here, _ = globals_run()
    assert here == first["retvals"]


# --- the key covers the code that made the entry ------------------------------------------------

@pytest.fixture
def fresh_digest():
    """code_digest() recomputed from whatever source_files() gives during the test, and from the
    real sources again after it."""
    cache.code_digest.cache_clear()
    yield
    cache.code_digest.cache_clear()


@pytest.fixture
def copied_sources(tmp_path, monkeypatch, fresh_digest) -> list[pathlib.Path]:
    """Copies of the real sources that source_files() now returns, to edit without touching the
    checkout."""
    copies = []
    for name, source in cache.source_files():
        copy = tmp_path / name.replace("/", "__")
        copy.write_bytes(source.read_bytes())
        copies.append((name, copy))
    monkeypatch.setattr(cache, "source_files", lambda: copies)
    return [copy for _, copy in copies]


def some_key() -> str:
    return cache.key("define i64 @f() {\n  ret i64 0\n}\n", 2, "skylake", "+avx2")


def test_the_key_is_stable_across_computations(fresh_digest):
    first_digest, first_key = cache.code_digest(), some_key()
    cache.code_digest.cache_clear()
    assert (cache.code_digest(), some_key()) == (first_digest, first_key)
    assert len(first_digest) == 64


@pytest.mark.parametrize("which", ["bpfjit.jit/lower.py", "bpfjit.jit/engine.py", "bpfjit.runtime/status.py"])
def test_a_changed_source_byte_changes_the_key(copied_sources, which):
    before = some_key()
    (target,) = [copy for copy in copied_sources if copy.name == which.replace("/", "__")]
    original = target.read_bytes()
    target.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    cache.code_digest.cache_clear()
    changed = some_key()
    target.write_bytes(original)
    cache.code_digest.cache_clear()
    assert changed != before and some_key() == before


def test_the_sources_are_read_once_per_process(fresh_digest, monkeypatch):
    """A hit after the first pays for no file reads: the digest is memoised."""
    first = some_key()

    def unreadable():
        raise AssertionError("source_files() read again")
    monkeypatch.setattr(cache, "source_files", unreadable)
    assert some_key() == first


def test_unreadable_sources_turn_the_cache_off(cache_dir, fresh_digest, monkeypatch, tmp_path):
    monkeypatch.setattr(cache, "source_files", lambda: [("bpfjit.jit/gone.py", tmp_path / "gone.py")])
    assert cache.directory() is None
    compiled, results, _ = globals_run()
    assert not compiled.times.cache_hit and results[-1] == 47 and entries(cache_dir) == []


# bpfjit modules the JIT imports whose source is not digested, and why that is safe: what they
# contribute reaches the object code only through the IR, which the key holds whole.
NOT_DIGESTED = {
    "bpfjit.runtime.xdp_helpers": "the native packet helpers' Python fallbacks, bound by symbol",
    "bpfjit.runtime.skb_helpers": "flag masks and limits, written into the native packet helpers' IR as constants",
    "bpfjit.runtime.sock_helpers": "the native socket helpers' Python twins and fib_lookup's fallback, bound by "
                                   "symbol; struct bpf_fib_lookup's sizes and flags, written into the IR",
    "bpfjit.runtime.fib": "the native forwarding table's layout, written into the native fib_lookup's IR; the "
                          "table's word, bound by symbol",
    "bpfjit.runtime.kernel_helpers": "helper ids, which name the native packet helpers",
    "bpfjit.runtime.run_memory": "page sizes written into the native packet helpers' IR; the context secret, "
                                 "bound by symbol",
    "bpfjit.errors": "exception types, raised around compiling",
    "bpfjit.disasm": "an instruction's text, for the message of a lowering that failed",
    "bpfjit.verifier.facts": "the facts; the lowering's use of them is in jit/, their values in the IR",
    "bpfjit.runtime.helpers": "helper objects; ids and properties are written into the IR",
    "bpfjit.runtime.maps.perf_event": "a CPU buffer's bookkeeping size, written into the native helpers' IR",
    "bpfjit.runtime.maps": "HEADER_SIZE, written into the native helpers' IR",
    "bpfjit.runtime.maps.uapi": "update flags, written into the native helpers' IR as constants",
    "bpfjit.runtime.static_keys": "the interpreter's site bytes, written by toggles after any code is built",
}


def imported_module(module: str, name: str) -> str:
    """The module "from module import name" loads: module.name when that is a submodule
    ("from bpfjit import isa"), else module ("from bpfjit.isa import Insn")."""
    try:
        return f"{module}.{name}" if importlib.util.find_spec(f"{module}.{name}") else module
    except ModuleNotFoundError:  # module is not a package
        return module


def test_every_module_the_jit_imports_is_digested_or_accounted_for():
    digested = {name.removesuffix(".py").replace("/", ".") for name, _ in cache.source_files()}
    jit_folder = pathlib.Path(cache.__file__).parent
    imported = set()
    for source in jit_folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("bpfjit"):
                imported.update(imported_module(node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name.startswith("bpfjit"))
    outside = {name for name in imported if not name.startswith("bpfjit.jit")}
    assert outside - set(NOT_DIGESTED) <= digested, "a module the JIT imports is neither digested nor exempt"
    assert {"bpfjit.jit.lower", "bpfjit.jit.engine", "bpfjit.jit.cache", "bpfjit.isa"} <= digested


def test_the_interpreter_loop_is_built_from_digested_sources_alone():
    """Its object code is cached under its name and the code digest, not its IR
    (engine.sourced_object): every bpfjit module its IR is built from must be in the digest."""
    digested = {name.removesuffix(".py").replace("/", ".") for name, _ in cache.source_files()}
    source = pathlib.Path(cache.__file__).parent / "native_interp_ir.py"
    imported = {imported_module(node.module, alias.name) for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("bpfjit")
                for alias in node.names}
    relative = {node.module for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert imported and imported <= digested
    assert relative == {"lower", "packet_loads"}  # jit/lower.py and jit/packet_loads.py: all of jit/ is digested

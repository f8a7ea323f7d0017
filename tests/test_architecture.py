"""The layering of ARCHITECTURE.md, checked: which package may import which, and at load time.

Arrows point down: the CLI and the bench use only the public API; the orchestration (``bpfjit``'s
``object``, ``program``...) uses the JIT, the verifier and the runtime; the JIT uses the verifier
only through its facts; the verifier never uses the JIT; the runtime uses nothing above it; the
kernel engine sits beside the orchestration. Every import statement of every module is read with
``ast`` (function-level imports included: they run too), relative imports resolved against the
module's package. A second check imports the lower layers with llvmlite blocked, so the package
root's lazy imports keep them loadable without LLVM.
"""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import textwrap
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

RUNTIME, VERIFIER, JIT = "bpfjit.runtime", "bpfjit.verifier", "bpfjit.jit"
CLI, BENCH = "bpfjit.cli", "bpfjit.bench"
KERNEL_ENGINE = ("bpfjit.kernel", "bpfjit.kernel_process", "bpfjit.kernel_child")
# Modules of bpfjit/ that only hold the instruction set, its text forms and the errors: every layer
# may use them.
FOUNDATION = ("bpfjit.isa", "bpfjit.errors", "bpfjit.asm", "bpfjit.disasm")
# What the CLI and the bench may import from bpfjit: the public API.
PUBLIC = ("bpfjit", "bpfjit.program", "bpfjit.program_flags", "bpfjit.object", "bpfjit.errors", "bpfjit.isa",
          "bpfjit.asm", "bpfjit.disasm", "bpfjit.kernel", "bpfjit.helpers", "bpfjit.listing", "bpfjit.btf",
          "bpfjit.packets", "bpfjit.pcap", "bpfjit.capture")


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def allowed(importer: str, target: str) -> bool:
    """Whether module `importer` may import bpfjit module `target` (both dotted names)."""
    if _within(importer, RUNTIME):
        return target in ("bpfjit.isa", "bpfjit.errors") or _within(target, RUNTIME)
    if _within(importer, VERIFIER):
        return target in FOUNDATION or _within(target, RUNTIME) or _within(target, VERIFIER)
    if _within(importer, JIT):
        return (target in FOUNDATION or _within(target, RUNTIME) or _within(target, JIT)
                or _within(target, f"{VERIFIER}.facts"))
    if importer in KERNEL_ENGINE:
        return target in FOUNDATION or _within(target, RUNTIME) or target in KERNEL_ENGINE
    if _within(importer, CLI):  # the CLI's bench verb runs the bench, a peer on the public API
        return target in PUBLIC or _within(target, CLI) or _within(target, BENCH)
    if _within(importer, BENCH):
        return target in PUBLIC or _within(target, BENCH)
    # The orchestration may use every layer below it, but never the tools built on top of it.
    return not (_within(target, CLI) or _within(target, BENCH))


# --- reading the modules -----------------------------------------------------------------------

def source_roots() -> dict[str, pathlib.Path]:
    """Import name -> folder, as pyproject.toml maps them (bpfjit.runtime lives in runtime/...)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: REPO / folder for name, folder in config["package-dir"].items()}


def module_files() -> dict[str, tuple[pathlib.Path, bool]]:
    """Every module of the package: dotted name -> (file, is a package's __init__)."""
    roots = source_roots()
    found = {}
    for name, folder in roots.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            is_init = parts[-1] == "__init__"
            found[".".join([name, *parts[:-1]] if is_init else [name, *parts])] = (path, is_init)
    return found


def imported_modules(module: str, source: str, is_init: bool, known: set[str]) -> set[str]:
    """The bpfjit modules a module's source imports, relative imports resolved.

    ``from package import name`` counts as importing ``package.name`` when that is a module.
    """
    package = module if is_init else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                found.add(candidate if candidate in known else origin)
    return {name for name in found if _within(name, "bpfjit")}


def violations(module: str, source: str, is_init: bool, known: set[str]) -> list[str]:
    return [f"{module} imports {target}" for target in sorted(imported_modules(module, source, is_init, known))
            if not allowed(module, target)]


# --- the checks --------------------------------------------------------------------------------

def test_every_layer_is_found():
    modules = module_files()
    for package in (RUNTIME, VERIFIER, JIT, CLI, BENCH, *KERNEL_ENGINE, "bpfjit.object", "bpfjit.program"):
        assert package in modules, f"{package} not found: the check would pass on nothing"
    assert not any(_within(name, f"{RUNTIME}.kernel") and name != f"{RUNTIME}.kernel_helpers"
                   for name in modules), "the kernel engine belongs beside the orchestration, not in runtime/"


def test_import_arrows_point_down():
    modules = module_files()
    known = set(modules)
    found = []
    for module, (path, is_init) in sorted(modules.items()):
        found += violations(module, path.read_text(), is_init, known)
    assert found == []


KNOWN = {"bpfjit", "bpfjit.isa", "bpfjit.errors", "bpfjit.program", "bpfjit.object", "bpfjit.kernel",
         "bpfjit.cli", "bpfjit.cli.common", "bpfjit.runtime", "bpfjit.runtime.elf", "bpfjit.runtime.btf",
         "bpfjit.runtime.btf.types", "bpfjit.jit", "bpfjit.jit.engine", "bpfjit.verifier", "bpfjit.verifier.cfg",
         "bpfjit.verifier.facts", "bpfjit.bench", "bpfjit.bench.measure"}


@pytest.mark.parametrize("module, is_init, source, expected", [
    # relative imports resolve against the package, two dots one level up
    ("bpfjit.runtime.maps", False, "from ..jit import engine", ["bpfjit.runtime.maps imports bpfjit.jit.engine"]),
    ("bpfjit.runtime.btf.types", False, "from ...errors import BTFError\nfrom .. import elf", []),
    ("bpfjit.runtime.btf", True, "from ...program import Program", ["bpfjit.runtime.btf imports bpfjit.program"]),
    ("bpfjit.runtime.btf", True, "from ..elf import MAPS_SECTION", []),  # bpfjit.runtime.elf
    ("bpfjit.runtime.elf", False, "def f():\n    import bpfjit.kernel", ["bpfjit.runtime.elf imports bpfjit.kernel"]),
    ("bpfjit.runtime.elf", False, "import bpfjit", ["bpfjit.runtime.elf imports bpfjit"]),
    ("bpfjit.verifier.cfg", False, "from bpfjit.jit import engine", ["bpfjit.verifier.cfg imports bpfjit.jit.engine"]),
    ("bpfjit.verifier.cfg", False, "from bpfjit.runtime import elf\nfrom . import facts", []),
    ("bpfjit.jit.engine", False, "from bpfjit.verifier.facts import Facts", []),
    ("bpfjit.jit.engine", False, "from ..verifier import cfg", ["bpfjit.jit.engine imports bpfjit.verifier.cfg"]),
    ("bpfjit.jit.engine", False, "from bpfjit import object", ["bpfjit.jit.engine imports bpfjit.object"]),
    ("bpfjit.cli.common", False, "from ..runtime import elf", ["bpfjit.cli.common imports bpfjit.runtime.elf"]),
    ("bpfjit.cli.common", False, "from ..object import load\nfrom .. import kernel\nfrom . import common", []),
    ("bpfjit.bench.measure", False, "import bpfjit.jit.engine", ["bpfjit.bench.measure imports bpfjit.jit.engine"]),
    ("bpfjit.object", False, "from .cli import main", ["bpfjit.object imports bpfjit.cli"]),
    ("bpfjit.object", False, "from .runtime import elf\nfrom .jit import engine\nimport os", []),
])
def test_the_checker_sees_bad_imports(module, is_init, source, expected):
    assert violations(module, source, is_init, KNOWN) == expected


# Imported in a child process, with llvmlite made unimportable before anything else is imported.
_WITHOUT_LLVMLITE = """
import importlib, sys

class BlockLlvmlite:
    def find_spec(self, name, path=None, target=None):
        if name == "llvmlite" or name.startswith("llvmlite."):
            raise ImportError(f"llvmlite is blocked ({{name}})")
        return None

sys.meta_path.insert(0, BlockLlvmlite())
for name in {modules!r}:
    importlib.import_module(name)
try:
    importlib.import_module("bpfjit.jit.engine")
except ImportError as exc:
    assert "llvmlite is blocked" in str(exc), exc
else:
    raise AssertionError("the llvmlite blocker blocked nothing")
print("imported", len({modules!r}), "modules")
"""


def test_lower_layers_import_without_llvmlite():
    lower = sorted(name for name, (path, _) in module_files().items()
                   if (_within(name, RUNTIME) or _within(name, VERIFIER)) and _in_packages(path))
    assert {"bpfjit.runtime.maps", "bpfjit.runtime.interp", "bpfjit.verifier"} <= set(lower)
    modules = ["bpfjit.isa", *lower]
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(_WITHOUT_LLVMLITE.format(modules=modules))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"imported {len(modules)} modules" in result.stdout


def test_the_api_and_the_cli_load_no_llvm_until_a_program_is_compiled():
    """Issue 12: `import bpfjit`, loading objects and `bpfjit --help` need no LLVM (it costs a
    process 100-300 ms to load); only compiling or running a program on a native engine does."""
    modules = ["bpfjit", "bpfjit.program", "bpfjit.object", "bpfjit.cli.parser", "bpfjit.listing"]
    script = textwrap.dedent(_WITHOUT_LLVMLITE.format(modules=modules)) + textwrap.dedent("""
        from bpfjit.cli import main
        try:
            main(["--help"])
        except SystemExit as done:
            assert done.code == 0
        from bpfjit.program import Program
        assert Program.from_asm("mov %r0, 7\\nexit").run(engine="reference") == 7
        print("no llvm")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: bpfjit" in result.stdout and result.stdout.rstrip().endswith("no llvm")


def _in_packages(path: pathlib.Path) -> bool:
    """Whether every folder from the file up to its source root is a package (a folder someone is
    still building, without its __init__.py yet, is not importable)."""
    root = next(folder for folder in source_roots().values() if path.is_relative_to(folder))
    return all((folder / "__init__.py").exists() for folder in [path.parent, *path.parent.parents]
               if folder.is_relative_to(root))

"""A persistent cache of compiled object code, so a program seen before loads without LLVM.

Verdicts of the verifier are kept here too (bpfjit/verdicts.py), each under a hash of what it
depends on, so that a program seen before is neither verified nor compiled again.

The key is a hash of everything the machine code depends on: the lowered IR (which holds the
program, the map layouts it was specialised for and the .rodata it folded, but no process-specific
address: those are symbols bound at link time, see jit/lower.py ``Symbols``), the optimisation
level, the LLVM version, the host CPU and its features, and the source of the code that made the
entry (``code_digest``): the pass pipeline, the target machine, the linking convention and the
layouts the code shares with the runtime all live in Python source, not in the IR, so an entry
written by another version of bpfjit is never served. An entry is the relocatable object LLVM
emitted plus the optimised IR (for ``prog dump --ir``).

Where: ``$BPFJIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/bpfjit``, else ``~/.cache/bpfjit``.
``BPFJIT_CACHE=off`` turns the cache off. A missing, unreadable or unwritable cache only costs a
compile: the cache never turns a run into an error. Entries are written to a temporary file and
renamed, so concurrent processes never see half an entry, and each object file starts with the
SHA-256 of the rest: a damaged entry is a miss, never machine code handed to the linker.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import pathlib
import tempfile
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DIGEST = 32  # bytes of SHA-256 in front of each object

# Besides this package (lowering, passes, target machine, linking, static-branch sites, this file's
# entry format), the modules whose contents the object code is built against: the instruction set,
# the run environment the code reads and writes (status.py: RunEnv, status codes, frame limit),
# the hash-map chains it walks inline (hash_index.py) and the environment that hands it map
# layouts, function tokens and helper properties (environment.py), the jump tables a gotox may
# reach (jump_tables.py), and what the native interpreter's redirects read and write: a map's
# header (maps/native.py), the map types, the redirect record (run_context.py) and the redirect
# helpers' flags and actions (stdhelpers.py).
DEPENDENCIES = (("bpfjit", "isa.py"), ("bpfjit.runtime", "status.py"), ("bpfjit.runtime", "hash_index.py"),
                ("bpfjit.runtime", "environment.py"), ("bpfjit.runtime", "context.py"),
                ("bpfjit.runtime", "packet_loads.py"), ("bpfjit.runtime", "jump_tables.py"),
                ("bpfjit.runtime.maps", "hash_table.py"), ("bpfjit.runtime.maps", "native.py"),
                ("bpfjit.runtime", "map_types.py"), ("bpfjit.runtime", "run_context.py"),
                ("bpfjit.runtime", "stdhelpers.py"))
# The verifier decides which accesses the code checks (its facts), and its verdicts are cached
# here too (bpfjit/verdicts.py): its whole package is part of the digest.
PACKAGES = ("bpfjit.verifier",)


def directory() -> pathlib.Path | None:
    """The cache folder, or None when the cache is off."""
    if os.environ.get("BPFJIT_CACHE", "").lower() in ("0", "off", "no", "false") or code_digest() is None:
        return None
    explicit = os.environ.get("BPFJIT_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "bpfjit"


def source_files() -> list[tuple[str, Traversable]]:
    """(name, file) of every source the object code depends on: each .py of bpfjit.jit (and of
    any subpackage), then DEPENDENCIES. Found through importlib.resources, so an installed package
    digests its own files."""
    return (_python_files(importlib.resources.files(__package__), __package__) +
            [entry for package in PACKAGES for entry in _python_files(importlib.resources.files(package), package)] +
            [(f"{package}/{name}", importlib.resources.files(package) / name) for package, name in DEPENDENCIES])


def _python_files(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.is_dir():
            found += _python_files(entry, f"{prefix}/{entry.name}")
        elif entry.name.endswith(".py"):
            found.append((f"{prefix}/{entry.name}", entry))
    return found


@functools.cache
def code_digest() -> str | None:
    """SHA-256 of the names and bytes of source_files(), read once per process; None when one
    cannot be read (a sourceless install), which turns the cache off rather than risk stale code."""
    digest = hashlib.sha256()
    try:
        for name, source in source_files():
            data = source.read_bytes()
            digest.update(f"{name}\0{len(data)}\0".encode())  # name and length: no two file sets collide
            digest.update(data)
    except OSError:
        return None
    return digest.hexdigest()


def key(ir: str, opt_level: int, cpu: str, features: str) -> str:
    import llvmlite  # here, not at the top: the verdict cache (bpfjit/verdicts.py) needs no LLVM
    import llvmlite.binding as llvm
    digest = hashlib.sha256()
    for part in (code_digest() or "", llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)), cpu,
                 features, str(opt_level), ir):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def lookup(cache_key: str) -> tuple[bytes, pathlib.Path] | None:
    """The cached object code and the path of its optimised IR, or None."""
    folder = directory()
    if folder is None:
        return None
    try:
        entry = (folder / f"{cache_key}.o").read_bytes()
    except OSError:
        return None
    digest, obj = entry[:DIGEST], entry[DIGEST:]
    if hashlib.sha256(obj).digest() != digest:
        return None
    return obj, folder / f"{cache_key}.ll"


def store(cache_key: str, obj: bytes, optimised_ir: str) -> None:
    folder = directory()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"{cache_key}.ll", optimised_ir.encode())
        # last: an entry exists once its object does
        _write(folder / f"{cache_key}.o", hashlib.sha256(obj).digest() + obj)
    except OSError:
        pass


def read_entry(name: str) -> bytes | None:
    """Another kind of entry (a verdict): its bytes, or None when absent or damaged."""
    folder = directory()
    if folder is None:
        return None
    try:
        entry = (folder / name).read_bytes()
    except OSError:
        return None
    digest, data = entry[:DIGEST], entry[DIGEST:]
    return data if hashlib.sha256(data).digest() == digest else None


def write_entry(name: str, data: bytes) -> None:
    folder = directory()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / name, hashlib.sha256(data).digest() + data)
    except OSError:
        pass


def _write(path: pathlib.Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise

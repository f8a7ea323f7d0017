"""A persistent cache of compiled object code, so a program seen before loads without LLVM.

The key is a hash of everything the machine code depends on: the lowered IR (which holds the
program, the map layouts it was specialised for and the .rodata it folded, but no process-specific
address: those are symbols bound at link time, see jit/lower.py ``Symbols``), the optimisation
level, the LLVM version and the host CPU and its features. An entry is the relocatable object
LLVM emitted plus the optimised IR (for ``prog dump --ir``).

Where: ``$BPFJIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/bpfjit``, else ``~/.cache/bpfjit``.
``BPFJIT_CACHE=off`` turns the cache off. A missing, unreadable or unwritable cache only costs a
compile: the cache never turns a run into an error. Entries are written to a temporary file and
renamed, so concurrent processes never see half an entry, and each object file starts with the
SHA-256 of the rest: a damaged entry is a miss, never machine code handed to the linker.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile

import llvmlite
import llvmlite.binding as llvm

DIGEST = 32  # bytes of SHA-256 in front of each object
FORMAT = "4"  # bumped whenever the lowering, the pass pipeline or the linking convention changes meaning


def directory() -> pathlib.Path | None:
    """The cache folder, or None when the cache is off."""
    if os.environ.get("BPFJIT_CACHE", "").lower() in ("0", "off", "no", "false"):
        return None
    explicit = os.environ.get("BPFJIT_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "bpfjit"


def key(ir: str, opt_level: int, cpu: str, features: str) -> str:
    digest = hashlib.sha256()
    for part in (FORMAT, llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)), cpu,
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
        _write(folder / f"{cache_key}.o", hashlib.sha256(obj).digest() + obj)  # last: an entry exists once its object does
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

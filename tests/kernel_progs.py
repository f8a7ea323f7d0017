"""The Linux selftests' packet programs, with the results the kernel's BPF_PROG_TEST_RUN gave, as a
measure of bpfjit (issue 15).

The corpus (``../shared/kernel-progs``, or ``$BPFJIT_KERNEL_PROGS_DIR``; its README describes the
manifest) holds XDP, tc and socket-filter programs compiled to objects, each with cases run in
order on one load of its object: map entries to write, the packet and context to run on, and
what the kernel answered (errno, retval, data_out, ctx_out, the maps the case names). This module
runs every case on a bpfjit engine and says, for each, whether bpfjit gives the kernel's answer
and if not, the first difference.

Each case's output buffer sizes go to ``Program.test_run`` as ``data_size_out`` and
``ctx_size_out``, whose ENOSPC is ``RunResult.errno``. An input the kernel refuses must raise a
bpfjit error whose message names the kernel's errno, as "(EINVAL)".
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import json
import pathlib
from typing import Any

from conftest import REPO, OutsideData

import bpfjit
from bpfjit.errors import BPFError
from bpfjit.runtime.map_types import MapType

KERNEL_PROGS = OutsideData("BPFJIT_KERNEL_PROGS_DIR", REPO.parent / "shared" / "kernel-progs",
                           "the kernel selftest packet programs (kernel-progs)")

# libbpf's program type names in the manifest, to bpfjit's.
PROGRAM_TYPES = {"BPF_PROG_TYPE_XDP": "xdp", "BPF_PROG_TYPE_SCHED_CLS": "tc",
                 "BPF_PROG_TYPE_SOCKET_FILTER": "socket"}
ENOSPC = "ENOSPC"
KEYED = {MapType.HASH, MapType.LRU_HASH, MapType.LPM_TRIE, MapType.DEVMAP_HASH}
POPPED = {MapType.QUEUE, MapType.STACK}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One program of the corpus (one load of its object) and its cases."""

    file: str
    program: str
    prog_type: str  # bpfjit's name
    cases: tuple[dict[str, Any], ...]

    @property
    def key(self) -> str:
        return f"{self.file.removesuffix('.bpf.o')}:{self.program}:{self.prog_type}"

    def case_key(self, case: dict[str, Any]) -> str:
        return f"{self.key}/{case['name']}"


def load_manifest(folder: pathlib.Path) -> list[Entry]:
    programs = json.loads((folder / "manifest.json").read_text())["programs"]
    return [Entry(p["file"], p["program"], PROGRAM_TYPES[p["prog_type"]], tuple(p["cases"])) for p in programs]


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """Whether bpfjit gave the kernel's answer to one case on one engine, and if not, why."""

    key: str
    engine: str
    difference: str = ""  # "" when bpfjit agrees

    @property
    def agrees(self) -> bool:
        return not self.difference


@dataclasses.dataclass(frozen=True)
class EntryResult:
    entry: Entry
    engine: str
    load_error: str  # "" when the object loaded
    cases: tuple[CaseResult, ...]


def load(folder: pathlib.Path, entry: Entry) -> bpfjit.Object:
    """A fresh load of the entry's object with its program typed as the kernel ran it."""
    return bpfjit.load(folder / "objs" / entry.file, programs=[entry.program],
                       program_types={entry.program: entry.prog_type})


def run_entry(folder: pathlib.Path, entry: Entry, engine: str) -> EntryResult:
    """Every case of the entry, in order, on one load (map state carries from case to case)."""
    try:
        obj = load(folder, entry)
    except BPFError as error:
        reason = f"load: {type(error).__name__}: {str(error).splitlines()[0]}"
        return EntryResult(entry, engine, reason,
                           tuple(CaseResult(entry.case_key(c), engine, reason) for c in entry.cases))
    results = []
    for case in entry.cases:
        try:
            difference = run_case(obj, entry, case, engine)
        except BPFError as error:
            difference = f"{type(error).__name__}: {str(error).splitlines()[0]}"
        results.append(CaseResult(entry.case_key(case), engine, difference))
    return EntryResult(entry, engine, "", tuple(results))


def _write_maps(obj: bpfjit.Object, setup: list[dict[str, Any]]) -> None:
    for write in setup:
        m = obj.maps[write["map"]]
        value = bytes.fromhex(write["value"])
        if write["key"] is None:
            m.push_elem(value)
        else:
            m.update_elem(bytes.fromhex(write["key"]), value)


def run_case(obj: bpfjit.Object, entry: Entry, case: dict[str, Any], engine: str) -> str:
    """Run one case; "" when bpfjit's answer is the kernel's, else the first difference."""
    _write_maps(obj, case["map_setup"])
    kernel = case["kernel"]
    ctx = None if case["ctx_in"] is None else bytes.fromhex(case["ctx_in"])
    try:
        result = obj.programs[entry.program].test_run(bytes.fromhex(case["data_in"]), ctx=ctx, engine=engine,
                                                      data_size_out=case["data_size_out"],
                                                      ctx_size_out=case["ctx_size_out"])
    except BPFError as error:
        if kernel["errno"] in (0, ENOSPC):
            raise
        if f"({kernel['errno']})" not in str(error):
            return f"errno: the kernel's {kernel['errno']}, bpfjit's error names none: {error}"
        return _compare_maps(obj, kernel)
    if kernel["errno"] not in (0, ENOSPC):
        return f"errno: the kernel's {kernel['errno']}, bpfjit ran (retval {result.retval & 0xFFFF_FFFF})"
    differences = _compare_run(case, kernel, result) + [_compare_maps(obj, kernel)]
    return "; ".join(d for d in differences if d)


def _compare_run(case: dict[str, Any], kernel: dict[str, Any], result: Any) -> list[str]:
    ours = {"errno": ENOSPC if result.errno == errno.ENOSPC else result.errno,
            "retval": result.retval & 0xFFFF_FFFF, "data_size_out": result.data_size_out}
    theirs = {"errno": kernel["errno"], "retval": kernel["retval"] & 0xFFFF_FFFF,
              "data_size_out": kernel["data_size_out"]}
    if "data_out" in kernel:
        ours["data_out"], theirs["data_out"] = result.data_out.hex(), kernel["data_out"]
    if "ctx_out" in kernel:
        ours["ctx_out"], theirs["ctx_out"] = (result.ctx_out or b"").hex(), kernel["ctx_out"]
    if "ctx_size_out" in kernel:
        ours["ctx_size_out"], theirs["ctx_size_out"] = result.ctx_size_out, kernel["ctx_size_out"]
    return [f"{name}: kernel {_short(theirs[name])}, bpfjit {_short(ours[name])}"
            for name in theirs if ours[name] != theirs[name]]


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:36]}... ({len(text) // 2} bytes)"


def map_entries(m: Any) -> list[dict[str, str | None]]:
    """A map's contents as the manifest records them (README, "manifest.json"): keyed maps
    every entry by key bytes, arrays the entries whose value is not all zero, per-CPU maps
    CPU 0's value, queues and stacks popped empty. Raw bytes, so it reads the maps' raw side."""
    if m.map_type in POPPED:
        values = m._raw_values()
        m.clear()
        return [{"key": None, "value": v.hex()} for v in values]
    entries = []
    for key in sorted(m._raw_keys()):
        value = m._raw_read(key)
        value = value[0] if isinstance(value, list) else value
        if value is None or (m.map_type not in KEYED and not any(value)):
            continue
        entries.append({"key": key.hex(), "value": value.hex()})
    return entries


def _masked(entries: list[dict[str, str | None]], masks: list[list[int]]) -> list[dict[str, str | None]]:
    """Entries with the time-dependent value bytes [a, b) of each mask zeroed."""
    out = []
    for entry in entries:
        value = bytearray.fromhex(entry["value"])
        for start, end in masks:
            value[start:end] = bytes(end - start)
        out.append({"key": entry["key"], "value": value.hex()})
    return out


def _compare_maps(obj: bpfjit.Object, kernel: dict[str, Any]) -> str:
    for name, recorded in kernel.get("maps", {}).items():
        ours = _masked(map_entries(obj.maps[name]), recorded.get("masked_value_bytes", []))
        if ours != recorded["entries"]:
            return f"map {name}: kernel {_short(recorded['entries'])}, bpfjit {_short(ours)}"
    return ""


@functools.cache
def corpus_results(folder: pathlib.Path, engine: str) -> dict[str, EntryResult]:
    """Every entry's results on one engine, by entry key (worked out once per session)."""
    return {entry.key: run_entry(folder, entry, engine) for entry in load_manifest(folder)}


@dataclasses.dataclass(frozen=True)
class Figures:
    objects: int
    objects_loading: int
    cases: int
    cases_agreeing: dict[str, int]  # by engine

    def summary(self) -> str:
        agreeing = ", ".join(f"{engine} {n}" for engine, n in self.cases_agreeing.items())
        return (f"kernel-progs: {self.objects_loading} of {self.objects} objects load; cases agreeing with "
                f"the kernel, of {self.cases}: {agreeing}")


def figures(folder: pathlib.Path, engines: tuple[str, ...]) -> Figures:
    entries = load_manifest(folder)
    first = corpus_results(folder, engines[0])
    files = {e.file for e in entries}
    failing = {e.file for e in entries if first[e.key].load_error}
    return Figures(len(files), len(files - failing), sum(len(e.cases) for e in entries),
                   {engine: sum(c.agrees for r in corpus_results(folder, engine).values() for c in r.cases)
                    for engine in engines})

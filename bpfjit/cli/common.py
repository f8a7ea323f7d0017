"""Shared by the verbs: reading inputs, loading objects, formatting results, progress bars."""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import pathlib
import sys
import time
from typing import Any, Sequence

from .. import asm
from ..errors import AsmError, BPFError
from ..helpers import HelperRegistry
from ..object import MAP_OPTIONS, PROGRAM_TYPES, Object, is_elf, load
from ..program import RUN_ENGINES, Program, RunResult
from ..program_flags import PROG_FLAGS

DEFAULT_OBJECT = "firewall.o"
DEFAULT_SOURCE = "firewall.c"
DEFAULT_PACKETS = "packets.hex"
REFERENCE_REPEAT = 20   # the Python reference is ~100-1000x slower: time it on fewer runs
INTERP_REPEAT = 2_000  # the native interpreter, in its native repeat loop
JIT_REPEAT = 10_000  # per packet, in the JIT's native repeat loop
PROGRESS_AFTER_NS = 1e9  # runs expected to take longer than this get a progress bar (on a TTY)
CHUNK_NS = 1e8           # ... and are run in chunks of about this long
OBJECT_ENGINES = (*RUN_ENGINES, "kernel")

XDP_ACTIONS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
TC_ACTIONS = {-1: "TC_ACT_UNSPEC", 0: "TC_ACT_OK", 1: "TC_ACT_RECLASSIFY", 2: "TC_ACT_SHOT",
              3: "TC_ACT_PIPE", 4: "TC_ACT_STOLEN", 5: "TC_ACT_QUEUED", 6: "TC_ACT_REPEAT",
              7: "TC_ACT_REDIRECT"}



# --- input files --------------------------------------------------------------------------------

def _read(path: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise BPFError(f"{path}: {exc.strerror or exc}") from None


def _write(path: str, data: bytes) -> None:
    try:
        pathlib.Path(path).write_bytes(data)
    except OSError as exc:
        raise BPFError(f"{path}: {exc.strerror or exc}") from None


def _check_writable(path: str) -> None:
    """Fail before a long run, not after it, when an output file cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BPFError(f"{path}: no such folder")
    if not os.access(folder, os.W_OK):
        raise BPFError(f"{path}: the folder is not writable")


def _text(path: str, data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise BPFError(f"{path}: not a text file") from None


def load_program(path: str, helpers: HelperRegistry | None = None,
                 verify: bool = True) -> tuple[Program, bytes | None, int | None]:
    """A program from a .data test file, assembly text or raw bytecode (ELF objects: ``load_object``).

    Returns the program and, for .data files, their memory and expected result.
    """
    data = _read(path)
    name = pathlib.Path(path).stem
    if is_elf(data):
        raise BPFError(f"{path}: an ELF object: load it with bpfjit.load() (or 'bpfjit run {path}')")
    if path.endswith(".data"):
        try:
            case = asm.parse_test_file(_text(path, data))
            if case.raw is not None and not case.asm.strip():
                return Program.from_bytes(case.raw, helpers=helpers, name=name, verify=verify), case.mem, case.result
            return Program.from_asm(case.asm, helpers=helpers, name=name, verify=verify), case.mem, case.result
        except AsmError as exc:
            raise BPFError(f"{path}: {exc}") from None
    if path.endswith((".asm", ".s")):
        return Program.from_asm(_text(path, data), helpers=helpers, name=name, verify=verify), None, None
    return Program.from_bytes(data, helpers=helpers, name=name, verify=verify), None, None


def _hex_arg(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text.replace("0x", "").replace(":", ""))
    except ValueError:
        raise BPFError(f"{what} is not hexadecimal: {text!r}") from None


def _parse_rodata(items: Sequence[str] | None) -> dict[str, int]:
    """``--rodata NAME=VALUE`` (repeatable; VALUE an int in any Python base: 9, 0x35, 0o11)."""
    values: dict[str, int] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BPFError(f"--rodata {item!r}: expected NAME=VALUE")
        try:
            values[name.strip()] = int(value.strip(), 0)
        except ValueError:
            raise BPFError(f"--rodata {item!r}: {value.strip()!r} is not an integer") from None
    return values


def _require_elf(path: str) -> None:
    if not is_elf(_read(path)):
        raise BPFError(f"{path}: not an ELF object (the object verbs take clang-built BPF objects)")


def _parse_keys(items: Sequence[str] | None) -> dict[str, bool]:
    """``--key NAME=on|off`` (repeatable): static-key states to set after load."""
    states = {}
    for item in items or ():
        name, _, state = item.partition("=")
        if state.strip().lower() not in ("on", "off") or not name.strip():
            raise BPFError(f"--key {item!r}: expected NAME=on or NAME=off")
        states[name.strip()] = state.strip().lower() == "on"
    return states


def add_load_options(p: argparse.ArgumentParser) -> None:
    """What a loader sets between open and load, as libbpf's bpf_map__set_* / bpf_program__set_type
    / bpf_program__set_flags."""
    p.add_argument("--set-map", action="append", metavar="NAME.ATTR=VALUE", dest="map_options",
                   help=f"set a map's creation attribute before load ({', '.join(MAP_OPTIONS)}; repeatable), "
                        "e.g. --set-map backends.max_entries=4096")
    p.add_argument("--prog-type", action="append", metavar="PROG=TYPE", dest="program_types",
                   help=f"load a program as this type, for sections that do not say it (repeatable; "
                        f"types: {', '.join(PROGRAM_TYPES)})")
    p.add_argument("--prog-flags", action="append", metavar="PROG=FLAGS", dest="program_flags",
                   help="set a program's BPF_PROG_LOAD flags before load, as an integer or names joined with | or , "
                        "(BPF_F_ optional; repeatable); the section's own (xdp.frags, syscall, uprobe.s) are "
                        "added at load, as libbpf adds them, e.g. --prog-flags parse=any_alignment")
    p.add_argument("--btf", metavar="FILE",
                   help="resolve CO-RE relocations against this BTF (a raw BTF file such as "
                        "/sys/kernel/btf/vmlinux, or an ELF object's .BTF) instead of the object's own types")


def add_map_updates(p: argparse.ArgumentParser) -> None:
    p.add_argument("--map-update", action="append", nargs=2, metavar=("MAP", "KEY=VALUE"), dest="map_updates",
                   help="write an entry into a map after load, before the runs (repeatable): KEY and VALUE are "
                        "integers, IP addresses or networks (an LPM trie's keys), or hex:BYTES, e.g. "
                        "--map-update blocked 10.0.0.0/8=0 --map-update tx_ports 0=1")


def map_updates(args: argparse.Namespace) -> list[tuple[str, Any, Any]]:
    """``--map-update MAP KEY=VALUE`` as (map, key, value) Python values."""
    updates = []
    for name, entry in getattr(args, "map_updates", None) or ():
        key, sep, value = entry.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BPFError(f"--map-update {name} {entry!r}: expected KEY=VALUE, e.g. 10.0.0.0/8=0")
        updates.append((name, _map_literal(key.strip(), name, entry), _map_literal(value.strip(), name, entry)))
    return updates


def _map_literal(text: str, name: str, entry: str) -> Any:
    """An integer (any base Python reads), an IP network or address, or hex:BYTES."""
    if text.startswith("hex:"):
        try:
            return bytes.fromhex(text[4:])
        except ValueError:
            raise BPFError(f"--map-update {name} {entry!r}: {text!r} is not hex bytes") from None
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return ipaddress.ip_network(text, strict=False) if "/" in text else ipaddress.ip_address(text)
    except ValueError:
        raise BPFError(f"--map-update {name} {entry!r}: {text!r} is neither an integer, an IP address or network, "
                       "nor hex:BYTES") from None


def apply_map_updates(obj: Object, updates: list[tuple[str, Any, Any]]) -> dict[str, list[tuple[bytes, bytes]]]:
    """Write the updates into the object's maps (as a user does: update_elem); the same entries
    as bytes, for the kernel engine's map_updates."""
    written: dict[str, list[tuple[bytes, bytes]]] = {}
    for name, key, value in updates:
        if name not in obj.maps:
            raise BPFError(f"--map-update: {obj.name} has no map {name!r} (maps: {', '.join(sorted(obj.maps))})")
        m = obj.maps[name]
        m.update_elem(key, value)
        written.setdefault(name, []).append(m.encode_entry(key, value))
    return written


def parse_load_options(args: argparse.Namespace) -> dict[str, dict]:
    """``--set-map``, ``--prog-type``, ``--prog-flags`` and ``--btf`` as bpfjit.load()'s maps=,
    program_types=, program_flags= and btf=."""
    maps: dict[str, dict[str, int]] = {}
    for item in getattr(args, "map_options", None) or ():
        target, sep, value = item.partition("=")
        name, dot, attribute = target.strip().rpartition(".")
        if not sep or not dot or not name or not attribute:
            raise BPFError(f"--set-map {item!r}: expected NAME.ATTR=VALUE, e.g. backends.max_entries=4096")
        try:
            maps.setdefault(name, {})[attribute] = int(value.strip(), 0)
        except ValueError:
            raise BPFError(f"--set-map {item!r}: {value.strip()!r} is not an integer") from None
    types: dict[str, str] = {}
    for item in getattr(args, "program_types", None) or ():
        name, sep, type_name = item.partition("=")
        if not sep or not name.strip() or not type_name.strip():
            raise BPFError(f"--prog-type {item!r}: expected PROG=TYPE, e.g. parse=xdp")
        types[name.strip()] = type_name.strip()
    flags: dict[str, int] = {}
    for item in getattr(args, "program_flags", None) or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise BPFError(f"--prog-flags {item!r}: expected PROG=FLAGS, e.g. parse=0x20 or parse=xdp_has_frags")
        flags[name.strip()] = _flags_literal(value.strip(), item)
    return {"maps": maps or None, "program_types": types or None, "program_flags": flags or None,
            "btf": getattr(args, "btf", None)}


def _flags_literal(text: str, item: str) -> int:
    """``--prog-flags`` FLAGS: an integer (any base Python reads), or flag names joined with ``|``
    or ``,``, with or without their ``BPF_F_`` prefix, in any case."""
    try:
        return int(text, 0)
    except ValueError:
        pass
    value = 0
    for word in text.replace(",", "|").split("|"):
        name = word.strip().upper()
        name = name if name.startswith("BPF_F_") else f"BPF_F_{name}"
        if name not in PROG_FLAGS:
            raise BPFError(f"--prog-flags {item!r}: {word.strip()!r} is neither an integer nor a flag "
                           f"({', '.join(PROG_FLAGS)})")
        value |= PROG_FLAGS[name]
    return value


def load_object(path: str, rodata: dict[str, int] | None = None, keys: dict[str, bool] | None = None,
                verify: bool = True, options: dict[str, dict] | None = None, program: str | None = None) -> Object:
    """bpfjit.load() of a file named on the command line (with the load options of
    parse_load_options), with its static keys set. With `program` named, an object whose other
    programs do not load is loaded with that one alone (as the kernel engine does)."""
    _require_elf(path)
    try:
        obj = load(path, rodata=rodata or None, verify=verify, **(options or {}))
    except BPFError:
        if program is None:
            raise
        obj = load(path, rodata=rodata or None, verify=verify, programs=[program], **(options or {}))
    for name, enabled in (keys or {}).items():
        if name not in obj.static_keys:
            known = ", ".join(obj.static_keys) or "none"
            raise BPFError(f"{obj.name}: no static key named {name!r} (keys: {known})")
        obj.static_keys[name].set(enabled)
    return obj


def _pick_program(obj: Object, name: str | None) -> Program:
    if name is not None:
        if name not in obj.programs:
            raise BPFError(f"{obj.name}: no program named {name!r} (programs: {', '.join(obj.programs) or 'none'})")
        return obj.programs[name]
    if len(obj.programs) != 1:
        raise BPFError(f"{obj.name} holds {len(obj.programs)} programs: pick one with -p "
                       f"({', '.join(obj.programs) or 'none'})")
    return next(iter(obj.programs.values()))


def _run_input(args: argparse.Namespace) -> tuple[bytes | None, bytes | None]:
    """The data (None when not given) and ctx of --data/--data-hex/--ctx-hex."""
    data = None
    if getattr(args, "data_hex", None) is not None:
        data = _hex_arg(args.data_hex, "--data-hex")
    elif getattr(args, "data", None) is not None:
        data = _read(args.data)
    ctx = _hex_arg(args.ctx_hex, "--ctx-hex") if getattr(args, "ctx_hex", None) is not None else None
    return data, ctx


# --- formatting ---------------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    """Map keys/values (ints, dicts, lists, bytes, floats, inner maps) as JSON-ready data."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex(" ")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return getattr(value, "name", str(value))


def _show(value: Any) -> str:
    """One-line text of a key or value, as bpftool prints BTF-formatted data."""
    value = _jsonable(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "))


def _hexdump(data: bytes, indent: str = "  ") -> str:
    return "\n".join(f"{indent}{offset:04x}: {data[offset:offset + 16].hex(' ')}"
                     for offset in range(0, len(data), 16))


def _retval_name(program: Program, retval: int) -> str:
    if program.prog_type == "xdp":
        return XDP_ACTIONS.get(retval & 0xFFFFFFFF, "")
    if program.prog_type == "tc":
        signed = retval - (1 << 32) if retval & 0x80000000 and retval < 1 << 32 else retval
        return TC_ACTIONS.get(signed, "")
    return ""


def _print_result(program: Program, engine: str, result: RunResult, as_json: bool) -> None:
    """The one-line result of a raw program (.data, assembly, bytecode)."""
    if as_json:
        print(json.dumps({"program": program.name, "engine": engine, "tiers": result.tiers, "retval": result.retval,
                          "data_out": result.data_out.hex(), "duration_ns": result.duration_ns}))
        return
    print(f"{program.name}: engine={engine} retval={result.retval:#x} ({result.retval}) "
          f"duration={result.duration_ns:,.1f} ns/run{tiers_text(engine, result)}")


def tiers_text(engine: str, result: RunResult) -> str:
    """With engine auto: which tiers ran how many of the runs (else nothing)."""
    if engine != "auto":
        return ""
    return ", tiers: " + ", ".join(f"{tier} {count:,}" for tier, count in result.tiers.items())


# --- progress -----------------------------------------------------------------------------------

class Progress:
    """A plain-text progress bar on stderr, drawn only when stderr is a terminal."""

    WIDTH = 30

    def __init__(self, total: int, label: str, enabled: bool | None = None):
        self.total = max(1, total)
        self.label = label
        self.stream = sys.stderr
        self.enabled = _stderr_is_tty() if enabled is None else enabled
        self.started = time.monotonic()
        self.done = 0

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int) -> None:
        self.done = min(done, self.total)
        if not self.enabled:
            return
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        elapsed = time.monotonic() - self.started
        self.stream.write(f"\r{self.label} [{bar}] {100 * self.done // self.total:3d}% "
                          f"{self.done:,}/{self.total:,} {elapsed:.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        self.update(0)
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def timed_run(program: Program, data: bytes, ctx: bytes | None, repeat: int, engine: str,
              label: str | None = None) -> RunResult:
    """``program.test_run`` with a progress bar for long runs (only when stderr is a terminal).

    On a terminal, one run is timed first; if the rest is expected to take over a second, it runs
    in chunks of about 0.1 s with a bar. The packet carries over from chunk to chunk (each chunk
    starts from the previous chunk's data_out) and maps keep their state, so the outcome is that
    of one ``test_run(repeat=N)``; the reported duration is the mean over all N runs.
    """
    if repeat <= 1 or not _stderr_is_tty():
        return program.test_run(data, ctx, repeat=repeat, engine=engine)
    first = program.test_run(data, ctx, repeat=1, engine=engine)
    rest = repeat - 1
    if first.duration_ns * rest <= PROGRESS_AFTER_NS:
        return _combined([first, program.test_run(first.data_out, ctx, repeat=rest, engine=engine)])
    chunk = max(1, int(CHUNK_NS / max(first.duration_ns, 1.0)))
    results, done = [first], 1
    with Progress(repeat, label or f"{program.name} ({engine})") as bar:
        bar.update(done)
        while done < repeat:
            n = min(chunk, repeat - done)
            results.append(program.test_run(results[-1].data_out, ctx, repeat=n, engine=engine))
            done += n
            bar.update(done)
    return _combined(results)


def _combined(results: list[RunResult]) -> RunResult:
    """Consecutive test runs as one: the last one's outcome, the mean time over all their runs,
    and how many runs each tier ran."""
    runs = [sum(result.tiers.values()) for result in results]
    tiers: dict[str, int] = {}
    for result in results:
        for tier, count in result.tiers.items():
            tiers[tier] = tiers.get(tier, 0) + count
    mean = sum(result.duration_ns * count for result, count in zip(results, runs)) / sum(runs)
    last = results[-1]
    return RunResult(last.retval, last.data_out, mean, last.ctx_out, tiers)



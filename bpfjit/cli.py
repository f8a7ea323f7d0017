"""The ``bpfjit`` command line: run, prog, map, btf, asm, disasm, conformance-plugin.

Every verb goes through the same public API users call (``bpfjit.load``, ``Program``, ``asm``,
``disasm``), and every user error ends as one ``bpfjit: error: ...`` line on stderr with exit
status 1, never a traceback.

``bpfjit run`` without a file is the main job: the bundled XDP firewall (``data/firewall.c``,
built into ``data/firewall.o``) over the bundled packets (``data/packets.hex``) on both engines,
checked to agree on verdicts, packets, maps and globals, then timed.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib
import re
import socket
import sys
import time
from importlib import resources
from typing import Any, Sequence

from . import asm, disasm, isa
from .errors import BPFError
from .program import ENGINES, Program, RunResult
from .runtime import btf as btf_module
from .runtime import elf
from .runtime.helpers import HelperRegistry, unwind_helper

DEFAULT_OBJECT = "firewall.o"
DEFAULT_SOURCE = "firewall.c"
DEFAULT_PACKETS = "packets.hex"
INTERP_REPEAT = 20   # the interpreter is ~100-1000x slower: time it on fewer runs
JIT_REPEAT = 10_000  # per packet, in the JIT's native repeat loop
PROGRESS_AFTER_NS = 1e9  # runs expected to take longer than this get a progress bar (on a TTY)
CHUNK_NS = 1e8           # ... and are run in chunks of about this long
OBJECT_ENGINES = (*ENGINES, "kernel")

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


def _text(path: str, data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise BPFError(f"{path}: not a text file") from None


def load_program(path: str, helpers: HelperRegistry | None = None) -> tuple[Program, bytes | None, int | None]:
    """A program from a .data test file, assembly text or raw bytecode (ELF objects: ``load_object``).

    Returns the program and, for .data files, their memory and expected result.
    """
    data = _read(path)
    name = pathlib.Path(path).stem
    if elf.is_elf(data):
        raise BPFError(f"{path}: an ELF object: load it with bpfjit.load() (or 'bpfjit run {path}')")
    if path.endswith(".data"):
        case = asm.parse_test_file(_text(path, data))
        return Program.from_asm(case.asm, helpers=helpers, name=name), case.mem, case.result
    if path.endswith((".asm", ".s")):
        return Program.from_asm(_text(path, data), helpers=helpers, name=name), None, None
    return Program.from_bytes(data, helpers=helpers, name=name), None, None


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
    if not elf.is_elf(_read(path)):
        raise BPFError(f"{path}: not an ELF object (the object verbs take clang-built BPF objects)")


def load_object(path: str, rodata: dict[str, int] | None = None):
    """bpfjit.load() of a file named on the command line."""
    from .object import load  # the loader pulls in every helper: only verbs on objects pay for it
    _require_elf(path)
    return load(path, rodata=rodata or None)


def _pick_program(obj, name: str | None) -> Program:
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
        print(json.dumps({"program": program.name, "engine": engine, "retval": result.retval,
                          "data_out": result.data_out.hex(), "duration_ns": result.duration_ns}))
        return
    print(f"{program.name}: engine={engine} retval={result.retval:#x} ({result.retval}) "
          f"duration={result.duration_ns:,.1f} ns/run")


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
        last = program.test_run(first.data_out, ctx, repeat=rest, engine=engine)
        return RunResult(last.retval, last.data_out,
                         (first.duration_ns + last.duration_ns * rest) / repeat, last.ctx_out)
    chunk = max(1, int(CHUNK_NS / max(first.duration_ns, 1.0)))
    total_ns, last, done = first.duration_ns, first, 1
    with Progress(repeat, label or f"{program.name} ({engine})") as bar:
        bar.update(done)
        while done < repeat:
            n = min(chunk, repeat - done)
            last = program.test_run(last.data_out, ctx, repeat=n, engine=engine)
            total_ns += last.duration_ns * n
            done += n
            bar.update(done)
    return RunResult(last.retval, last.data_out, total_ns / repeat, last.ctx_out)


# --- run ----------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    if args.file is None:
        return run_default(args)
    if elf.is_elf(_read(args.file)):
        return run_object(args)
    if args.engine == "kernel":
        raise BPFError("--engine kernel runs programs of ELF objects only")
    if args.rodata:
        raise BPFError("--rodata sets globals of ELF objects only")
    program, mem, _ = load_program(args.file)
    data, ctx = _run_input(args)
    if data is not None:
        mem = data
    result = timed_run(program, mem or b"", ctx, args.repeat or 1, args.engine)
    _print_result(program, args.engine, result, args.json)
    return 0


def _rodata_images(obj) -> dict[str, bytes]:
    """The bytes of every read-only global-data section after --rodata (kernel initial values)."""
    images = {}
    for section in obj.elf.data_sections:
        if section.kind == "rodata":
            m = obj.maps[section.name]
            images[section.name] = ctypes.string_at(m.value_address(0), m.value_size)
    return images


def run_object(args: argparse.Namespace) -> int:
    """``bpfjit run OBJECT``: one program of an ELF object on one engine, bpftool prog run style."""
    obj = load_object(args.file, _parse_rodata(args.rodata))
    program = _pick_program(obj, args.program)
    data, ctx = _run_input(args)
    data = data if data is not None else b""
    repeat = args.repeat or 1
    if args.engine == "kernel":
        from .runtime.kernel import kernel_test_run
        images = _rodata_images(obj) if args.rodata else None
        k = kernel_test_run(obj.path, program.name, data, ctx, repeat, rodata=images)
        result = RunResult(k.retval, k.data_out, float(k.duration_ns), k.ctx_out)
    else:
        result = timed_run(program, data, ctx, repeat, args.engine)
    name = _retval_name(program, result.retval)
    trace = list(obj.trace_log)
    if args.json:
        print(json.dumps({"program": program.name, "engine": args.engine, "retval": result.retval,
                          "data_out": result.data_out.hex(), "duration_ns": result.duration_ns,
                          "type": program.prog_type, "repeat": repeat, "retval_name": name or None,
                          "ctx_out": None if result.ctx_out is None or ctx is None else result.ctx_out.hex(),
                          "trace": trace}))
        return 0
    print(f"{obj.name}: program {program.name} ({program.prog_type}), engine {args.engine}, "
          f"{repeat:,} run{'s' if repeat != 1 else ''}")
    print(f"Return value: {result.retval}{f' ({name})' if name else ''}, "
          f"duration{' (average)' if repeat > 1 else ''}: {result.duration_ns:,.1f}ns")
    if result.data_out == data:
        print(f"data_out: {len(data)} bytes, unchanged")
    else:
        print(f"data_out: {len(result.data_out)} bytes, changed:")
        print(_hexdump(result.data_out))
    if ctx is not None and result.ctx_out is not None:
        print(f"ctx_out: {result.ctx_out.hex()}")
    if trace:
        shown = trace[:20]
        print("bpf_trace_printk:")
        for line in shown:
            print(f"  {line}")
        if len(trace) > len(shown):
            print(f"  ... {len(trace) - len(shown):,} more")
    return 0


# --- the main job -------------------------------------------------------------------------------

def _data_path(name: str):
    return resources.files("bpfjit") / "data" / name


def read_packets(text: str, source: str = DEFAULT_PACKETS) -> list[tuple[str, bytes]]:
    """Packets of a packets.hex file: one frame per line in hex, then ``# description``."""
    packets = []
    for number, line in enumerate(text.splitlines(), 1):
        body, _, comment = line.partition("#")
        if not body.strip():
            continue
        try:
            frame = bytes.fromhex(body.strip())
        except ValueError:
            raise BPFError(f"{source}:{number}: not hexadecimal") from None
        packets.append((comment.strip() or f"packet {len(packets) + 1}", frame))
    return packets


def _ipv4(key: int) -> str:
    return socket.inet_ntoa(key.to_bytes(4, "little"))  # stored in network byte order


def _snapshot(obj) -> dict[str, list]:
    return {name: m.dump() for name, m in obj.maps.items()}


def run_default(args: argparse.Namespace) -> int:
    """The main job: the bundled firewall over the bundled packets, both engines, checked, timed."""
    if args.engine == "kernel" or args.program or args.ctx_hex:
        raise BPFError("without a FILE, run takes only --data/--data-hex, --rodata, --repeat and --json")
    path = _data_path(DEFAULT_OBJECT)
    rodata = _parse_rodata(args.rodata)
    data, _ = _run_input(args)
    if data is not None:
        packets = [("--data-hex packet" if args.data_hex is not None else f"--data {args.data}", data)]
    else:
        packets = read_packets(_data_path(DEFAULT_PACKETS).read_text())
    from .object import load
    with resources.as_file(path) as object_path:
        objects = {engine: load(object_path, rodata=rodata or None) for engine in ENGINES}
    programs = {engine: obj.programs["firewall"] for engine, obj in objects.items()}

    # One pass over the packets on each engine (separate objects: separate maps and globals).
    runs: dict[str, list[RunResult]] = {engine: [] for engine in ENGINES}
    for engine in ENGINES:
        for _, frame in packets:
            runs[engine].append(programs[engine].test_run(frame, engine=engine))
    for index, (description, _) in enumerate(packets):
        jit, interp = runs["jit"][index], runs["interp"][index]
        if (jit.retval, jit.data_out) != (interp.retval, interp.data_out):
            raise BPFError(f"engines disagree on packet {index + 1} ({description}): jit returned "
                           f"{jit.retval}, interp {interp.retval}" +
                           ("" if jit.retval != interp.retval else " (the packets differ)"))
    state = {engine: _snapshot(obj) for engine, obj in objects.items()}
    globals_ = {engine: obj.globals.as_dict() for engine, obj in objects.items()}
    for name in state["jit"]:
        if sorted(map(repr, state["jit"][name])) != sorted(map(repr, state["interp"][name])):
            raise BPFError(f"engines disagree on map {name}: jit {state['jit'][name]}, "
                           f"interp {state['interp'][name]}")
    if globals_["jit"] != globals_["interp"]:
        raise BPFError(f"engines disagree on globals: jit {globals_['jit']}, interp {globals_['interp']}")

    # Timing (after the snapshot: the repeats keep counting in the maps).
    repeats = {"jit": args.repeat if args.repeat and args.repeat > 1 else JIT_REPEAT,
               "interp": INTERP_REPEAT}
    expected_ns = sum(run.duration_ns * repeats[engine] for engine in ENGINES for run in runs[engine])
    times: dict[str, list[float]] = {engine: [] for engine in ENGINES}
    with Progress(len(packets) * len(ENGINES), "timing", enabled=_stderr_is_tty()
                  and expected_ns > PROGRESS_AFTER_NS) as bar:
        for engine in ENGINES:
            for _, frame in packets:
                times[engine].append(programs[engine].test_run(frame, repeat=repeats[engine],
                                                               engine=engine).duration_ns)
                bar.advance()
    mean = {engine: sum(values) / len(values) for engine, values in times.items()}
    ratio = mean["interp"] / mean["jit"] if mean["jit"] else float("inf")

    verdicts = [XDP_ACTIONS.get(run.retval, str(run.retval)) for run in runs["jit"]]
    if args.json:
        print(json.dumps({
            "program": "firewall", "object": DEFAULT_OBJECT, "engines": list(ENGINES),
            "packets": [{"description": d, "verdict": v, "retval": r.retval, "data_out": r.data_out.hex(),
                         "jit_ns": times["jit"][i], "interp_ns": times["interp"][i]}
                        for i, ((d, _), v, r) in enumerate(zip(packets, verdicts, runs["jit"]))],
            "maps": {name: [[_jsonable(k), _jsonable(v)] for k, v in entries]
                     for name, entries in state["jit"].items()},
            "globals": _jsonable(globals_["jit"]),
            "mean_ns": mean, "repeat": repeats, "ratio": ratio}))
        return 0

    program = programs["jit"]
    plural = "s" if len(packets) != 1 else ""
    print(f"bundled program: {DEFAULT_SOURCE} -> {DEFAULT_OBJECT}, XDP program 'firewall' "
          f"({len(program.insns)} insns), {len(packets)} packet{plural}, engines jit and interp")
    width = max(len(d) for d, _ in packets)
    print()
    print(f"  #  {'packet':<{width}}  {'verdict':<8}  {'jit ns':>9}  {'interp ns':>11}")
    for i, (description, _) in enumerate(packets):
        print(f"{i + 1:3d}  {description:<{width}}  {verdicts[i]:<8}  {times['jit'][i]:>9,.1f}  "
              f"{times['interp'][i]:>11,.0f}")
    print()
    print("verdicts, packets, maps and globals agree on both engines; after one pass (jit):")
    counts = dict(state["jit"]["verdicts"])
    print("  map verdicts: " + ", ".join(f"{XDP_ACTIONS.get(k, k)} {v}" for k, v in counts.items() if v)
          + ("" if any(counts.values()) else "(all zero)"))
    sources = sorted(state["jit"]["sources"], key=lambda kv: (-kv[1], kv[0].to_bytes(4, "little")))
    print("  map sources:  " + (", ".join(f"{_ipv4(k)} {v}" for k, v in sources) or "(empty)"))
    print("  globals:      " + ", ".join(f"{name} = {_show(value)}" for name, value in globals_["jit"].items()))
    print()
    print(f"mean per packet: jit {mean['jit']:,.1f} ns ({repeats['jit']:,} runs each), "
          f"interp {mean['interp']:,.0f} ns ({repeats['interp']:,} runs each)")
    print(f"jit is {ratio:,.0f}x faster than the interpreter")
    return 0


# --- prog ---------------------------------------------------------------------------------------

def _linked(obj, program: Program):
    return next((p for p in obj.elf.programs if p.name == program.name), None)


def _map_refs(obj, program: Program) -> list[str]:
    """Maps a program references through ld_imm64 (MAP_IDX / MAP_IDX_VALUE), in first-use order."""
    names: list[str] = []
    insns = program.insns
    for index, insn in enumerate(insns):
        if insn.is_lddw and not isa.is_filler(insns, index) and insn.src in (5, 6):
            if 0 <= insn.imm < len(obj.elf.map_names):
                name = obj.elf.map_names[insn.imm]
                if name not in names:
                    names.append(name)
    return names


def cmd_prog_list(args: argparse.Namespace) -> int:
    obj = load_object(args.file)
    records = [{"name": name, "type": p.prog_type, "section": getattr(p, "section", ""),
                "insns": len(p.insns), "license": obj.license, "maps": _map_refs(obj, p)}
               for name, p in obj.programs.items()]
    if args.json:
        print(json.dumps(records))
        return 0
    for r in records:
        maps = f"  maps {','.join(r['maps'])}" if r["maps"] else ""
        print(f"name {r['name']}  type {r['type']}  section {r['section']}  insns {r['insns']}  "
              f"license {r['license'] or '(none)'}{maps}")
    return 0


def xlated_listing(obj, program: Program) -> str:
    """The program as it runs (ctx accesses rewritten, subprograms appended), with the names of its
    functions and, where BTF line info has them, the source lines (``; ...``) above their code."""
    linked = _linked(obj, program)
    names = {f.number: f.name for f in obj.elf.functions}
    symbols = [(0, program.name)]
    if linked is not None:
        symbols = sorted((start, names.get(number, f"f{start}")) for number, start in linked.function_tokens.items())
    text = disasm.listing(program.insns, symbols)
    lines = {}
    for section, records in (obj.btf_ext.line_info.items() if obj.btf_ext is not None else ()):
        for record in records:
            lines[(section, record.insn_index)] = record.line_text.strip()
    out, last = [], None
    for line in text.splitlines():
        match = re.match(r"\s*(\d+):\t", line)
        if match:
            index = int(match.group(1))
            origins = linked.origins if linked is not None else ()
            source = lines.get(origins[index]) if index < len(origins) else None
            if source and source != last:
                out.append(f"; {source}")
                last = source
            line += _map_note(obj, program.insns[index])
        out.append(line)
    return "\n".join(out) + "\n"


def _map_note(obj, insn) -> str:
    """What an ld_imm64 of a map loads, bpftool style: ``map[counts]``, ``map[.bss][0]+4``."""
    if not insn.is_lddw or insn.src not in (5, 6) or not 0 <= insn.imm < len(obj.elf.map_names):
        return ""
    name = obj.elf.map_names[insn.imm]
    return f"\t; map[{name}]" if insn.src == 5 else f"\t; map[{name}][0]+{insn.next_imm}"


def jited_listing(program: Program) -> str:
    """x86-64 assembly of the program's optimised module, as LLVM's code generator emits it."""
    import llvmlite.binding as llvm

    from .jit.engine import target_machine
    compiled = program.compile()
    tm = target_machine()
    try:
        module = llvm.parse_assembly(compiled.optimised_ir)
        module.triple = tm.triple
        module.data_layout = str(tm.target_data)
        return tm.emit_assembly(module)
    except RuntimeError as exc:
        raise BPFError(f"{program.name}: LLVM could not emit assembly: {exc}") from None


def cmd_prog_dump(args: argparse.Namespace) -> int:
    obj = load_object(args.file)
    program = _pick_program(obj, args.program)
    if args.ir:
        compiled = program.compile()
        print(f"; ---- {program.name}: LLVM IR as lowered from BPF (unoptimised) ----")
        print(compiled.ir.rstrip())
        print()
        print(f"; ---- {program.name}: LLVM IR after optimisation ----")
        print(compiled.optimised_ir.rstrip())
    elif args.jited:
        text = jited_listing(program)
        compiled = program.compile()
        print(f"# {program.name}: x86-64 code, entry bpf_entry at {compiled.code_address():#x}")
        print(text.rstrip())
    else:
        print(xlated_listing(obj, program), end="")
    return 0


# --- map ----------------------------------------------------------------------------------------

def _map_record(m) -> dict:
    entries = m.dump()
    return {"name": m.name, "type": m.type_name, "key_size": m.key_size, "value_size": m.value_size,
            "max_entries": m.max_entries, "flags": m.map_flags,
            "entries": [{"key": _jsonable(k), "value": _jsonable(v)} for k, v in entries]}


def cmd_map_dump(args: argparse.Namespace) -> int:
    obj = load_object(args.file, _parse_rodata(args.rodata))
    if args.map is not None and args.map not in obj.maps:
        raise BPFError(f"{obj.name}: no map named {args.map!r} (maps: {', '.join(obj.maps) or 'none'})")
    data, ctx = _run_input(args)
    if args.program is not None or data is not None:
        if args.engine == "kernel":
            raise BPFError("map dump shows bpfjit's own maps: run with --engine jit or interp")
        program = _pick_program(obj, args.program)
        timed_run(program, data or b"", ctx, args.repeat or 1, args.engine)
    maps = [obj.maps[args.map]] if args.map is not None else list(obj.maps.values())
    records = [_map_record(m) for m in maps]
    if args.json:
        print(json.dumps(records if args.map is None else records[0]))
        return 0
    for number, r in enumerate(records):
        if number:
            print()
        print(f"map {r['name']}  type {r['type']}  key {r['key_size']}B  value {r['value_size']}B  "
              f"max_entries {r['max_entries']}  flags {r['flags']:#x}")
        for entry in r["entries"]:
            key = "" if entry["key"] is None else f"key: {_show(entry['key'])}  "
            print(f"{key}value: {_show(entry['value'])}")
        print(f"Found {len(r['entries'])} element{'s' if len(r['entries']) != 1 else ''}")
    return 0


# --- btf ----------------------------------------------------------------------------------------

_INT_ENCODINGS = {0: "(none)", btf_module.INT_SIGNED: "SIGNED", btf_module.INT_CHAR: "CHAR",
                  btf_module.INT_BOOL: "BOOL"}
_LINKAGES = {0: "static", 1: "global", 2: "extern"}


def btf_record(btf, t) -> dict:
    """One BTF type as bpftool's ``btf dump file X -j`` shapes it."""
    K = btf_module.Kind
    try:
        kind = K(t.kind).name
    except ValueError:
        kind = f"KIND_{t.kind}"
    r: dict[str, Any] = {"id": t.id, "kind": kind, "name": t.name or "(anon)"}
    if isinstance(t, btf_module.Int):
        r.update(size=t.size, bits_offset=t.bit_offset, nr_bits=t.bits,
                 encoding=_INT_ENCODINGS.get(t.encoding, f"{t.encoding:#x}"))
    elif isinstance(t, btf_module.Array):
        r.update(type_id=t.type, index_type_id=t.index_type, nr_elems=t.nelems)
    elif isinstance(t, btf_module.Struct):
        members = []
        for m in t.members:
            member = {"name": m.name or "(anon)", "type_id": m.type, "bits_offset": m.bit_offset}
            if m.bitfield_size:
                member["bitfield_size"] = m.bitfield_size
            members.append(member)
        r.update(size=t.size, vlen=len(t.members), members=members)
    elif isinstance(t, btf_module.Enum):
        r.update(encoding="SIGNED" if t.signed else "UNSIGNED", size=t.size, vlen=len(t.values),
                 values=[{"name": v.name, "val": v.value} for v in t.values])
    elif isinstance(t, btf_module.Fwd):
        r.update(fwd_kind="union" if t.is_union else "struct")
    elif isinstance(t, btf_module.Func):
        r.update(type_id=t.type, linkage=_LINKAGES.get(t.linkage, "(unknown)"))
    elif isinstance(t, btf_module.FuncProto):
        r.update(ret_type_id=t.return_type, vlen=len(t.params),
                 params=[{"name": p.name or "(anon)", "type_id": p.type} for p in t.params])
    elif isinstance(t, btf_module.Var):
        r.update(type_id=t.type, linkage=_LINKAGES.get(t.linkage, "(unknown)"))
    elif isinstance(t, btf_module.Datasec):
        r.update(size=t.size, vlen=len(t.vars),
                 vars=[{"type_id": v.type, "offset": v.offset, "size": v.size} for v in t.vars])
    elif isinstance(t, btf_module.Float):
        r.update(size=t.size)
    elif isinstance(t, btf_module.DeclTag):
        r.update(type_id=t.type, component_idx=t.component_idx)
    elif isinstance(t, (btf_module.Ptr, btf_module.Modifier)):
        r.update(type_id=t.type)
    return r


def btf_lines(btf, r: dict) -> list[str]:
    """The record in bpftool's ``btf dump file X`` text form."""
    head = f"[{r['id']}] {r['kind']} '{r['name']}'"
    kind = r["kind"]
    if kind == "INT":
        head += f" size={r['size']} bits_offset={r['bits_offset']} nr_bits={r['nr_bits']} encoding={r['encoding']}"
    elif kind == "ARRAY":
        head += f" type_id={r['type_id']} index_type_id={r['index_type_id']} nr_elems={r['nr_elems']}"
    elif kind in ("STRUCT", "UNION"):
        head += f" size={r['size']} vlen={r['vlen']}"
    elif kind in ("ENUM", "ENUM64"):
        head += f" encoding={r['encoding']} size={r['size']} vlen={r['vlen']}"
    elif kind == "FWD":
        head += f" fwd_kind={r['fwd_kind']}"
    elif kind == "FUNC":
        head += f" type_id={r['type_id']} linkage={r['linkage']}"
    elif kind == "FUNC_PROTO":
        head += f" ret_type_id={r['ret_type_id']} vlen={r['vlen']}"
    elif kind == "VAR":
        head += f" type_id={r['type_id']}, linkage={r['linkage']}"
    elif kind == "DATASEC":
        head += f" size={r['size']} vlen={r['vlen']}"
    elif kind == "FLOAT":
        head += f" size={r['size']}"
    elif kind == "DECL_TAG":
        head += f" type_id={r['type_id']} component_idx={r['component_idx']}"
    elif "type_id" in r:
        head += f" type_id={r['type_id']}"
    lines = [head]
    for m in r.get("members", ()):
        extra = f" bitfield_size={m['bitfield_size']}" if "bitfield_size" in m else ""
        lines.append(f"\t'{m['name']}' type_id={m['type_id']} bits_offset={m['bits_offset']}{extra}")
    for v in r.get("values", ()):
        lines.append(f"\t'{v['name']}' val={v['val']}")
    for p in r.get("params", ()):
        lines.append(f"\t'{p['name']}' type_id={p['type_id']}")
    for v in r.get("vars", ()):
        target = btf.types[v["type_id"]] if 0 <= v["type_id"] < len(btf.types) else None
        what = f" ({btf_record(btf, target)['kind']} '{target.name}')" if target is not None else ""
        lines.append(f"\ttype_id={v['type_id']} offset={v['offset']} size={v['size']}{what}")
    return lines


def cmd_btf_dump(args: argparse.Namespace) -> int:
    _require_elf(args.file)
    obj = elf.read_object(args.file)
    if obj.btf is None:
        raise BPFError(f"{args.file}: no .BTF section (build with clang -g)")
    btf = btf_module.parse_btf(obj.btf)
    # clang leaves DATASEC sizes and offsets to the loader: fill them in as libbpf does at open.
    for d in obj.data_sections:
        if btf.datasec(d.name) is not None:
            btf.fix_datasec(d.name, len(d.image), {n: off for n, (off, _) in d.variables.items()})
    if obj.map_symbols and btf.datasec(elf.MAPS_SECTION) is not None:
        size = max(off + size for off, size in obj.map_symbols.values())
        btf.fix_datasec(elf.MAPS_SECTION, size, {n: off for n, (off, _) in obj.map_symbols.items()})
    records = [btf_record(btf, t) for t in btf.types[1:]]
    if args.json:
        print(json.dumps({"types": records}))
        return 0
    for r in records:
        print("\n".join(btf_lines(btf, r)))
    return 0


# --- asm, disasm, conformance plugin ------------------------------------------------------------

def cmd_asm(args: argparse.Namespace) -> int:
    code = asm.assemble(_text(args.file, _read(args.file)))
    if args.output:
        pathlib.Path(args.output).write_bytes(code)
    else:
        for i in range(0, len(code), 8):
            print(code[i:i + 8].hex(" "))
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    data = _read(args.file)
    if not elf.is_elf(data):
        print(disasm.listing(isa.decode(data), [(0, pathlib.Path(args.file).stem)]), end="")
        return 0
    sections = elf.code_sections(data, name=args.file)
    if args.section:
        sections = [s for s in sections if s.name == args.section]
        if not sections:
            raise BPFError(f"{args.file}: no code section named {args.section!r}")
    # The same layout as llvm-objdump -d, so the two can be diffed.
    print(f"\n{pathlib.Path(args.file).name}:\tfile format elf64-bpf")
    for section in sections:
        print(f"\nDisassembly of section {section.name}:\n")
        symbols = section.symbols or ((0, section.name),)
        print(disasm.listing(isa.decode(section.code), symbols), end="")
    return 0


def cmd_conformance_plugin(args: argparse.Namespace) -> int:
    """bpf_conformance's plugin protocol: program hex on stdin, memory hex in argv, r0 in hex out."""
    code = _hex_arg(sys.stdin.read().strip(), "program on stdin")
    mem = _hex_arg(args.memory, "memory argument") if args.memory else b""
    helpers = HelperRegistry([unwind_helper()])
    program = Program.from_bytes(code, helpers=helpers)
    print(f"{program.run(mem, engine=args.engine):x}")
    return 0


# --- argument parsing ---------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors end as one ``bpfjit: error: ...`` line (status 1)."""

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _add_run_inputs(p: argparse.ArgumentParser, engines: Sequence[str], default_repeat: int | None) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="FILE", help="file holding the packet / the memory r1 points at")
    source.add_argument("--data-hex", metavar="HEX", help="the packet / the memory r1 points at, in hex")
    p.add_argument("--ctx-hex", metavar="HEX", help="the context (e.g. struct xdp_md) in hex")
    p.add_argument("--engine", choices=engines, default="jit")
    p.add_argument("--repeat", type=int, default=default_repeat, metavar="N",
                   help="run N times (the mean time per run is reported)")
    p.add_argument("--rodata", action="append", metavar="NAME=VALUE",
                   help="set a const volatile global before load (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bpfjit", description="Run BPF programs in userspace: interpreted or "
                                                "jitted to x86-64 through LLVM.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    p = verbs.add_parser("run", help="run a program (no FILE: the bundled firewall on both engines)",
                         description="Run an ELF object's program, a .data test file, .asm/.s assembly or raw "
                                     "bytecode. Without FILE: the bundled XDP firewall over the bundled "
                                     "packets on both engines (checked against each other, then timed).")
    p.add_argument("file", nargs="?", help="ELF object, .data test file, .asm/.s assembly, or raw bytecode")
    p.add_argument("-p", "--program", help="the object's program to run (default: its only one)")
    _add_run_inputs(p, OBJECT_ENGINES, None)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_run)

    prog = verbs.add_parser("prog", help="list or dump an object's programs (like bpftool prog)")
    prog_verbs = prog.add_subparsers(dest="prog_verb", required=True, metavar="{list,dump}",
                                     parser_class=_Parser)
    p = prog_verbs.add_parser("list", help="one line per program: name, type, section, insns, license")
    p.add_argument("file", metavar="OBJECT")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_prog_list)
    p = prog_verbs.add_parser("dump", help="a program as it runs (--xlated), as x86-64 code (--jited) or LLVM IR")
    p.add_argument("file", metavar="OBJECT")
    p.add_argument("-p", "--program", help="the program (default: the object's only one)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--xlated", action="store_true", help="BPF as it runs, ctx accesses rewritten (default)")
    what.add_argument("--jited", action="store_true", help="x86-64 assembly of the compiled program")
    what.add_argument("--ir", action="store_true", help="LLVM IR, unoptimised then optimised")
    p.set_defaults(func=cmd_prog_dump)

    maps = verbs.add_parser("map", help="dump an object's maps (like bpftool map dump)")
    map_verbs = maps.add_subparsers(dest="map_verb", required=True, metavar="{dump}", parser_class=_Parser)
    p = map_verbs.add_parser("dump", help="keys and values, formatted with BTF; optionally after a run")
    p.add_argument("file", metavar="OBJECT")
    p.add_argument("-m", "--map", help="only this map (default: all)")
    p.add_argument("-p", "--program", help="run this program first (with --data/--data-hex ...)")
    _add_run_inputs(p, ENGINES, None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_map_dump)

    btf = verbs.add_parser("btf", help="dump an object's BTF (like bpftool btf dump file)")
    btf_verbs = btf.add_subparsers(dest="btf_verb", required=True, metavar="{dump}", parser_class=_Parser)
    p = btf_verbs.add_parser("dump", help="one line per type: [id] KIND 'name' ...")
    p.add_argument("file", metavar="OBJECT")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_btf_dump)

    p = verbs.add_parser("asm", help="assemble bpf_conformance-syntax assembly into bytecode")
    p.add_argument("file")
    p.add_argument("-o", "--output", help="write raw bytecode here (default: hex, one instruction per line)")
    p.set_defaults(func=cmd_asm)

    p = verbs.add_parser("disasm", help="disassemble raw bytecode or an ELF object, llvm-objdump style")
    p.add_argument("file")
    p.add_argument("-s", "--section", help="only this ELF section")
    p.set_defaults(func=cmd_disasm)

    p = verbs.add_parser("conformance-plugin", help="bpf_conformance plugin: program hex on stdin")
    p.add_argument("memory", nargs="?", help="memory in hex")
    p.add_argument("--engine", choices=ENGINES, default="jit")
    p.set_defaults(func=cmd_conformance_plugin)
    return parser


def _one_line(message: str) -> str:
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    return " | ".join(lines) or "unknown error"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "repeat", None) is not None and args.repeat < 1:
            raise BPFError(f"--repeat must be at least 1, not {args.repeat}")
        return args.func(args)
    except (BPFError, _UsageError) as exc:
        print(f"bpfjit: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

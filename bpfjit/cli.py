"""The ``bpfjit`` command line: asm, disasm, run, conformance-plugin.

Every verb goes through the same public API users call (``Program``, ``asm``, ``disasm``), and
every user error ends as one ``bpfjit: error: ...`` line on stderr with a non-zero exit code.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from importlib import resources
from typing import Sequence

from . import asm, disasm, isa
from .errors import BPFError
from .program import ENGINES, Program, RunResult
from .runtime import elf
from .runtime.helpers import HelperRegistry, unwind_helper

DEFAULT_PROGRAM = "default.data"
INTERP_REPEAT = 20  # the interpreter is ~1000x slower: time it on fewer runs
JIT_REPEAT = 20_000


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
    """A program from a .data test file, assembly text, raw bytecode, or (soon) an ELF object.

    Returns the program and, for .data files, their memory and expected result.
    """
    data = _read(path)
    name = pathlib.Path(path).stem
    if elf.is_elf(data):
        raise BPFError(f"{path}: running ELF objects is not supported yet (use 'bpfjit disasm' to list them)")
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


# --- verbs --------------------------------------------------------------------------------------

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


def _print_result(program: Program, engine: str, result: RunResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"program": program.name, "engine": engine, "retval": result.retval,
                          "data_out": result.data_out.hex(), "duration_ns": result.duration_ns}))
        return
    print(f"{program.name}: engine={engine} retval={result.retval:#x} ({result.retval}) "
          f"duration={result.duration_ns:,.1f} ns/run")


def cmd_run(args: argparse.Namespace) -> int:
    if args.file is None:
        return run_default(args)
    program, mem, _ = load_program(args.file)
    if args.data_hex is not None:
        mem = _hex_arg(args.data_hex, "--data-hex")
    elif args.data is not None:
        mem = _read(args.data)
    result = program.test_run(mem or b"", repeat=args.repeat, engine=args.engine)
    _print_result(program, args.engine, result, args.json)
    return 0


def run_default(args: argparse.Namespace) -> int:
    """The main job on the bundled program: both engines, checked result, speed ratio."""
    path = resources.files("bpfjit") / "data" / DEFAULT_PROGRAM
    case = asm.parse_test_file(path.read_text())
    program = Program.from_asm(case.asm, name="checksum")
    mem = case.mem if args.data_hex is None else _hex_arg(args.data_hex, "--data-hex")
    print(f"bundled program: RFC 1071 checksum over {len(mem)} bytes ({len(program.insns)} instructions)")
    results = {}
    for engine in ("interp", "jit"):
        repeat = INTERP_REPEAT if engine == "interp" else max(args.repeat, JIT_REPEAT)
        results[engine] = program.test_run(mem, repeat=repeat, engine=engine)
        _print_result(program, engine, results[engine], args.json)
    interp, jit = results["interp"], results["jit"]
    if interp.retval != jit.retval or interp.data_out != jit.data_out:
        raise BPFError(f"engines disagree: interp {interp.retval:#x}, jit {jit.retval:#x}")
    if args.data_hex is None and jit.retval != case.result:
        raise BPFError(f"wrong checksum {jit.retval:#x}, expected {case.result:#x}")
    if not args.json:
        print(f"checksum {jit.retval:#06x} on both engines; jit is {interp.duration_ns / jit.duration_ns:,.0f}x "
              f"faster than the interpreter")
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

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bpfjit", description="Run BPF programs in userspace: interpreted or "
                                                                "jitted to x86-64 through LLVM.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("asm", help="assemble bpf_conformance-syntax assembly into bytecode")
    p.add_argument("file")
    p.add_argument("-o", "--output", help="write raw bytecode here (default: hex, one instruction per line)")
    p.set_defaults(func=cmd_asm)

    p = verbs.add_parser("disasm", help="disassemble raw bytecode or an ELF object, llvm-objdump style")
    p.add_argument("file")
    p.add_argument("-s", "--section", help="only this ELF section")
    p.set_defaults(func=cmd_disasm)

    p = verbs.add_parser("run", help="run a program (no FILE: the bundled default program on both engines)")
    p.add_argument("file", nargs="?", help=".data test file, .asm/.s assembly, or raw bytecode")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="file holding the memory r1 points at")
    source.add_argument("--data-hex", help="the memory r1 points at, in hex")
    p.add_argument("--engine", choices=ENGINES, default="jit")
    p.add_argument("--repeat", type=int, default=1, help="run N times (mean time per run is reported)")
    p.add_argument("--json", action="store_true", help="print a JSON object per run")
    p.set_defaults(func=cmd_run)

    p = verbs.add_parser("conformance-plugin", help="bpf_conformance plugin: program hex on stdin")
    p.add_argument("memory", nargs="?", help="memory in hex")
    p.add_argument("--engine", choices=ENGINES, default="jit")
    p.set_defaults(func=cmd_conformance_plugin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BPFError as exc:
        print(f"bpfjit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

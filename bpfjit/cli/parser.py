"""The argument parser and ``main``: every user error becomes one ``bpfjit: error:`` line, and
Ctrl-C stops any verb at once."""
from __future__ import annotations

import argparse
import os
import sys
import threading
from importlib import resources
from typing import Callable, Sequence

from ..errors import BPFError
from ..program import RUN_ENGINES
from . import bench, verify
from .common import add_load_options, add_map_updates
from .bytecode import cmd_asm, cmd_conformance_plugin, cmd_disasm
from .common import (
    OBJECT_ENGINES,
)
from .inspect import (
    cmd_btf_dump,
    cmd_map_dump,
    cmd_prog_dump,
    cmd_prog_list,
)
from .run import cmd_run

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
    _add_no_verify_option(p)
    _add_key_option(p)
    add_load_options(p)


def _integer(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _positive(text: str) -> int:
    """A count of at least 1."""
    count = _integer(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"{count} is not at least 1")
    return count


def _size(text: str) -> int:
    """An output buffer's size: a u32, as BPF_PROG_TEST_RUN takes it."""
    size = _integer(text)
    if not 0 <= size <= 0xFFFF_FFFF:
        raise argparse.ArgumentTypeError(f"{size} is not a size from 0 to 4294967295")
    return size


def _add_no_verify_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-verify", action="store_true",
                   help="do not verify: run sandboxed (every memory access checked at run time)")


def _add_key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", action="append", metavar="NAME=on|off",
                   help="set a static key after load (repeatable; keys start off)")


def cmd_include_dir(args: argparse.Namespace) -> int:
    """The folder to pass to clang with -I for #include <bpfjit/static_keys.h>."""
    print(resources.files("bpfjit") / "include")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bpfjit", description="Run BPF programs in userspace: interpreted or "
                                                "jitted to x86-64 through LLVM.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    p = verbs.add_parser("run", help="run a program (no FILE: the bundled firewall on every engine)",
                         description="Run an ELF object's program, a .data test file, .asm/.s assembly or raw "
                                     "bytecode. Without FILE: the bundled XDP firewall over the bundled "
                                     "packets on both engines (checked against each other, then timed).")
    p.add_argument("file", nargs="?", help="ELF object, .data test file, .asm/.s assembly, or raw bytecode")
    p.add_argument("-p", "--program", help="the object's program to run (default: its only one)")
    _add_run_inputs(p, OBJECT_ENGINES, None)
    p.add_argument("--pcap", metavar="FILE",
                   help="run once on each packet of this capture (pcap or pcapng), maps kept from packet to "
                        "packet; prints the actions' counts")
    p.add_argument("--packets", action="store_true", help="with --pcap: also a line per packet")
    add_map_updates(p)
    p.add_argument("--out-pcap", metavar="FILE",
                   help="with --pcap: write the packets the program leaves (not dropped) to this pcap file, "
                        "with their bytes after the run; a name holding {action} gets a file per action")
    p.add_argument("--threads", type=_positive, metavar="N",
                   help="with --pcap: share the packets out over N threads (each its own slot in per-CPU maps)")
    p.add_argument("--data-size-out", type=_size, metavar="N",
                   help="the data_out buffer's size: a longer packet out is cut to N bytes (ENOSPC)")
    p.add_argument("--ctx-size-out", type=_size, metavar="N",
                   help="the ctx_out buffer's size: a longer context out is cut to N bytes (ENOSPC)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_run)

    prog = verbs.add_parser("prog", help="list or dump an object's programs (like bpftool prog)")
    prog_verbs = prog.add_subparsers(dest="prog_verb", required=True, metavar="{list,dump}",
                                     parser_class=_Parser)
    p = prog_verbs.add_parser("list", help="one line per program: name, type, section, insns, license, flags")
    p.add_argument("file", metavar="OBJECT")
    p.add_argument("--json", action="store_true")
    add_load_options(p)
    p.set_defaults(func=cmd_prog_list)
    p = prog_verbs.add_parser("dump", help="a program as it runs (--xlated), as x86-64 code (--jited) or LLVM IR")
    p.add_argument("file", metavar="OBJECT")
    p.add_argument("-p", "--program", help="the program (default: the object's only one)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--xlated", action="store_true", help="BPF as it runs, ctx accesses rewritten (default)")
    what.add_argument("--jited", action="store_true", help="x86-64 assembly of the compiled program")
    what.add_argument("--ir", action="store_true", help="LLVM IR, unoptimised then optimised")
    _add_no_verify_option(p)
    _add_key_option(p)
    add_load_options(p)
    p.set_defaults(func=cmd_prog_dump)

    bench.add_parser(verbs)
    verify.add_parser(verbs)

    p = verbs.add_parser("include-dir", help="print the folder of bpfjit's C headers (for clang -I)")
    p.set_defaults(func=cmd_include_dir)

    maps = verbs.add_parser("map", help="dump an object's maps (like bpftool map dump)")
    map_verbs = maps.add_subparsers(dest="map_verb", required=True, metavar="{dump}", parser_class=_Parser)
    p = map_verbs.add_parser("dump", help="keys and values, formatted with BTF; optionally after a run")
    p.add_argument("file", metavar="OBJECT")
    p.add_argument("-m", "--map", help="only this map (default: all)")
    p.add_argument("-p", "--program", help="run this program first (with --data/--data-hex ...)")
    _add_run_inputs(p, RUN_ENGINES, None)
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
    p.add_argument("--engine", choices=RUN_ENGINES, default="jit")
    p.add_argument("--elf", action="store_true",
                   help="stdin is an ELF object (bpf_conformance_runner --elf true); also known by its magic number")
    p.set_defaults(func=cmd_conformance_plugin)
    return parser


def _one_line(message: str) -> str:
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    return " | ".join(lines) or "unknown error"


def _run_verb(args: argparse.Namespace) -> int:
    """The verb's work; a user error ends as one line and status 1."""
    try:
        if getattr(args, "repeat", None) is not None and args.repeat < 1:
            raise BPFError(f"--repeat must be at least 1, not {args.repeat}")
        return args.func(args)
    except BPFError as exc:
        print(f"bpfjit: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (| head): nothing left to say to anyone
        os._exit(0)


def _leave_interrupted() -> None:
    """Ctrl-C: one line, status 130 (128 + SIGINT), and no waiting for the work to wind down."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.write(2, b"bpfjit: interrupted\n")
    os._exit(130)


def _interruptible(work: Callable[[], int]) -> int:
    """Run work in a worker thread while this (main) thread only waits for it.

    Python handles SIGINT in the main thread, between bytecodes; a jitted loop or a long LLVM
    compile never returns to Python, so a KeyboardInterrupt raised there would wait for it. Here
    the main thread sleeps in ``join``, which a signal interrupts, and leaves at once; the worker is
    a daemon and dies with the process.
    """
    results: list[int] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread, as if run there
            errors.append(exc)

    worker = threading.Thread(target=target, name="bpfjit-verb", daemon=True)
    try:
        worker.start()
        worker.join()
    except KeyboardInterrupt:
        _leave_interrupted()
    if errors:
        raise errors[0]
    return results[0]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(f"bpfjit: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _leave_interrupted()
    return _interruptible(lambda: _run_verb(args))

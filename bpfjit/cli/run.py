"""``bpfjit run FILE|OBJECT``: one program, on the interpreter, the JIT or the kernel, on one
input or on every packet of a capture (``--pcap``)."""
from __future__ import annotations

import argparse
import errno
import json
from typing import TYPE_CHECKING

from ..errors import BPFError
from ..object import PROGRAM_TYPES, Object, is_elf
from ..program import Program, RunResult
from .capture import check_capture_options, run_capture
from .common import (
    _hexdump,
    apply_map_updates,
    map_updates,
    _parse_keys,
    _parse_rodata,
    parse_load_options,
    _pick_program,
    _print_result,
    _read,
    _retval_name,
    _run_input,
    load_object,
    load_program,
    tiers_text,
    timed_run,
)
from .main_job import run_default

if TYPE_CHECKING:  # the kernel engine is imported where it runs
    from ..kernel import KernelResult

# --- run ----------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    if args.file is None:
        if args.pcap or args.data_size_out is not None or args.ctx_size_out is not None:
            raise BPFError("--pcap, --data-size-out and --ctx-size-out need a program: bpfjit run FILE ...")
        return run_default(args)
    check_capture_options(args)
    if is_elf(_read(args.file)):
        return run_object(args)
    if args.engine == "kernel":
        raise BPFError("--engine kernel runs programs of ELF objects only")
    if args.rodata or args.key or args.map_updates:
        raise BPFError("--rodata, --key and --map-update apply to ELF objects only")
    program, mem, _ = load_program(args.file, verify=not args.no_verify)
    if args.pcap:
        return run_capture(args, program, None)
    data, ctx = _run_input(args)
    if data is not None:
        mem = data
    result = _test_run(args, program, mem or b"", ctx, args.repeat or 1)
    _print_result(program, args.engine, result, args.json)
    return 0


def _output_sizes(args: argparse.Namespace) -> dict[str, int | None]:
    return {"data_size_out": args.data_size_out, "ctx_size_out": args.ctx_size_out}


def _test_run(args: argparse.Namespace, program: Program, data: bytes, ctx: bytes | None, repeat: int) -> RunResult:
    """One test run as the options ask: with output buffer sizes, a plain test_run (their ENOSPC
    and full sizes belong to one run); without, timed_run, which shows a bar on long repeats."""
    if args.data_size_out is None and args.ctx_size_out is None:
        return timed_run(program, data, ctx, repeat, args.engine)
    return program.test_run(data, ctx, repeat=repeat, engine=args.engine, **_output_sizes(args))


def _from_kernel(k: KernelResult, repeat: int) -> RunResult:
    """A kernel engine's KernelResult as bpfjit's RunResult."""
    return RunResult(k.retval, k.data_out, float(k.duration_ns), k.ctx_out, {"kernel": repeat}, None,
                     k.data_size_out, k.ctx_size_out, k.errno)


def run_object(args: argparse.Namespace) -> int:
    """``bpfjit run OBJECT``: one program of an ELF object on one engine, bpftool prog run style."""
    if args.key and args.engine == "kernel":
        raise BPFError("--key needs one of bpfjit's engines: the kernel has no static keys")
    obj = load_object(args.file, _parse_rodata(args.rodata), _parse_keys(args.key), verify=not args.no_verify,
                      options=parse_load_options(args), program=args.program)
    program = _pick_program(obj, args.program)
    written = apply_map_updates(obj, map_updates(args))
    if args.pcap:
        return run_capture(args, program, obj, _kernel_load(args, obj, written) if args.engine == "kernel" else None)
    data, ctx = _run_input(args)
    data = data if data is not None else b""
    repeat = args.repeat or 1
    if args.engine == "kernel":
        from ..kernel import kernel_test_run
        k = kernel_test_run(obj.path, program.name, data, ctx, repeat, **_kernel_load(args, obj, written),
                            **_output_sizes(args), read_maps=())  # the output shows no map
        result = _from_kernel(k, repeat)
    else:
        result = _test_run(args, program, data, ctx, repeat)
    name = _retval_name(program, result.retval)
    trace = list(obj.trace_log)
    shows_ctx = result.ctx_out is not None and (ctx is not None or args.ctx_size_out is not None)
    if args.json:
        print(json.dumps({"program": program.name, "engine": args.engine, "tiers": result.tiers,
                          "retval": result.retval,
                          "data_out": result.data_out.hex(), "duration_ns": result.duration_ns,
                          "type": program.prog_type, "repeat": repeat, "retval_name": name or None,
                          "ctx_out": result.ctx_out.hex() if shows_ctx else None,
                          "data_size_out": result.data_size_out,
                          "ctx_size_out": result.ctx_size_out if shows_ctx else None,
                          "errno": errno.errorcode.get(result.errno) if result.errno else None,
                          "trace": trace}))
        return 0
    print(f"{obj.name}: program {program.name} ({program.prog_type}), engine {args.engine}, "
          f"{repeat:,} run{'s' if repeat != 1 else ''}{tiers_text(args.engine, result)}")
    print(f"Return value: {result.retval}{f' ({name})' if name else ''}, "
          f"duration{' (average)' if repeat > 1 else ''}: {result.duration_ns:,.1f}ns")
    if result.data_size_out > len(result.data_out):
        print(f"data_out: {len(result.data_out)} of {result.data_size_out} bytes (ENOSPC: --data-size-out "
              f"{args.data_size_out} is too small):")
        print(_hexdump(result.data_out))
    elif result.data_out == data:
        print(f"data_out: {len(data)} bytes, unchanged")
    else:
        print(f"data_out: {len(result.data_out)} bytes, changed:")
        print(_hexdump(result.data_out))
    if shows_ctx:
        cut = result.ctx_size_out > len(result.ctx_out)
        print(f"ctx_out: {result.ctx_out.hex()}" + (f" ({len(result.ctx_out)} of {result.ctx_size_out} bytes, "
                                                    "ENOSPC)" if cut else ""))
    if trace:
        shown = trace[:20]
        print("bpf_trace_printk:")
        for line in shown:
            print(f"  {line}")
        if len(trace) > len(shown):
            print(f"  ... {len(trace) - len(shown):,} more")
    return 0


def _kernel_load(args: argparse.Namespace, obj: Object, written: dict[str, list[tuple[bytes, bytes]]]) -> dict:
    """What the kernel engine's load takes from the options: .rodata, map sizes, program types
    and flags, and the entries --map-update wrote."""
    options = parse_load_options(args)
    if options["btf"] is not None:
        raise BPFError("--btf applies to bpfjit's engines: the kernel engine's libbpf resolves CO-RE "
                       "relocations against the running kernel's BTF")
    kernel_types = {name: PROGRAM_TYPES[type_name].kernel_type
                    for name, type_name in (options["program_types"] or {}).items()}
    return {"rodata": obj.rodata_images() if args.rodata else None, "map_options": options["maps"],
            "program_types": kernel_types, "program_flags": options["program_flags"], "map_updates": written or None}

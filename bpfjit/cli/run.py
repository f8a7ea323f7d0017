"""``bpfjit run FILE|OBJECT``: one program, on the interpreter, the JIT or the kernel."""
from __future__ import annotations

import argparse
import json

from ..errors import BPFError
from ..object import PROGRAM_TYPES, is_elf
from ..program import RunResult
from .common import (
    _hexdump,
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

# --- run ----------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    if args.file is None:
        return run_default(args)
    if is_elf(_read(args.file)):
        return run_object(args)
    if args.engine == "kernel":
        raise BPFError("--engine kernel runs programs of ELF objects only")
    if args.rodata or args.key:
        raise BPFError("--rodata and --key apply to ELF objects only")
    program, mem, _ = load_program(args.file, verify=not args.no_verify)
    data, ctx = _run_input(args)
    if data is not None:
        mem = data
    result = timed_run(program, mem or b"", ctx, args.repeat or 1, args.engine)
    _print_result(program, args.engine, result, args.json)
    return 0


def run_object(args: argparse.Namespace) -> int:
    """``bpfjit run OBJECT``: one program of an ELF object on one engine, bpftool prog run style."""
    if args.key and args.engine == "kernel":
        raise BPFError("--key needs one of bpfjit's engines: the kernel has no static keys")
    obj = load_object(args.file, _parse_rodata(args.rodata), _parse_keys(args.key), verify=not args.no_verify,
                      options=parse_load_options(args), program=args.program)
    program = _pick_program(obj, args.program)
    data, ctx = _run_input(args)
    data = data if data is not None else b""
    repeat = args.repeat or 1
    if args.engine == "kernel":
        from ..kernel import kernel_test_run
        images = obj.rodata_images() if args.rodata else None
        options = parse_load_options(args)
        kernel_types = {name: PROGRAM_TYPES[type_name].kernel_type
                        for name, type_name in (options["program_types"] or {}).items()}
        k = kernel_test_run(obj.path, program.name, data, ctx, repeat, rodata=images,
                            map_options=options["maps"], program_types=kernel_types)
        result = RunResult(k.retval, k.data_out, float(k.duration_ns), k.ctx_out, {"kernel": repeat})
    else:
        result = timed_run(program, data, ctx, repeat, args.engine)
    name = _retval_name(program, result.retval)
    trace = list(obj.trace_log)
    if args.json:
        print(json.dumps({"program": program.name, "engine": args.engine, "tiers": result.tiers,
                          "retval": result.retval,
                          "data_out": result.data_out.hex(), "duration_ns": result.duration_ns,
                          "type": program.prog_type, "repeat": repeat, "retval_name": name or None,
                          "ctx_out": None if result.ctx_out is None or ctx is None else result.ctx_out.hex(),
                          "trace": trace}))
        return 0
    print(f"{obj.name}: program {program.name} ({program.prog_type}), engine {args.engine}, "
          f"{repeat:,} run{'s' if repeat != 1 else ''}{tiers_text(args.engine, result)}")
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



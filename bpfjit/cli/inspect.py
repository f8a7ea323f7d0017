"""bpftool-like inspection: ``prog list``, ``prog dump``, ``map dump``, ``btf dump``."""
from __future__ import annotations

import argparse
import json

from .. import btf as btf_module
from ..errors import BPFError
from ..listing import annotated_ir, jited_listing, map_references, xlated_listing
from .common import (
    _jsonable,
    _parse_keys,
    _parse_rodata,
    parse_load_options,
    _pick_program,
    _require_elf,
    _run_input,
    _show,
    load_object,
    timed_run,
)

# --- prog ---------------------------------------------------------------------------------------

def cmd_prog_list(args: argparse.Namespace) -> int:
    obj = load_object(args.file, verify=False, options=parse_load_options(args))  # listing needs no verdict
    records = [{"name": name, "type": p.prog_type, "section": getattr(p, "section", ""),
                "insns": len(p.insns), "license": obj.license, "flags": p.flags, "maps": map_references(obj, p)}
               for name, p in obj.programs.items()]
    if args.json:
        print(json.dumps(records))
        return 0
    for r in records:
        maps = f"  maps {','.join(r['maps'])}" if r["maps"] else ""
        print(f"name {r['name']}  type {r['type']}  section {r['section']}  insns {r['insns']}  "
              f"license {r['license'] or '(none)'}  flags {r['flags']:#x}{maps}")
    return 0


def cmd_prog_dump(args: argparse.Namespace) -> int:
    obj = load_object(args.file, keys=_parse_keys(args.key), verify=not args.no_verify,
                      options=parse_load_options(args), program=args.program)
    program = _pick_program(obj, args.program)
    if args.ir:
        compiled = program.compile()
        print(f"; ---- {program.name}: LLVM IR as lowered from BPF (unoptimised) ----")
        print(annotated_ir(program, compiled.ir).rstrip())
        print()
        print(f"; ---- {program.name}: LLVM IR after optimisation ----")
        print(compiled.optimised_ir.rstrip())
    elif args.jited:
        text = jited_listing(program)
        compiled = program.compile()
        print(f"# {program.name}: x86-64 code, entry bpf_f0 at {compiled.code_address():#x}")
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
    obj = load_object(args.file, _parse_rodata(args.rodata), _parse_keys(args.key), verify=not args.no_verify,
                      options=parse_load_options(args))
    if args.map is not None and args.map not in obj.maps:
        raise BPFError(f"{obj.name}: no map named {args.map!r} (maps: {', '.join(obj.maps) or 'none'})")
    data, ctx = _run_input(args)
    if args.program is not None or data is not None:
        if args.engine == "kernel":
            raise BPFError("map dump shows bpfjit's own maps: run with one of bpfjit's engines, not --engine kernel")
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

def cmd_btf_dump(args: argparse.Namespace) -> int:
    _require_elf(args.file)
    btf = btf_module.read_btf(args.file)  # DATASECs filled in as libbpf does at open; nothing loaded
    if args.json:
        print(json.dumps({"types": btf_module.dump_records(btf)}))
        return 0
    for line in btf_module.dump_lines(btf):
        print(line)
    return 0



"""bpftool-like inspection: ``prog list``, ``prog dump``, ``map dump``, ``btf dump``."""
from __future__ import annotations

import argparse
import ctypes
import json
import re
from typing import Any

from .. import disasm, isa
from ..errors import BPFError
from ..program import Program
from ..runtime import btf as btf_module
from ..runtime import elf
from ..runtime.static_keys import NOP5
from .common import (
    _jsonable,
    _parse_keys,
    _parse_rodata,
    _pick_program,
    _require_elf,
    _run_input,
    _show,
    load_object,
    timed_run,
)

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

    from ..jit.engine import target_machine
    compiled = program.compile()
    tm = target_machine()
    try:
        module = llvm.parse_assembly(compiled.optimised_ir)
        module.triple = tm.triple
        module.data_layout = str(tm.target_data)
        listing = tm.emit_assembly(module)
    except RuntimeError as exc:
        raise BPFError(f"{program.name}: LLVM could not emit assembly: {exc}") from None
    return listing + static_site_listing(program, compiled.sites)


def static_site_listing(program: Program, sites) -> str:
    """The live machine code of each static-branch site, as it is patched now."""
    if not sites:
        return ""
    lines = ["", "; static-branch sites, as patched now:"]
    for site in sorted(sites, key=lambda s: (s.index, s.address)):
        code = ctypes.string_at(site.address, 5)
        key = program.env.static_keys.get(site.index)
        state = f"key {key.name} {'on' if key.enabled else 'off'}" if key else "no key"
        if code == NOP5:
            text = "nopl 0x0(%rax,%rax,1)"
        else:
            text = f"jmp {site.address + 5 + int.from_bytes(code[1:], 'little', signed=True):#x}"
        lines.append(f"{site.address:#x}:  {code.hex(' ')}    {text:<28} ; insn {site.index}, {state}")
    return "\n".join(lines) + "\n"


def cmd_prog_dump(args: argparse.Namespace) -> int:
    obj = load_object(args.file, keys=_parse_keys(args.key))
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
    obj = load_object(args.file, _parse_rodata(args.rodata), _parse_keys(args.key))
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



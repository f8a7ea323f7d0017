"""``bpfjit run`` without a file: the bundled XDP firewall over the bundled packets, on both
engines, checked to agree, then timed."""
from __future__ import annotations

import argparse
import json
import socket
from importlib import resources

from ..errors import BPFError
from ..program import ENGINES, RunResult
from .common import (
    DEFAULT_OBJECT,
    DEFAULT_PACKETS,
    DEFAULT_SOURCE,
    INTERP_REPEAT,
    JIT_REPEAT,
    PROGRESS_AFTER_NS,
    XDP_ACTIONS,
    Progress,
    _jsonable,
    _parse_rodata,
    _run_input,
    _show,
    _stderr_is_tty,
)

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
    from ..object import load
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



"""``bpfjit run`` without a file: the bundled XDP firewall over the bundled packets, on every
engine, checked against the reference interpreter, then timed."""
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
    REFERENCE_REPEAT,
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


def _check_agreement(packets: list[tuple[str, bytes]], runs: dict[str, list[RunResult]], objects: dict) -> None:
    """Every engine's verdicts, packets, maps and globals are the reference interpreter's."""
    state = {engine: _snapshot(obj) for engine, obj in objects.items()}
    globals_ = {engine: obj.globals.as_dict() for engine, obj in objects.items()}
    for engine in ENGINES:
        if engine == "reference":
            continue
        for index, (description, _) in enumerate(packets):
            got, want = runs[engine][index], runs["reference"][index]
            if (got.retval, got.data_out) != (want.retval, want.data_out):
                raise BPFError(f"engines disagree on packet {index + 1} ({description}): {engine} returned "
                               f"{got.retval}, reference {want.retval}" +
                               ("" if got.retval != want.retval else " (the packets differ)"))
        for name in state[engine]:
            if sorted(map(repr, state[engine][name])) != sorted(map(repr, state["reference"][name])):
                raise BPFError(f"engines disagree on map {name}: {engine} {state[engine][name]}, "
                               f"reference {state['reference'][name]}")
        if globals_[engine] != globals_["reference"]:
            raise BPFError(f"engines disagree on globals: {engine} {globals_[engine]}, "
                           f"reference {globals_['reference']}")


def run_default(args: argparse.Namespace) -> int:
    """The main job: the bundled firewall over the bundled packets, every engine, checked, timed."""
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
    _check_agreement(packets, runs, objects)
    state, globals_ = _snapshot(objects["jit"]), objects["jit"].globals.as_dict()  # after one pass

    # Timing (after the check: the repeats keep counting in the maps).
    repeats = {"jit": args.repeat if args.repeat and args.repeat > 1 else JIT_REPEAT, "interp": INTERP_REPEAT,
               "reference": REFERENCE_REPEAT}
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
    # The headline: the JIT against the native interpreter (the Python reference is the oracle).
    ratio = mean["interp"] / mean["jit"] if mean["jit"] else float("inf")
    verdicts = [XDP_ACTIONS.get(run.retval, str(run.retval)) for run in runs["jit"]]
    if args.json:
        print(json.dumps({
            "program": "firewall", "object": DEFAULT_OBJECT, "engines": list(ENGINES),
            "packets": [{"description": d, "verdict": v, "retval": r.retval, "data_out": r.data_out.hex(),
                         **{f"{engine}_ns": times[engine][i] for engine in ENGINES}}
                        for i, ((d, _), v, r) in enumerate(zip(packets, verdicts, runs["jit"]))],
            "maps": {name: [[_jsonable(k), _jsonable(v)] for k, v in entries]
                     for name, entries in state.items()},
            "globals": _jsonable(globals_),
            "mean_ns": mean, "repeat": repeats, "ratio": ratio}))
        return 0

    program = programs["jit"]
    plural = "s" if len(packets) != 1 else ""
    print(f"bundled program: {DEFAULT_SOURCE} -> {DEFAULT_OBJECT}, XDP program 'firewall' "
          f"({len(program.insns)} insns), {len(packets)} packet{plural}, engines {', '.join(ENGINES)}")
    width = max(len(d) for d, _ in packets)
    print()
    print(f"  #  {'packet':<{width}}  {'verdict':<8}  {'jit ns':>9}  {'interp ns':>10}  {'reference ns':>12}")
    for i, (description, _) in enumerate(packets):
        print(f"{i + 1:3d}  {description:<{width}}  {verdicts[i]:<8}  {times['jit'][i]:>9,.1f}  "
              f"{times['interp'][i]:>10,.1f}  {times['reference'][i]:>12,.0f}")
    print()
    print("verdicts, packets, maps and globals agree on every engine; after one pass (jit):")
    counts = dict(state["verdicts"])
    print("  map verdicts: " + ", ".join(f"{XDP_ACTIONS.get(k, k)} {v}" for k, v in counts.items() if v)
          + ("" if any(counts.values()) else "(all zero)"))
    sources = sorted(state["sources"], key=lambda kv: (-kv[1], kv[0].to_bytes(4, "little")))
    print("  map sources:  " + (", ".join(f"{_ipv4(k)} {v}" for k, v in sources) or "(empty)"))
    print("  globals:      " + ", ".join(f"{name} = {_show(value)}" for name, value in globals_.items()))
    print()
    print("mean per packet: " + ", ".join(f"{engine} {mean[engine]:,.1f} ns ({repeats[engine]:,} runs each)"
                                          for engine in ENGINES))
    print(f"jit is {ratio:,.1f}x faster than the native interpreter "
          f"({mean['reference'] / mean['jit']:,.0f}x faster than the Python reference)")
    return 0



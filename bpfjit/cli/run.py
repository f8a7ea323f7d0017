"""``bpfjit run FILE|OBJECT``: one program, on the interpreter, the JIT or the kernel, on one
input or on every packet of a capture (``--pcap``)."""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import time
from typing import TYPE_CHECKING

from ..errors import BPFError
from ..object import PROGRAM_TYPES, Object, is_elf
from ..pcap import LINKTYPE_ETHERNET, Capture, PcapError, read_pcap
from ..program import Program, RunResult
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

if TYPE_CHECKING:  # the kernel engine is imported where it runs
    from ..kernel import KernelResult

# --- run ----------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    if args.file is None:
        if args.pcap or args.data_size_out is not None or args.ctx_size_out is not None:
            raise BPFError("--pcap, --data-size-out and --ctx-size-out need a program: bpfjit run FILE ...")
        return run_default(args)
    _check_capture_options(args)
    if is_elf(_read(args.file)):
        return run_object(args)
    if args.engine == "kernel":
        raise BPFError("--engine kernel runs programs of ELF objects only")
    if args.rodata or args.key:
        raise BPFError("--rodata and --key apply to ELF objects only")
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
    if args.pcap:
        return run_capture(args, program, obj)
    data, ctx = _run_input(args)
    data = data if data is not None else b""
    repeat = args.repeat or 1
    if args.engine == "kernel":
        from ..kernel import kernel_test_run
        k = kernel_test_run(obj.path, program.name, data, ctx, repeat, **_kernel_load(args, obj),
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


def _kernel_load(args: argparse.Namespace, obj: Object) -> dict:
    """What the kernel engine's load takes from the options: .rodata, map sizes, program types."""
    options = parse_load_options(args)
    if options["btf"] is not None:
        raise BPFError("--btf applies to bpfjit's engines: the kernel engine's libbpf resolves CO-RE "
                       "relocations against the running kernel's BTF")
    kernel_types = {name: PROGRAM_TYPES[type_name].kernel_type
                    for name, type_name in (options["program_types"] or {}).items()}
    return {"rodata": obj.rodata_images() if args.rodata else None, "map_options": options["maps"],
            "program_types": kernel_types}


# --- run over a capture -------------------------------------------------------------------------

def _check_capture_options(args: argparse.Namespace) -> None:
    """--pcap gives every input; the options that give one input, or repeat it, do not mix."""
    if not args.pcap:
        return
    clashing = [option for option, given in (("--data", args.data), ("--data-hex", args.data_hex),
                                             ("--ctx-hex", args.ctx_hex), ("--repeat", args.repeat))
                if given is not None]
    if clashing:
        raise BPFError(f"--pcap runs the program once on each packet of the capture: drop {', '.join(clashing)}")


def run_capture(args: argparse.Namespace, program: Program, obj: Object | None) -> int:
    """``--pcap FILE``: the program once per packet, in order, on the same maps (as an attached
    program sees them); per packet its action and packet out, then the actions' counts and the
    packets per second."""
    capture = read_pcap(args.pcap)
    if program.prog_type != "raw" and capture.link_type != LINKTYPE_ETHERNET:
        raise PcapError(f"{args.pcap}: link type {capture.link_name}: {program.prog_type} programs run on "
                        f"Ethernet frames (link type {LINKTYPE_ETHERNET})")
    packets = [packet.data for packet in capture.packets]
    if args.engine == "kernel":
        outcomes, elapsed_ns = _kernel_capture(args, obj, program, packets)
    else:
        outcomes, elapsed_ns = _capture_runs(args, program, packets)
    report = _CaptureReport(program, args.engine, capture, packets, outcomes, elapsed_ns)
    print(report.json() if args.json else report.text(obj.name if obj is not None else program.name, args.pcap))
    return 0


def _capture_runs(args: argparse.Namespace, program: Program, packets: list[bytes]) -> tuple[list, int]:
    """Each packet through test_run on a bpfjit engine; the outcomes and the wall time they took."""
    outcomes: list[RunResult | BPFError] = []
    sizes = _output_sizes(args)
    program.prepare(args.engine)  # the compile is not a packet's time
    started = time.perf_counter_ns()
    for data in packets:
        try:
            outcomes.append(program.test_run(data, engine=args.engine, **sizes))
        except BPFError as error:  # a packet the test run refuses (a runt frame, ...): said, and on to the next
            outcomes.append(error)
    return outcomes, time.perf_counter_ns() - started


def _kernel_capture(args: argparse.Namespace, obj: Object, program: Program, packets: list[bytes]) -> tuple[list, int]:
    """Each packet through its own BPF_PROG_TEST_RUN, on one load in the kernel engine's child;
    the time is that of the test-run calls, packet by packet."""
    from ..kernel import KernelRun, kernel_test_runs
    runs = kernel_test_runs(obj.path, program.name, [KernelRun(data, None, 1, args.data_size_out, args.ctx_size_out)
                                                     for data in packets],
                            timeout=60 + len(packets) / 1000, **_kernel_load(args, obj), read_maps=())
    outcomes = [result if isinstance(result, BPFError) else _from_kernel(result, 1) for result in runs.results]
    return outcomes, sum(result.syscall_ns for result in runs.results if not isinstance(result, BPFError))


class _CaptureReport:
    """The outcome of a run over a capture, as text or JSON."""

    def __init__(self, program: Program, engine: str, capture: Capture, packets: list[bytes],
                 outcomes: list, elapsed_ns: int):
        self.program, self.engine, self.capture = program, engine, capture
        self.packets, self.outcomes, self.elapsed_ns = packets, outcomes, elapsed_ns

    def _action(self, outcome) -> str:
        if isinstance(outcome, BPFError):
            return "error"
        return _retval_name(self.program, outcome.retval) or f"retval {outcome.retval}"

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[self._action(outcome)] = counts.get(self._action(outcome), 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def per_second(self) -> float:
        return len(self.outcomes) * 1e9 / self.elapsed_ns if self.elapsed_ns else 0.0

    def mean_program_ns(self) -> float:
        ran = [outcome.duration_ns for outcome in self.outcomes if not isinstance(outcome, BPFError)]
        return sum(ran) / len(ran) if ran else 0.0

    def json(self) -> str:
        rows = []
        for index, (data, outcome) in enumerate(zip(self.packets, self.outcomes), 1):
            if isinstance(outcome, BPFError):
                rows.append({"packet": index, "length": len(data), "error": str(outcome).splitlines()[0]})
                continue
            rows.append({"packet": index, "length": len(data), "retval": outcome.retval,
                         "action": self._action(outcome), "changed": outcome.data_out != data,
                         "data_out": outcome.data_out.hex(), "data_size_out": outcome.data_size_out,
                         "errno": errno.errorcode.get(outcome.errno) if outcome.errno else None,
                         "duration_ns": outcome.duration_ns})
        return json.dumps({"program": self.program.name, "engine": self.engine, "type": self.program.prog_type,
                           "capture": {"link_type": self.capture.link_type, "packets": len(self.packets)},
                           "packets": rows,
                           "summary": {"packets": len(self.outcomes), "actions": self.counts(),
                                       "seconds": self.elapsed_ns / 1e9, "packets_per_second": self.per_second(),
                                       "mean_program_ns": self.mean_program_ns()}})

    def text(self, name: str, path: str) -> str:
        lines = [f"{name}: program {self.program.name} ({self.program.prog_type}), engine {self.engine}, "
                 f"capture {path}: {len(self.packets):,} packets ({self.capture.link_name})",
                 f"{'packet':>7} {'bytes':>6}  {'action':<16} data_out"]
        for index, (data, outcome) in enumerate(zip(self.packets, self.outcomes), 1):
            if isinstance(outcome, BPFError):
                lines.append(f"{index:>7} {len(data):>6}  error: {str(outcome).splitlines()[0]}")
                continue
            action = f"{self._action(outcome)} ({outcome.retval})" if _retval_name(self.program, outcome.retval) \
                else self._action(outcome)
            lines.append(f"{index:>7} {len(data):>6}  {action:<16} {_packet_out(data, outcome)}")
        timing = "in the kernel's test-run calls" if self.engine == "kernel" else "wall time, Python's calls included"
        lines.append(f"{len(self.outcomes):,} packets in {self.elapsed_ns / 1e6:,.3f} ms ({timing}): "
                     f"{self.per_second():,.0f} packets/s; mean program time {self.mean_program_ns():,.1f} ns")
        for action, count in self.counts().items():
            lines.append(f"  {action:<16} {count:>9,}  {100 * count / len(self.outcomes):5.1f}%")
        return "\n".join(lines)


def _packet_out(data: bytes, result: RunResult) -> str:
    """The packet a run left, in one line: unchanged, or its size and a digest of its bytes."""
    if result.errno == errno.ENOSPC:
        return f"{len(result.data_out)} of {result.data_size_out} bytes copied (ENOSPC)"
    if result.data_out == data:
        return "unchanged"
    return f"changed: {len(result.data_out)} bytes, sha256 {hashlib.sha256(result.data_out).hexdigest()[:16]}"

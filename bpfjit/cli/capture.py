"""``bpfjit run PROGRAM --pcap FILE``: the program once per packet of a capture, as an attached
program sees a link's traffic (maps kept from packet to packet), then a table of the actions;
each packet's line on request (``--packets``), every packet in JSON (``--json``), and the packets
the program leaves written to a capture (``--out-pcap``)."""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field

from ..capture import xdp_meta_len
from ..errors import BPFError
from ..object import Object
from ..pcap import LINKTYPE_ETHERNET, Capture, Packet, PcapError, read_pcap, write_pcap
from ..program import Program
from .common import Progress, _retval_name

# What a program of each type returns to drop a packet: such packets leave nothing.
_DROPS = {"xdp": {0, 1}, "tc": {2}}  # XDP_ABORTED, XDP_DROP; TC_ACT_SHOT
_SOCKET_FILTERS = ("socket",)  # r0 is how many bytes to keep; 0 drops the packet
ACTION_FIELD = "{action}"  # in --out-pcap's name: one capture per action


def check_capture_options(args: argparse.Namespace) -> None:
    """--pcap gives every input; the options that give one input, or repeat it, do not mix, and
    the options of a capture run need one."""
    if not args.pcap:
        extra = [option for option, given in (("--out-pcap", args.out_pcap), ("--packets", args.packets),
                                              ("--threads", args.threads)) if given]
        if extra:
            raise BPFError(f"{', '.join(extra)} apply to a run over a capture: add --pcap FILE")
        return
    clashing = [option for option, given in (("--data", args.data), ("--data-hex", args.data_hex),
                                             ("--ctx-hex", args.ctx_hex), ("--repeat", args.repeat))
                if given is not None]
    if clashing:
        raise BPFError(f"--pcap runs the program once on each packet of the capture: drop {', '.join(clashing)}")
    if args.threads and args.engine == "kernel":
        raise BPFError("--threads applies to bpfjit's engines: the kernel engine runs a capture in one child")


@dataclass
class _Outcomes:
    """Every packet's outcome, in capture order, as parallel lists."""
    retvals: list[int | None] = field(default_factory=list)  # None: an error (errors says which)
    data_outs: list[bytes | None] = field(default_factory=list)
    meta_lens: list[int] = field(default_factory=list)
    errors: dict[int, BPFError] = field(default_factory=dict)
    redirects: dict[int, object] = field(default_factory=dict)
    cut: dict[int, int] = field(default_factory=dict)  # ENOSPC: the full data_size_out
    elapsed_ns: int = 0  # the packets' wall time
    program_ns: int = 0  # the program's own time

    def add(self, retval: int | None, data_out: bytes | None, meta_len: int = 0) -> int:
        self.retvals.append(retval)
        self.data_outs.append(data_out)
        self.meta_lens.append(meta_len)
        return len(self.retvals) - 1


def run_capture(args: argparse.Namespace, program: Program, obj: Object | None,
                kernel_load: dict | None = None) -> int:
    capture = read_pcap(args.pcap, partial=True)
    if program.prog_type != "raw" and capture.link_type != LINKTYPE_ETHERNET:
        raise PcapError(f"{args.pcap}: link type {capture.link_name}: {program.prog_type} programs run on "
                        f"Ethernet frames (link type {LINKTYPE_ETHERNET})")
    packets = [packet.data for packet in capture.packets]
    if args.engine == "kernel":
        outcomes = _kernel_capture(args, obj, program, packets, kernel_load or {})
    else:
        outcomes = _bpfjit_capture(args, program, packets)
    report = _CaptureReport(program, args, capture, packets, outcomes)
    if args.out_pcap:
        report.write_out(args.out_pcap)
    print(report.json() if args.json else report.text(obj.name if obj is not None else program.name))
    if capture.truncated:  # as tcpdump: the packets before the cut ran; the damaged file fails the command
        print(f"bpfjit: warning: the capture is cut short after {len(packets):,} packets: {capture.truncated}",
              file=sys.stderr)
        return 1
    return 0


def _bpfjit_capture(args: argparse.Namespace, program: Program, packets: list[bytes]) -> _Outcomes:
    """The packets through Program.run_capture, with a progress bar on a terminal."""
    if args.data_size_out is not None or args.ctx_size_out is not None:
        return _sized_capture(args, program, packets)
    keep = bool(args.json or args.packets or args.out_pcap)
    run = program.run_capture(packets, engine=args.engine, threads=args.threads or 1, keep_data=keep)
    outcomes = _Outcomes()
    with Progress(len(packets), f"{program.name} ({args.engine})") as bar:
        for batch in run.batches():
            start = len(outcomes.retvals)
            outcomes.retvals += batch.retvals
            outcomes.data_outs += batch.data_outs
            outcomes.meta_lens += batch.meta_lens
            outcomes.errors.update((start + at, error) for at, error in batch.errors.items())
            outcomes.redirects.update((start + at, target) for at, target in batch.redirects.items())
            bar.advance(len(batch.packets))
    outcomes.elapsed_ns, outcomes.program_ns = run.wall_ns, run.program_ns
    return outcomes


def _sized_capture(args: argparse.Namespace, program: Program, packets: list[bytes]) -> _Outcomes:
    """With output buffer sizes: each packet through test_run, whose ENOSPC and full sizes are
    per run."""
    outcomes = _Outcomes()
    program.prepare(args.engine)
    started = time.perf_counter_ns()
    for data in packets:
        try:
            result = program.test_run(data, engine=args.engine, data_size_out=args.data_size_out,
                                      ctx_size_out=args.ctx_size_out)
        except BPFError as error:
            outcomes.errors[outcomes.add(None, None)] = error
            continue
        at = outcomes.add(result.retval, result.data_out)
        outcomes.program_ns += int(result.duration_ns)
        if result.errno == errno.ENOSPC:
            outcomes.cut[at] = result.data_size_out
    outcomes.elapsed_ns = time.perf_counter_ns() - started
    return outcomes


def _kernel_capture(args: argparse.Namespace, obj: Object, program: Program, packets: list[bytes],
                    kernel_load: dict) -> _Outcomes:
    """Each packet through its own BPF_PROG_TEST_RUN, on one load in the kernel engine's child;
    the time is that of the test-run calls, packet by packet."""
    from ..kernel import KernelRun, kernel_test_runs
    runs = kernel_test_runs(obj.path, program.name, [KernelRun(data, None, 1, args.data_size_out, args.ctx_size_out)
                                                     for data in packets],
                            timeout=60 + len(packets) / 1000, **kernel_load, read_maps=())
    outcomes = _Outcomes()
    for result in runs.results:
        if isinstance(result, BPFError):
            outcomes.errors[outcomes.add(None, None)] = result
            continue
        at = outcomes.add(result.retval, result.data_out, xdp_meta_len(program.prog_type, result.ctx_out))
        outcomes.elapsed_ns += result.syscall_ns
        outcomes.program_ns += int(result.duration_ns)
        if result.errno == errno.ENOSPC:
            outcomes.cut[at] = result.data_size_out
    return outcomes


class _CaptureReport:
    """The outcome of a run over a capture, as text, JSON, or the packets it left."""

    def __init__(self, program: Program, args: argparse.Namespace, capture: Capture, packets: list[bytes],
                 outcomes: _Outcomes):
        self.program, self.engine, self.args, self.capture = program, args.engine, args, capture
        self.packets, self.outcomes = packets, outcomes
        self.actions = [self._action(at) for at in range(len(packets))]

    def _action(self, at: int) -> str:
        retval = self.outcomes.retvals[at]
        if retval is None:
            return "error"
        return _retval_name(self.program, retval) or f"retval {retval}"

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for action in self.actions:
            counts[action] = counts.get(action, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def per_second(self) -> float:
        return len(self.packets) * 1e9 / self.outcomes.elapsed_ns if self.outcomes.elapsed_ns else 0.0

    def mean_program_ns(self) -> float:
        ran = len(self.packets) - len(self.outcomes.errors)
        return self.outcomes.program_ns / ran if ran else 0.0

    def left(self, at: int) -> bytes | None:
        """The packet that packet `at` leaves on its way out (metadata stripped; a socket
        filter's cut to r0 bytes), or None: dropped, or its run failed."""
        retval, data_out = self.outcomes.retvals[at], self.outcomes.data_outs[at]
        if retval is None or data_out is None or retval & 0xFFFFFFFF in _DROPS.get(self.program.prog_type, ()):
            return None
        out = data_out[self.outcomes.meta_lens[at]:]
        if self.program.prog_type in _SOCKET_FILTERS:
            return out[:retval & 0xFFFFFFFF] or None
        return out

    def write_out(self, path: str) -> None:
        """--out-pcap: the packets left, each with its capture's timestamp; a name holding
        {action} gets one capture per action (dropped packets included, as they were left)."""
        per_action = ACTION_FIELD in path
        files: dict[str, list[Packet]] = {}
        for at, source in enumerate(self.capture.packets):
            if per_action:
                data = self.outcomes.data_outs[at]
                data = None if data is None else data[self.outcomes.meta_lens[at]:]
                name = path.replace(ACTION_FIELD, self.actions[at].replace(" ", "_"))
            else:
                data, name = self.left(at), path
            files.setdefault(name, [])
            if data is not None:
                files[name].append(Packet(len(files[name]), data, len(data), source.timestamp_ns))
        for name, written in files.items():
            write_pcap(name, written, link_type=self.capture.link_type)

    def _row(self, at: int) -> dict:
        data = self.packets[at]
        if at in self.outcomes.errors:
            return {"packet": at + 1, "length": len(data), "error": str(self.outcomes.errors[at]).splitlines()[0]}
        data_out = self.outcomes.data_outs[at]
        retval = self.outcomes.retvals[at]
        redirect = self.outcomes.redirects.get(at)
        return {"packet": at + 1, "length": len(data), "retval": retval, "action": self.actions[at],
                "changed": data_out != data, "data_out": data_out.hex(),
                "data_size_out": self.outcomes.cut.get(at, len(data_out)),
                "errno": "ENOSPC" if at in self.outcomes.cut else None,
                "redirect": None if redirect is None else {k: v for k, v in vars(redirect).items() if v is not None}}

    def summary(self) -> dict:
        return {"packets": len(self.packets), "actions": self.counts(), "seconds": self.outcomes.elapsed_ns / 1e9,
                "packets_per_second": self.per_second(), "mean_program_ns": self.mean_program_ns(),
                "threads": self.args.threads or 1}

    def json(self) -> str:
        return json.dumps({"program": self.program.name, "engine": self.engine, "type": self.program.prog_type,
                           "capture": {"link_type": self.capture.link_type, "packets": len(self.packets)},
                           "packets": [self._row(at) for at in range(len(self.packets))],
                           "summary": self.summary()})

    def text(self, name: str) -> str:
        threads = f", {self.args.threads} threads" if (self.args.threads or 1) > 1 else ""
        lines = [f"{name}: program {self.program.name} ({self.program.prog_type}), engine {self.engine}{threads}, "
                 f"capture {self.args.pcap}: {len(self.packets):,} packets ({self.capture.link_name})"]
        if self.args.packets:
            lines.append(f"{'packet':>7} {'bytes':>6}  {'action':<16} data_out")
            lines += [self._line(at) for at in range(len(self.packets))]
        timing = "in the kernel's test-run calls" if self.engine == "kernel" else "wall time, Python included"
        lines.append(f"{len(self.packets):,} packets in {self.outcomes.elapsed_ns / 1e6:,.3f} ms ({timing}): "
                     f"{self.per_second():,.0f} packets/s; mean program time {self.mean_program_ns():,.1f} ns")
        for action, count in self.counts().items():
            lines.append(f"  {action:<16} {count:>9,}  {100 * count / len(self.packets):5.1f}%")
        return "\n".join(lines)

    def _line(self, at: int) -> str:
        data = self.packets[at]
        if at in self.outcomes.errors:
            return f"{at + 1:>7} {len(data):>6}  error: {str(self.outcomes.errors[at]).splitlines()[0]}"
        retval = self.outcomes.retvals[at]
        action = f"{self.actions[at]} ({retval})" if _retval_name(self.program, retval) else self.actions[at]
        redirect = self.outcomes.redirects.get(at)
        where = f" -> {_redirect_text(redirect)}" if redirect is not None else ""
        return f"{at + 1:>7} {len(data):>6}  {action:<16} {self._packet_out(at)}{where}"

    def _packet_out(self, at: int) -> str:
        """The packet a run left, in one line: unchanged, or its size and a digest of its bytes."""
        data, data_out = self.packets[at], self.outcomes.data_outs[at]
        if at in self.outcomes.cut:
            return f"{len(data_out)} of {self.outcomes.cut[at]} bytes copied (ENOSPC)"
        if data_out == data:
            return "unchanged"
        return f"changed: {len(data_out)} bytes, sha256 {hashlib.sha256(data_out).hexdigest()[:16]}"


def _redirect_text(redirect) -> str:
    if redirect.map is not None:
        return f"{redirect.map}[{redirect.key}]"
    return f"ifindex {redirect.ifindex}"

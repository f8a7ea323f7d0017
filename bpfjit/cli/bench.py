"""``bpfjit bench``: the benchmark suite on every engine, as one table (and JSON, and a plot)."""
from __future__ import annotations

import argparse
import json
import re

from ..errors import BPFError
from .common import Progress, _check_writable, _write

CAPTURE = "capture"  # the runs over a capture, after the table (--filter capture: only them)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import measure, native, report
    from ..bench.suite import CASES

    try:
        pattern = re.compile(args.filter or "")
    except re.error as exc:
        raise BPFError(f"--filter: bad regular expression {args.filter!r}: {exc}") from None
    if args.rounds < 1:
        raise BPFError(f"--rounds must be at least 1, not {args.rounds}")
    for output in (args.json, args.plot):
        if output:
            _check_writable(output)
    chosen = [(case, cpu) for case in CASES for cpu in case.cpu_variants()
              if pattern.search(case.name if cpu == "v3" else f"{case.name} ({cpu})")]
    with_capture = bool(pattern.search(CAPTURE))
    if not chosen and not with_capture:
        raise BPFError(f"no benchmark matches --filter {args.filter!r} "
                       f"(there are: {', '.join(case.name for case in CASES)}, {CAPTURE})")
    if args.kernel:
        from ..kernel import kernel_available
        ok, why = kernel_available()
        if not ok:
            raise BPFError(f"--kernel: the kernel engine is not available here: {why}")
    info = report.machine()
    twinned = [case for case, _ in chosen if case.native_twin]
    natives = None if args.no_native or not twinned else native.NativeLibrary(twinned)
    rows = []
    try:
        with Progress(len(chosen) * measure.STEPS_PER_CASE, "bench") as bar:
            def step(what: str) -> None:
                bar.label = f"bench {what:<24}"
                bar.advance()
            for case, cpu in chosen:
                rows.append(measure.measure(case, cpu, natives, args.rounds, args.kernel, step))
    finally:
        if natives is not None:
            natives.close()
    if rows:
        print(report.table(rows, info), end="")
    passes = _capture(args) if with_capture else []
    if args.json:
        record = report.as_json(rows, info)
        record[CAPTURE] = [{"engine": t.engine, "packets": t.packets, "packets_per_second": t.per_second}
                           for t in passes]
        _write(args.json, (json.dumps(record, indent=2) + "\n").encode())
    if args.plot and rows:
        from ..bench.plot import bar_chart_png
        groups, series = report.plot_series(rows)
        _write(args.plot, bar_chart_png(f"bpfjit bench: ns per run (log scale) on {info['cpu']}", groups, series))
    return 0


def _capture(args: argparse.Namespace) -> list:
    """The runs over a capture (bench/capture.py): packets per second of the firewall."""
    from ..bench import capture
    passes = capture.measure(capture.PACKETS, rounds=args.rounds, kernel=args.kernel)
    print(f"\n{CAPTURE}: the firewall once per packet over {capture.PACKETS:,} in-memory packets")
    print(capture.text(passes), end="")
    return passes


def add_parser(verbs) -> None:
    p = verbs.add_parser("bench", help="time the benchmark suite on every engine (jit, interp, reference, kernel)",
                         description="Run the benchmark suite (the standard userspace-BPF micro-suite and "
                                     "packet programs) jitted, interpreted and as native C (built with the "
                                     "system compiler), check every result, and print ns per run, the "
                                     "ratios and the cold compile time split by phase.")
    p.add_argument("--filter", metavar="RE", help="only the benchmarks whose name matches this regex")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="also write a bar chart (log scale) as PNG")
    p.add_argument("--kernel", action="store_true",
                   help="add the kernel's own JIT (BPF_PROG_TEST_RUN with repeat, in a child process)")
    p.add_argument("--rounds", type=int, default=5, metavar="N", help="timing rounds per figure (median)")
    p.add_argument("--no-native", action="store_true", help="skip the native C builds (no C compiler needed)")
    p.set_defaults(func=cmd_bench)

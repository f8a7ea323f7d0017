"""``bpfjit verify``: the verifier's verdict on each program of one or more objects, in one table
with veristat's figures (instructions processed, states, time); for a rejection, the instruction,
its C source line (from .BTF.ext) and the kernel's message, and the kernel-style log."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from ..errors import BPFError, VerifierError
from ..object import load, program_names
from .common import _require_elf, add_load_options, parse_load_options


@dataclass
class Outcome:
    """One program's verdict and veristat's figures. The figures of a rejected program are None:
    a rejection does not report how much work the verifier did before it."""
    file: str
    program: str
    verdict: str  # success, failure (the verifier said no) or error (the object did not load)
    duration_us: int | None = None
    insns_processed: int | None = None
    states_total: int | None = None
    peak_states: int | None = None
    max_states_per_insn: int | None = None
    loops_widened: int | None = None  # loops checked once for all trips (then the figures are below the kernel's)
    message: str = ""  # the verifier's message (the kernel's wording), or why the object did not load
    insn_index: int | None = None  # the rejected instruction's index in the linked program
    insn: str = ""  # ... as the log prints it: "(79) r1 = *(u64 *)(r0 +0)"
    source_line: str = ""  # ... its C line from .BTF.ext, as the kernel prints it: "<text> @ <file>:<line>"
    log: str = ""


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("verify", help="verify every program of objects (like veristat): verdict, "
                                        "instructions processed, states, time; where and why a "
                                        "rejection happened (instruction, C line), and its log")
    p.add_argument("files", nargs="+", metavar="OBJECT")
    p.add_argument("-p", "--prog", help="only this program")
    p.add_argument("--log-level", type=int, choices=(1, 2), default=1,
                   help="log detail: 1 the path to the error, 2 every instruction's state")
    p.add_argument("--json", action="store_true", help="one JSON record per program")
    add_load_options(p)
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    outcomes = []
    for path in args.files:
        _require_elf(path)
        names = program_names(path)
        if args.prog is not None:
            if args.prog not in names:
                raise BPFError(f"{path}: no program {args.prog!r} (programs: {', '.join(names)})")
            names = [args.prog]
        outcomes += [_verify(path, name, args.log_level, parse_load_options(args)) for name in names]
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes]))
    else:
        _print_table(outcomes, show_log=args.prog is not None or args.log_level == 2)
    return 0 if all(o.verdict == "success" for o in outcomes) else 1


def _verify(path: str, name: str, log_level: int, options: dict) -> Outcome:
    short = path.rsplit("/", 1)[-1]
    try:
        program = load(path, programs=[name], verify=True, log_level=log_level, **options).programs[name]
    except VerifierError as error:
        return Outcome(short, name, "failure", message=error.message, insn_index=error.index, insn=error.insn,
                       source_line=error.line or "", log=error.log)
    except BPFError as error:
        return Outcome(short, name, "error", message=str(error))
    stats = program.verification.stats
    return Outcome(short, name, "success", round(stats.seconds * 1e6), stats.insns_processed, stats.states_total,
                   stats.peak_states, stats.max_states_per_insn, stats.loops_widened, log=program.verification.log)


_COLUMNS = (("File", "file"), ("Program", "program"), ("Verdict", "verdict"), ("Duration (us)", "duration_us"),
            ("Insns", "insns_processed"), ("States", "states_total"), ("Peak states", "peak_states"),
            ("Widened loops", "loops_widened"))
_NUMERIC = {"duration_us", "insns_processed", "states_total", "peak_states", "loops_widened"}


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _print_table(outcomes: list[Outcome], show_log: bool) -> None:
    rows = [[_cell(getattr(o, field)) for _, field in _COLUMNS] for o in outcomes]
    widths = [max(len(title), *(len(r[i]) for r in rows)) for i, (title, _) in enumerate(_COLUMNS)]
    numeric = [field in _NUMERIC for _, field in _COLUMNS]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric)).rstrip()

    print(line([title for title, _ in _COLUMNS]))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    for o in outcomes:
        if o.verdict == "failure":
            print(f"\n{o.program}: {_rejection(o)}")
        elif o.verdict == "error":
            print(f"\n{o.program}: {o.message}")
        if show_log and o.log:
            print(o.log if o.verdict == "failure" else f"\n{o.program}:\n{o.log}")


def _rejection(o: Outcome) -> str:
    """Where the verifier said no and why: the instruction, its C line (the kernel log's
    ``; <text> @ <file>:<line>``) and the message, one per line."""
    where = [f"; {o.source_line}"] if o.source_line else []
    if o.insn:
        where.append(f"{o.insn_index}: {o.insn}")
    return "\n".join([f"insn {o.insn_index}: {o.message}", *(f"  {w}" for w in where)])

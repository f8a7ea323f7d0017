"""The Linux kernel's own verifier selftests as a measure of bpfjit (issue 11).

The corpus (``../shared/kernel-verifier``, or ``$BPFJIT_KERNEL_VERIFIER_DIR``; its README says
how the kernel's test_loader reads it) holds the selftests of Linux 6.12 compiled to objects, with
each program's expected verdict, log messages and test-run return value. This module loads each
in-scope program into bpfjit, compares, and explains every disagreement, so that verifier work can
be measured against the kernel's own tests:

1. verdicts: the kernel's verdict (accepted / rejected) on what share of the in-scope entries;
2. messages: every expected message, in order, on what share of the rejected-by-the-kernel entries
   whose messages do not come from a raised log level;
3. return values: the expected value on both engines, on what share of the entries with a retval.

A load error that is not a verdict (a map type, helper or instruction bpfjit does not support, an
object its loader refuses) agrees with neither verdict: it counts against figure 1 under its own
cause, so that work on the runtime shows up as much as work on the verifier.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from bpfjit.runtime.context import program_type_for_section

import bpfjit
from bpfjit.errors import BPFError, DecodeError, JITError, MapError, ProgramError

REPO = pathlib.Path(__file__).resolve().parent.parent
DIR_VARIABLE = "BPFJIT_KERNEL_VERIFIER_DIR"
OUT_OF_SCOPE_NEEDS = frozenset({"prog_type_out_of_scope", "kfunc", "kernel_btf"})
TEST_DATA_LEN = 64  # test_loader's data_in: 64 zero bytes
POINTER_VALUE = 0xCAFE4A  # __retval(POINTER_VALUE): "a pointer, do not compare"
ENGINES = ("jit", "interp", "reference")  # bpfjit.program.ENGINES
INTERP_MAX_STEPS = 2_000_000  # the kernel's programs end in far fewer; a runaway loop raises

ACCEPTED, REJECTED, LOAD_ERROR = "accepted", "rejected", "load error"

# libbpf's prog_type names in the manifest, to bpfjit's program types.
KERNEL_TYPE_NAMES = {
    "SOCKET_FILTER": "socket", "SCHED_CLS": "tc", "SCHED_ACT": "action", "XDP": "xdp",
    "CGROUP_SKB": "cgroup_skb", "LWT_IN": "lwt_in", "LWT_OUT": "lwt_out", "LWT_XMIT": "lwt_xmit",
    "SK_SKB": "sk_skb", "RAW_TRACEPOINT": "raw_tp", "SYSCALL": "syscall", "TRACEPOINT": "tracepoint",
    "KPROBE": "kprobe", "PERF_EVENT": "perf_event",
}


def corpus_dir() -> pathlib.Path:
    """Where the corpus is: $BPFJIT_KERNEL_VERIFIER_DIR, else ../shared/kernel-verifier beside the
    checkout (tests go through conftest.kernel_verifier_dir(), which also skips when it is absent)."""
    return pathlib.Path(os.environ.get(DIR_VARIABLE) or REPO.parent / "shared" / "kernel-verifier")


# --- the manifest --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Entry:
    """One program of the corpus and what the kernel says about it (privileged run)."""

    file: str
    program: str
    section: str
    prog_type: str  # libbpf's, e.g. BPF_PROG_TYPE_SOCKET_FILTER
    expect: str | None  # "success", "failure", or None when only an unprivileged run is tested
    msgs: tuple[str, ...]
    retval: int | None
    needs: frozenset[str]
    map_init: dict[str, dict[str, Any]] | None
    helpers: tuple[str, ...]
    maps: dict[str, str]
    auxiliary: bool

    @property
    def key(self) -> str:
        return f"{self.file}:{self.program}"

    @property
    def in_scope(self) -> bool:
        return not self.auxiliary and self.expect is not None and not self.needs & OUT_OF_SCOPE_NEEDS

    @property
    def log_level_msgs(self) -> bool:
        """Its messages come from a log level above the default (level-2 state dumps, stats)."""
        return any(need.startswith("log_level") for need in self.needs)


def load_manifest(folder: pathlib.Path) -> list[Entry]:
    tests = json.loads((folder / "manifest.json").read_text())["tests"]
    return [Entry(t["file"], t["program"], t["section"], t["prog_type"], t["expect"], tuple(t["msgs"]),
                  t["retval"], frozenset(t["needs"]), t["map_init"], tuple(t["helpers"]), dict(t["maps"]),
                  bool(t["auxiliary"]))
            for t in tests]


def in_scope(entries: Iterable[Entry]) -> list[Entry]:
    return [e for e in entries if e.in_scope]


# --- loading one program -------------------------------------------------------------------------

def load_programs(path: pathlib.Path, names: Iterable[str]) -> bpfjit.Object:
    """The object with only these programs loaded and verified (its maps and data created as
    libbpf would)."""
    return bpfjit.load(path, programs=list(names), verify=True)


# --- outcomes ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Outcome:
    """What bpfjit did with a program: accepted, rejected (a verdict, with its log) or a load
    error that is no verdict (with the cause, e.g. "unsupported map type SOCKMAP")."""

    kind: str
    text: str = ""
    cause: str = ""


@functools.lru_cache(maxsize=1)
def helper_names(folder: pathlib.Path) -> dict[int, str]:
    """Helper id -> name, from the corpus' generated bpf_helper_defs.h (every helper of 6.12)."""
    text = (folder / "src" / "tools" / "lib" / "bpf" / "bpf_helper_defs.h").read_text()
    return {int(n): name for name, n in re.findall(r"\(\* const (bpf_\w+)\)\(.*\) = \(void \*\) (\d+);", text)}


_UNSUPPORTED_INSNS = {
    "legacy packet access (BPF_LD_ABS/IND) is not supported": "unsupported instruction LD_ABS/LD_IND",
    "kfunc calls are not supported": "unsupported kfunc call",
}


def classify(error: BPFError, helpers: dict[int, str]) -> Outcome:
    """A load failure as a verdict (the verifier or the structure check said no) or as a load
    error with its cause."""
    text = str(getattr(error, "log", "") or error)
    if isinstance(error, MapError) and "not supported" in text:
        kind = re.search(r"map type (\w+)", text)
        return Outcome(LOAD_ERROR, text, f"unsupported map type {kind.group(1) if kind else '?'}")
    if isinstance(error, JITError):
        return Outcome(LOAD_ERROR, text, "JIT error")
    if isinstance(error, ProgramError):
        missing = re.match(r"program of this type cannot use helper bpf_\w+#(\d+): bpfjit does not provide",
                           error.reason)
        if missing and int(missing.group(1)) in helpers:
            return Outcome(LOAD_ERROR, text, f"unsupported helper {helpers[int(missing.group(1))]}")
        if error.reason in _UNSUPPORTED_INSNS:
            return Outcome(LOAD_ERROR, text, _UNSUPPORTED_INSNS[error.reason])
    if isinstance(error, (ProgramError, DecodeError)) or any(
            c.__name__ == "VerifierError" for c in type(error).__mro__):
        return Outcome(REJECTED, text)
    return Outcome(LOAD_ERROR, text, "loader error: " + normalise(text.rsplit(": ", 1)[-1]))


def normalise(text: str) -> str:
    """A message with its numbers and quoted names generalised, to group messages that differ
    only in an instruction index, an offset or a register."""
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"^\S+ \(insn \d+\): ", "", text)  # the loader's "section+0x28 (insn 5): "
    return re.sub(r"\b0x[0-9a-f]+|\d+", "N", text)


def messages_match(log: str, msgs: Iterable[str]) -> bool:
    """test_loader's check: each message found after the previous match; {{...}} is a regex."""
    position = 0
    for msg in msgs:
        pattern = "".join(part if i % 2 else re.escape(part) for i, part in enumerate(re.split(r"\{\{(.*?)\}\}", msg)))
        found = re.compile(pattern).search(log, position)
        if found is None:
            return False
        position = found.end()
    return True


def load_entry(folder: pathlib.Path, entry: Entry) -> bpfjit.Object:
    """The entry's program, with the file's auxiliary programs loaded alongside as test_loader
    does (they are tail-call targets of program arrays initialised in the object)."""
    return load_programs(folder / "objs" / entry.file, [entry.program, *auxiliary_programs(folder)[entry.file]])


@functools.cache
def auxiliary_programs(folder: pathlib.Path) -> dict[str, tuple[str, ...]]:
    """File -> its auxiliary programs."""
    found: dict[str, tuple[str, ...]] = {}
    for entry in load_manifest(folder):
        found.setdefault(entry.file, ())
        if entry.auxiliary:
            found[entry.file] += (entry.program,)
    return found


_outcomes: dict[tuple[pathlib.Path, str], Outcome] = {}

# Entries whose verification takes too long for the default run (the Python verifier processes
# some 20,000 instructions a second on such a loop): they count as disagreements there and are checked by the
# slow test (-m slow).
SLOW_ENTRIES = {
    "verifier_search_pruning.bpf.o:short_loop1": "reaches the 1M processed-instruction limit (about 50 s)",
}


def load_outcome(folder: pathlib.Path, entry: Entry, slow: bool = False) -> Outcome:
    """What bpfjit does with the entry's program (worked out once per session)."""
    key = (folder, entry.key)
    if entry.key in SLOW_ENTRIES and not slow:
        return Outcome(LOAD_ERROR, cause=f"not verified in the default run: {SLOW_ENTRIES[entry.key]}")
    if key not in _outcomes:
        try:
            load_entry(folder, entry)
            _outcomes[key] = Outcome(ACCEPTED)
        except BPFError as error:
            _outcomes[key] = classify(error, helper_names(folder))
    return _outcomes[key]


# --- test runs -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunOutcome:
    engine: str
    retval: int | None  # r0 as a u32, or None when the run failed
    error: str = ""

    def agrees(self, expected: int) -> bool:
        if self.retval is None:
            return False
        return expected == POINTER_VALUE or self.retval == expected & 0xFFFF_FFFF


def run_entry(folder: pathlib.Path, entry: Entry, engine: str) -> RunOutcome:
    """One BPF_PROG_TEST_RUN as test_loader does it: a fresh load (maps empty, map_init applied),
    64 zero bytes of data, no ctx, one run."""
    try:
        obj = load_entry(folder, entry)
        for map_name, init in (entry.map_init or {}).items():
            obj.maps[map_name][init["key"]] = bytes.fromhex(init["value_hex"])
        program = obj.programs[entry.program]
        result = program.test_run(bytes(TEST_DATA_LEN), engine=engine,
                                  max_steps=INTERP_MAX_STEPS if engine == "reference" else None)
    except BPFError as error:
        return RunOutcome(engine, None, f"{type(error).__name__}: {error}")
    return RunOutcome(engine, result.retval & 0xFFFF_FFFF)


# --- the whole corpus ----------------------------------------------------------------------------

@dataclasses.dataclass
class EntryResult:
    entry: Entry
    outcome: Outcome
    runs: tuple[RunOutcome, ...] = ()

    @property
    def verdict_agrees(self) -> bool:
        expected = ACCEPTED if self.entry.expect == "success" else REJECTED
        return self.outcome.kind == expected

    @property
    def messages_agree(self) -> bool:
        return self.outcome.kind == REJECTED and messages_match(self.outcome.text, self.entry.msgs)

    @property
    def retval_agrees(self) -> bool:
        return (self.entry.retval is not None and len(self.runs) == len(ENGINES)
                and all(run.agrees(self.entry.retval) for run in self.runs))

    @property
    def cause(self) -> str | None:
        """Why bpfjit disagrees with the kernel on this entry (None: it agrees on every figure)."""
        entry, outcome = self.entry, self.outcome
        if outcome.kind == LOAD_ERROR:
            return outcome.cause
        if not self.verdict_agrees:
            if outcome.kind == ACCEPTED:
                return "missing verifier rule"
            return "wrong rejection: " + normalise(outcome.text.split(": ", 1)[-1])
        if entry.expect == "failure" and not entry.log_level_msgs and not self.messages_agree:
            return "different verifier message"
        if entry.retval is not None and not self.retval_agrees:
            errors = [run.error for run in self.runs if run.error]
            if errors:
                return "run error: " + normalise(errors[0].split(": ", 1)[0] + ": " + errors[0].split(": ")[-1])
            return "wrong retval"
        return None

    @property
    def program_type_supported(self) -> bool:
        """bpfjit maps the entry's section to the kernel's program type (not to a raw program)."""
        wanted = KERNEL_TYPE_NAMES.get(self.entry.prog_type.removeprefix("BPF_PROG_TYPE_"))
        return program_type_for_section(self.entry.section).name == wanted


@dataclasses.dataclass
class Report:
    results: list[EntryResult]

    def _share(self, hits: int, total: int) -> float:
        return round(100.0 * hits / total, 2) if total else 0.0

    @property
    def verdict_entries(self) -> list[EntryResult]:
        return self.results

    @property
    def message_entries(self) -> list[EntryResult]:
        return [r for r in self.results if r.entry.expect == "failure" and not r.entry.log_level_msgs]

    @property
    def retval_entries(self) -> list[EntryResult]:
        return [r for r in self.results if r.entry.retval is not None and r.entry.expect == "success"]

    def figures(self) -> dict[str, float]:
        verdicts, messages, retvals = self.verdict_entries, self.message_entries, self.retval_entries
        return {
            "verdicts": self._share(sum(r.verdict_agrees for r in verdicts), len(verdicts)),
            "messages": self._share(sum(r.messages_agree for r in messages), len(messages)),
            "retvals": self._share(sum(r.retval_agrees for r in retvals), len(retvals)),
        }

    def causes(self) -> list[tuple[str, int]]:
        """Disagreements grouped by cause, biggest first; unsupported program types first of all."""
        counts: Counter[str] = Counter()
        for r in self.results:
            cause = r.cause
            if cause is not None:
                counts["unsupported program type" if not r.program_type_supported else cause] += 1
        return counts.most_common()

    def summary(self) -> str:
        f = self.figures()
        return (f"kernel verifier corpus: verdicts {f['verdicts']}% of {len(self.verdict_entries)}, "
                f"messages {f['messages']}% of {len(self.message_entries)}, "
                f"retvals {f['retvals']}% of {len(self.retval_entries)} (both engines)")

    def as_json(self) -> dict[str, Any]:
        kinds = Counter(r.outcome.kind for r in self.results)
        return {
            "figures": self.figures(),
            "entries": {"in_scope": len(self.results), "messages": len(self.message_entries),
                        "retvals": len(self.retval_entries), "outcomes": dict(kinds),
                        "retvals_run": sum(1 for r in self.retval_entries if r.runs)},
            "causes": [{"cause": cause, "entries": n} for cause, n in self.causes()],
            "missing_rules": [{"message": msg, "entries": n} for msg, n in self.missing_rules()],
            "disagreements": [{"entry": r.entry.key, "expect": r.entry.expect, "cause": r.cause,
                               "bpfjit": r.outcome.kind, "text": r.outcome.text, "msgs": list(r.entry.msgs),
                               "retval": r.entry.retval,
                               "runs": [dataclasses.asdict(run) for run in r.runs]}
                              for r in self.results if r.cause is not None],
        }

    def missing_rules(self) -> list[tuple[str, int]]:
        """Entries the kernel rejects and bpfjit accepts, by the kernel's first expected message."""
        counts = Counter(normalise(r.entry.msgs[0]) if r.entry.msgs else "(no message given)"
                         for r in self.results if r.cause == "missing verifier rule")
        return counts.most_common()


def evaluate(folder: pathlib.Path, entries: Iterable[Entry]) -> Report:
    """Load every entry; run the ones both the kernel and bpfjit accept that have a retval."""
    results = []
    for entry in entries:
        outcome = load_outcome(folder, entry)
        result = EntryResult(entry, outcome)
        if outcome.kind == ACCEPTED and entry.expect == "success" and entry.retval is not None:
            result.runs = tuple(run_entry(folder, entry, engine) for engine in ENGINES)
        results.append(result)
    return Report(results)


@functools.cache
def corpus_report(folder: pathlib.Path) -> Report:
    """The report over the in-scope entries, computed once per test session."""
    return evaluate(folder, in_scope(load_manifest(folder)))

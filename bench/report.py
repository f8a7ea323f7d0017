"""The results as one table, as JSON, and as the numbers behind the plot."""
from __future__ import annotations

import dataclasses
import platform
from typing import Iterable

import llvmlite
import llvmlite.binding as llvm

from .measure import Row

VERIFY_BOUND_MS = 30  # issue 11: verifying a bench program takes at most this long


def machine() -> dict[str, object]:
    """The CPU (from py-cpuinfo) and the software the numbers were measured with."""
    import cpuinfo  # slow to import and to ask (about a second): only when reporting
    info = cpuinfo.get_cpu_info()
    return {"cpu": info.get("brand_raw", "unknown CPU"), "arch": info.get("arch", platform.machine()),
            "cores": info.get("count"), "hz": info.get("hz_advertised_friendly"),
            "python": platform.python_version(), "llvmlite": llvmlite.__version__,
            "llvm": ".".join(map(str, llvm.llvm_version_info))}


def _ns(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _ratio(value: float | None, suffix: str = "x") -> str:
    if value is None:
        return "-"
    return f"{value:.2f}{suffix}" if value < 100 else f"{value:,.0f}{suffix}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


COLUMNS = ["program", "jit ns", "native ns", "jit/native", "interp ns", "interp/jit", "reference ns", "reference/jit",
           "kernel ns",
           "jit/kernel", "load", "verify", "lower", "optimise", "codegen", "total ms",
           "cached"]


def table(rows: Iterable[Row], info: dict[str, object]) -> str:
    """One row per benchmark: ns per run per engine, the ratios, and the cold-compile split (ms)."""
    rows = list(rows)
    cells = [COLUMNS]
    for row in rows:
        cells.append([row.label, _ns(row.jit_ns), _ns(row.native_ns), _ratio(row.jit_over_native),
                      _ns(row.interp_ns), _ratio(row.interp_over_jit), _ns(row.reference_ns),
                      _ratio(row.reference_over_jit), _ns(row.kernel_ns),
                      _ratio(row.jit_over_kernel),
                      *(_compile_cell(row, phase)
                        for phase in ("load", "verify", "lower", "optimise", "codegen", "total")),
                      _ms(row.hit_compile_ms)])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    header = (f"CPU: {info['cpu']} ({info['arch']}, {info['cores']} logical cores, {info['hz']}); "
              f"Python {info['python']}, llvmlite {info['llvmlite']}, LLVM {info['llvm']}")
    notes = ["ns per run, median of rounds; interp: the native interpreter (engine=\"interp\"); interp/jit: its",
             "time / the JIT's; reference: the Python reference interpreter, on the smaller interpreter input,",
             "and reference/jit against the JIT on that input;",
             "compile: a cold load + compile in ms (verify = the verifier, with its structural checks and",
             "the ctx rewrite; codegen includes linking); cached: the compile when the object-code cache",
             "has the program."]
    return "\n".join([header, "", *lines, "", *notes, *_native_notes(rows), *_verifier_notes(rows),
                      *_kernel_notes(rows)]) + "\n"


def _compile_cell(row: Row, phase: str) -> str:
    """A phase of the cold compile in ms; a program the verifier rejects has no verify time (it
    was loaded unverified)."""
    if phase == "verify" and row.verifier_note:
        return "rejected"
    return _ms(getattr(row.compile, phase) if row.compile else None)


def _native_notes(rows: list[Row]) -> list[str]:
    """The programs without a native twin, named, so that their "-" is not read as a failure."""
    untwinned = [row.label for row in rows if row.group == "helper"]
    if not untwinned:
        return []
    return [f"native, {', '.join(untwinned)}: no C twin (helper programs: their maps and helpers have no host "
            "counterpart)"]


def _verifier_notes(rows: Iterable[Row]) -> list[str]:
    """The programs the verifier rejects, with its message, and those it takes longer than issue
    11's bound to accept."""
    notes = [f"verifier rejects {row.label}, run unverified: {row.verifier_note}" for row in rows if row.verifier_note]
    slow = [f"{row.label} {row.compile.verify:.1f} ms" for row in rows
            if row.compile is not None and not row.verifier_note and row.compile.verify > VERIFY_BOUND_MS]
    if slow:
        notes.append(f"verify over {VERIFY_BOUND_MS} ms (issue 11's bound per program): {', '.join(slow)}")
    return notes


def _kernel_notes(rows: Iterable[Row]) -> list[str]:
    """Why the kernel column is empty where it is: one line per reason, naming its programs."""
    by_reason: dict[str, list[str]] = {}
    for row in rows:
        if row.kernel_note:
            by_reason.setdefault(row.kernel_note, []).append(row.label)
    return [f"kernel, {', '.join(labels)}: {reason}" for reason, labels in by_reason.items()]


def as_json(rows: Iterable[Row], info: dict[str, object]) -> dict[str, object]:
    results = []
    for row in rows:
        entry = dataclasses.asdict(row)
        entry.update(label=row.label, jit_over_native=row.jit_over_native,
                     interp_over_jit=row.interp_over_jit, reference_over_jit=row.reference_over_jit,
                     jit_over_kernel=row.jit_over_kernel)
        if row.compile is not None:
            entry["compile"]["total"] = row.compile.total
        results.append(entry)
    return {"machine": info, "units": {"time": "ns per run", "compile": "ms"}, "results": results}


def plot_series(rows: list[Row]) -> tuple[list[str], dict[str, list[float | None]]]:
    """Bars per program: each engine's ns per run on the full input. The reference interpreter
    ran on a smaller input; its bar is projected to the full input with the JIT's own ratio
    between the two."""
    projected = [row.reference_ns * row.jit_ns / row.jit_small_ns
                 if row.reference_ns and row.jit_ns and row.jit_small_ns else None for row in rows]
    series = {"jit": [row.jit_ns for row in rows], "native (cc -O2)": [row.native_ns for row in rows],
              "interp (native interpreter)": [row.interp_ns for row in rows], "reference (projected)": projected}
    if any(row.kernel_ns for row in rows):
        series["kernel JIT"] = [row.kernel_ns for row in rows]
    return [row.label for row in rows], series

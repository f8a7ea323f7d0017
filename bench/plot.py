"""The benchmark chart behind ``bpfjit bench --plot``: ns per run of every benchmark on each engine.

One group of bars per program, one bar per engine, on a log scale: the timings span nine or ten
orders of magnitude (an interpreted loop against a jitted one), so the y axis is log10, labelled
in time units. matplotlib draws it, with the Agg backend (no display needed). It is an optional
dependency (the ``bench`` extra), imported only when a chart is drawn: ``bpfjit bench`` without
``--plot``, and everything else in bpfjit, runs without it.
"""
from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

from bpfjit.errors import BPFError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'bpfjit[bench]'"
# Time units for the y labels, largest first: a bar reads "2 µs", not "2k".
UNITS = ((1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns"))


def time_label(ns: float) -> str:
    """A duration in ns as a short label in the largest unit it reaches: 1500 -> "1.5 µs"."""
    scale, unit = next(((s, u) for s, u in UNITS if ns >= s), UNITS[-1])
    return f"{ns / scale:g} {unit}"


def _decades(values: list[float]) -> tuple[float, float]:
    """The y limits, whole powers of ten: the smallest bar at least 0.3 decade tall (a 1.02 ns bar
    on an axis starting at 1 ns would be invisible), the tallest with room above it."""
    lo = math.floor(math.log10(min(values)) - 0.3)
    hi = math.floor(math.log10(max(values)) + 1e-9) + 1
    return 10.0 ** lo, 10.0 ** hi


def require_matplotlib() -> None:
    """Raise BPFError, saying how to install it, when matplotlib cannot be imported: the CLI calls
    this before a long bench run whose chart could not be drawn."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401 - what bar_chart draws with
        import matplotlib.figure  # noqa: F401
        import matplotlib.ticker  # noqa: F401
    except ImportError:
        raise BPFError(f"the benchmark chart needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def bar_chart(title: str, groups: list[str], series: dict[str, list[float | None]]) -> Figure:
    """The chart as a matplotlib Figure (on an Agg canvas), to inspect or to save.

    ``series`` maps an engine to its ns per run for each group, None where that engine did not
    run the program: no bar there, and the engine keeps its legend entry, so a missing bar reads
    as missing. Raises BPFError, saying how to install it, when matplotlib is missing.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    values = [v for row in series.values() for v in row if v is not None]
    if not values:
        raise BPFError("the benchmark chart has nothing to draw: no engine timed any program")
    figure = Figure(figsize=(12, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    width = 0.8 / len(series)
    for i, (engine, row) in enumerate(series.items()):
        present = [(g + (i - (len(series) - 1) / 2) * width, v) for g, v in enumerate(row) if v is not None]
        axes.bar([x for x, _ in present], [v for _, v in present], width * 0.9, label=engine, zorder=2)
    axes.set_yscale("log")
    axes.set_ylim(*_decades(values))
    axes.yaxis.set_major_locator(LogLocator(base=10, numticks=30))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda ns, _: time_label(ns)))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.grid(axis="y", which="major", color="0.85", zorder=0)
    axes.set_axisbelow(True)
    axes.set_ylabel("time per run (log scale)")
    axes.set_xticks(range(len(groups)))
    axes.set_xticklabels(groups, rotation=35, ha="right", rotation_mode="anchor", fontsize=9)
    axes.set_xlim(-0.6, len(groups) - 0.4)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(series), frameon=False)
    axes.set_title(title, pad=28)
    return figure


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes, rendered by Agg."""
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def bar_chart_png(title: str, groups: list[str], series: dict[str, list[float | None]]) -> bytes:
    """bar_chart() rendered as PNG bytes: what ``bpfjit bench --plot`` writes."""
    return png(bar_chart(title, groups, series))

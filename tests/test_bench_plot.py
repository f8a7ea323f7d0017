"""bpfjit.bench.plot: the chart behind ``bpfjit bench --plot``, drawn by matplotlib.

The Figure is inspected before it is saved (bars per engine, their heights and order, the log
axis and its labels), the PNG is checked by its signature and IHDR and decoded by matplotlib,
and a missing matplotlib is simulated by blocking its import. Expected values come from the
inputs and from arithmetic done here, never from the code under test.
"""
from __future__ import annotations

import io
import struct
import subprocess
import sys

import pytest

from bpfjit.bench import plot
from bpfjit.errors import BPFError

GROUPS = ["simple", "prime", "xdp_parse"]
SERIES = {"jit": [1.02, 2.0e5, 2.5], "native (cc -O2)": [1.0, 3.0e5, None],
          "reference (projected)": [1.6e4, 1.4e9, 9.0e4], "kernel JIT": [None, None, 7.0]}


def bars(figure) -> dict[str, list[tuple[float, float]]]:
    """engine -> (x centre, height) of each of its bars, left to right."""
    (axes,) = figure.axes
    return {container.get_label(): sorted((p.get_x() + p.get_width() / 2, p.get_height()) for p in container.patches)
            for container in axes.containers}


def test_one_bar_per_present_value_at_its_height():
    found = bars(plot.bar_chart("t", GROUPS, SERIES))
    assert list(found) == list(SERIES)
    for engine, row in SERIES.items():
        assert [h for _, h in found[engine]] == [v for v in row if v is not None], engine
    assert found["kernel JIT"] == [(pytest.approx(2, abs=0.4), 7.0)]  # in the last group only


def test_bars_sit_in_their_group_in_engine_order():
    found = bars(plot.bar_chart("t", GROUPS, SERIES))
    for group in range(len(GROUPS)):
        # Each engine's bar for this group, in series order, nearest the group's tick.
        xs = [x for engine in SERIES for x, _ in found[engine] if abs(x - group) < 0.5]
        assert xs == sorted(xs) and len(xs) == sum(row[group] is not None for row in SERIES.values())
    # Groups do not overlap: the last bar of a group is left of the first of the next.
    every = sorted(x for points in found.values() for x, _ in points)
    assert every[0] > -0.5 and every[-1] < len(GROUPS) - 0.5


def test_legend_names_every_engine_even_one_without_bars():
    figure = plot.bar_chart("t", ["a", "b"], {"jit": [5.0, 50.0], "kernel JIT": [None, None]})
    (axes,) = figure.axes
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["jit", "kernel JIT"]
    assert bars(figure)["kernel JIT"] == []


def test_log_axis_in_whole_decades_with_room_for_the_smallest_bar():
    figure = plot.bar_chart("t", ["a", "b"], {"jit": [1.02, 1e6]})
    (axes,) = figure.axes
    assert axes.get_yscale() == "log"
    # 1.02 would be a bar of no height on an axis starting at 1: the axis starts a decade lower.
    assert axes.get_ylim() == pytest.approx((0.1, 1e7))
    axes.set_ylim(10, 1e4)  # every decade label between, in time units
    figure.canvas.draw()
    labels = {round(tick.get_loc()): tick.label1.get_text() for tick in axes.yaxis.get_major_ticks()
              if 10 <= tick.get_loc() <= 1e4}
    assert labels == {10: "10 ns", 100: "100 ns", 1000: "1 µs", 10000: "10 µs"}


@pytest.mark.parametrize("ns, label", [(0.1, "0.1 ns"), (1, "1 ns"), (999, "999 ns"), (1000, "1 µs"),
                                       (1500, "1.5 µs"), (1e6, "1 ms"), (1e9, "1 s"), (1e10, "10 s")])
def test_time_labels(ns, label):
    assert plot.time_label(ns) == label


def test_title_and_program_names():
    figure = plot.bar_chart("bench on Some CPU", GROUPS, SERIES)
    (axes,) = figure.axes
    assert axes.get_title() == "bench on Some CPU"
    assert [t.get_text() for t in axes.get_xticklabels()] == GROUPS


def test_png_is_valid_and_the_chart_is_drawn():
    data = plot.bar_chart_png("t", GROUPS, SERIES)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 650)
    import matplotlib.image
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (650, 1200)
    # The default colour of the first engine (matplotlib's C0, #1f77b4) is on the image: its bars.
    blue = (abs(pixels[..., 0] - 0x1F / 255) < 0.01) & (abs(pixels[..., 1] - 0x77 / 255) < 0.01) & \
        (abs(pixels[..., 2] - 0xB4 / 255) < 0.01)
    assert blue.sum() > 500


def test_nothing_to_draw_is_a_clean_error():
    with pytest.raises(BPFError, match="nothing to draw"):
        plot.bar_chart("t", ["a"], {"jit": [None]})


def block_matplotlib(monkeypatch) -> None:
    """Make every matplotlib import fail, as if it were not installed (a None entry in
    sys.modules makes the import raise ImportError, even for modules already imported)."""
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


@pytest.mark.parametrize("call", [plot.require_matplotlib, lambda: plot.bar_chart_png("t", GROUPS, SERIES)])
def test_missing_matplotlib_says_how_to_install_it(monkeypatch, call):
    block_matplotlib(monkeypatch)
    with pytest.raises(BPFError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "matplotlib" in message and "pip install 'bpfjit[bench]'" in message


def test_the_bench_command_imports_matplotlib_only_for_a_plot():
    """The CLI and the bench modules import without matplotlib; it loads once a chart is drawn."""
    check = ("import sys; import bpfjit.cli, bpfjit.cli.bench, bpfjit.bench.plot, bpfjit.bench.report; "
             "print('matplotlib' in sys.modules); "
             "bpfjit.bench.plot.bar_chart('t', ['a'], {'jit': [1.0]}); print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]

"""bpfjit.bench.plot: the stdlib-only PNG bar chart behind ``bpfjit bench --plot``.

The PNG is decoded here with zlib and struct alone (signature, every chunk's CRC, IHDR, IDAT with
filter 0), independently of the writer. Bars, legend swatches and labels are then found in the
pixels: a bar is a connected blob of a series colour standing on the x axis, a legend swatch is a
blob of that colour anywhere else. Expected heights come from log10 arithmetic on the inputs,
never from the code under test.
"""
from __future__ import annotations

import collections
import math
import re
import struct
import zlib

import pytest

from bpfjit.bench import plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit RGB, filter-0, non-interlaced PNG."""
    assert data[:8] == PNG_SIGNATURE
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r} chunk"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and chunks[-1][1] == b""
    assert set(kinds) == {b"IHDR", b"IDAT", b"IEND"}
    width, height, depth, colour_type, compression, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour_type, compression, filt, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for k, body in chunks if k == b"IDAT"))
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    rows = [raw[y * stride:(y + 1) * stride] for y in range(height)]
    assert all(row[0] == 0 for row in rows), "every row must use filter type 0"
    return width, height, [row[1:] for row in rows]


def runs(rows: list[bytes], colour) -> list[tuple[int, int, int]]:
    """Horizontal runs (y, x0, x1), x1 inclusive, of pixels exactly of colour.

    Each channel is compared in C (bytes.translate to a 0/1 mask, the three masks ANDed as
    integers), so scanning a whole image stays fast.
    """
    found, tables = [], [bytes(int(i == value) for i in range(256)) for value in colour]
    for y, row in enumerate(rows):
        mask = -1
        for channel, table in enumerate(tables):
            mask &= int.from_bytes(row[channel::3].translate(table), "big")
        hits = mask.to_bytes(len(row) // 3, "big")
        found += [(y, m.start(), m.end() - 1) for m in re.finditer(b"\x01+", hits)]
    return found


def pixels(rows: list[bytes], colour) -> set[tuple[int, int]]:
    """The (x, y) of every pixel exactly of colour."""
    return {(x, y) for y, x0, x1 in runs(rows, colour) for x in range(x0, x1 + 1)}


def blobs(colour_runs: list[tuple[int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x0, y0, x1, y1), inclusive, of the 4-connected components of the runs."""
    todo, boxes = set(colour_runs), []
    by_row = collections.defaultdict(list)
    for run in colour_runs:
        by_row[run[0]].append(run)
    while todo:
        stack = [todo.pop()]
        box = [math.inf, math.inf, -1, -1]
        while stack:
            y, x0, x1 = stack.pop()
            box = [min(box[0], x0), min(box[1], y), max(box[2], x1), max(box[3], y)]
            for other in by_row[y - 1] + by_row[y + 1]:
                if other in todo and other[1] <= x1 and x0 <= other[2]:
                    todo.remove(other)
                    stack.append(other)
        boxes.append(tuple(box))
    return sorted(boxes)


def chart(groups, series, width=640, height=360, title="t"):
    """Render and decode; return (rows, bars, swatches): per series name, blobs sorted by x."""
    w, h, rows = decode_png(plot.bar_chart_png(title, groups, series, width=width, height=height))
    assert (w, h) == (width, height)
    boxes = {name: blobs(runs(rows, c)) for name, c in zip(series, plot.COLOURS)}
    # Bars stand on the x axis, so the most common blob bottom is the axis; the rest are swatches.
    baseline = collections.Counter(b[3] for bs in boxes.values() for b in bs).most_common(1)[0][0]
    bars = {n: [b for b in bs if b[3] == baseline] for n, bs in boxes.items()}
    swatches = {n: [b for b in bs if b[3] != baseline] for n, bs in boxes.items()}
    return rows, bars, swatches


def height_of(box) -> int:
    return box[3] - box[1] + 1


def pixel(rows, x, y) -> tuple[int, int, int]:
    return tuple(rows[y][3 * x:3 * x + 3])


def test_png_is_well_formed_with_requested_size():
    data = plot.bar_chart_png("Sizes", ["a", "b"], {"jit": [3.0, 4e6]}, width=517, height=283)
    width, height, rows = decode_png(data)
    assert (width, height) == (517, 283)
    assert len(rows) == 283 and all(len(r) == 3 * 517 for r in rows)
    # Not blank: white background with some ink.
    assert len({bytes(r) for r in rows}) > 10


def test_bar_drawn_for_each_value_and_none_for_missing():
    series = {"a": [10.0, None, 1000.0], "b": [None, 100.0, 100.0]}
    _, bars, swatches = chart(["g0", "g1", "g2"], series)
    assert len(bars["a"]) == 2 and len(bars["b"]) == 2
    (a0, a2), (b1, b2) = bars["a"], bars["b"]
    # Left to right: a in group 0, b in group 1, then a before b in group 2.
    assert a0[2] < b1[0] and b1[2] < a2[0] and a2[2] < b2[0]
    # The group-1 gap between a0 and a2 is wider than the a2-b2 gap inside group 2.
    assert a2[0] - a0[2] > 3 * (b2[0] - a2[2])
    assert len(swatches["a"]) == 1 and len(swatches["b"]) == 1


def test_bar_heights_follow_log10():
    values = [10.0, 10 ** 1.5, 100.0, 1000.0, 1e5]
    _, bars, _ = chart(list("abcde"), {"jit": values}, height=420)
    h = [height_of(b) for b in bars["jit"]]
    assert len(h) == 5
    decade = (h[3] - h[0]) / 2                 # pixels per power of ten, from 10 -> 1000
    assert decade > 20
    assert abs((h[4] - h[3]) - 2 * decade) <= 2        # 1000 -> 1e5 is two decades too
    assert abs((h[1] - h[0]) - decade / 2) <= 2        # 10**1.5 sits halfway from 10 to 100
    assert abs((h[2] - h[0]) - decade) <= 2
    # The axis starts at a power of ten: the bar for 10 is a whole number of decades tall.
    floors = h[0] / decade
    assert floors >= 0.9 and abs(floors - round(floors)) < 0.05
    # Far from the linear-scale ratio (1000 / 10 = 100).
    assert h[3] / h[0] < 10


def test_a_value_just_above_a_power_of_ten_still_has_a_bar():
    # 1.02 ns (the simplest program) on an axis starting at 1 would be a bar of no height.
    _, bars, _ = chart(["a", "b"], {"jit": [1.02, 1e6]}, height=420)
    small, large = (height_of(b) for b in bars["jit"])
    decade = large / (6 - (-1))  # the axis starts a decade below 1: at 0.1
    assert abs(small - decade * (1 + 0.0086)) <= 2 and small > 20


def test_gridlines_at_powers_of_ten_only():
    rows, bars, _ = chart(["a", "b"], {"jit": [1000.0, 10 ** 2.5]}, height=400)
    (b0, b1) = bars["jit"]
    gap_x = (b0[2] + b1[0]) // 2                # a column between the two bars
    at_1000 = [pixel(rows, gap_x, b0[1] + d) for d in (-1, 0, 1)]
    assert any(p != plot.WHITE for p in at_1000), "no gridline level with the top of the 1000 bar"
    at_316 = [pixel(rows, gap_x, b1[1] + d) for d in (-1, 0, 1)]
    assert all(p == plot.WHITE for p in at_316), "gridline at 10**2.5, which is no power of ten"


def test_legend_has_every_series_even_without_bars():
    series = {"jit": [5.0, 50.0], "native": [4.0, 40.0], "interp": [500.0, 5e6], "kernel": [None, None]}
    _, bars, swatches = chart(["x", "y"], series)
    assert [len(bars[n]) for n in series] == [2, 2, 2, 0]
    assert all(len(swatches[n]) == 1 for n in series)
    # The swatches are stacked in series order.
    tops = [swatches[n][0][1] for n in series]
    assert tops == sorted(tops) and len(set(tops)) == 4


def test_series_colours_are_distinct_and_not_chrome():
    assert len(set(plot.COLOURS)) == len(plot.COLOURS) >= 4
    assert not set(plot.COLOURS) & {plot.WHITE, plot.BLACK, plot.GRID, plot.TEXT}


def test_title_is_centred_at_the_top():
    width = 700
    data = plot.bar_chart_png("Centred Title", ["a"], {"s": [10.0]}, width=width, height=400)
    _, _, rows = decode_png(data)
    ink = [x for x, _ in pixels(rows[:40], plot.BLACK)]
    assert ink, "no title drawn"
    assert abs(min(ink) - (width - 1 - max(ink))) <= 3
    _, _, rows = decode_png(plot.bar_chart_png("", ["a"], {"s": [10.0]}, width=width, height=400))
    assert not pixels(rows[:40], plot.BLACK)


def label_clusters(rows, bars):
    """Group-label ink under the x axis, right of the y axis (which keeps the tick labels out):
    (axis_x, bands), a band being one text line as a list of (x0, x1) column runs."""
    bottom = max(b[3] for bs in bars.values() for b in bs) + 1        # the axis row
    axis_x = min(x0 for y, x0, _ in runs(rows, plot.BLACK) if y == bottom)
    ink = {(x, y) for x, y in pixels(rows[bottom + 1:], plot.TEXT) if x > axis_x}
    bands = []
    for y in sorted({y for _, y in ink}):
        if bands and y == bands[-1][-1] + 1:
            bands[-1].append(y)
        else:
            bands.append([y])
    result = []
    for band in bands:
        cols = sorted({x for x, y in ink if y in band})
        clusters = [[cols[0], cols[0]]]
        for x in cols[1:]:
            if x - clusters[-1][1] > 4:         # glyphs of "M" sit 1-2 px apart; labels >= 6
                clusters.append([x, x])
            clusters[-1][1] = x
        result.append([tuple(c) for c in clusters])
    return axis_x, result


@pytest.mark.parametrize("name, lines", [("MM", 1), ("MMMMMMMMMMMMM", 2)])
def test_group_labels_sit_under_their_groups_without_overlap(name, lines):
    groups = [name] * 8
    rows, bars, _ = chart(groups, {"jit": [10.0 ** (i + 1) for i in range(8)]}, width=900, height=400)
    axis_x, bands = label_clusters(rows, bars)
    assert len(bands) == lines
    assert sum(len(b) for b in bands) == 8, "labels overlap (their ink merged)"
    labels = sorted(c for band in bands for c in band)
    bar_centres = [(b[0] + b[2]) / 2 for b in bars["jit"]]
    # Each label is centred under its group's bar; a first label that reaches left of the y axis
    # is cut there by label_clusters, so only the uncut ones are compared.
    uncut = [(x0, x1, bc) for (x0, x1), bc in zip(labels, bar_centres) if x0 > axis_x + 1]
    assert len(uncut) >= 7
    assert all(abs((x0 + x1) / 2 - bc) <= 3 for x0, x1, bc in uncut)


def test_font_covers_the_needed_characters_with_distinct_glyphs():
    needed = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" "_-.,:()/%x")
    glyphs = [plot.FONT[ch] for ch in needed]
    assert all(any(g) for g in glyphs), "a needed glyph is blank"
    assert len(set(glyphs)) == len(set(needed)), "two characters share a glyph"
    assert not any(plot.FONT[" "])
    assert all(len(g) == 8 and max(g) < 32 for g in plot.FONT.values())


@pytest.mark.parametrize("k, label", [(0, "1"), (1, "10"), (2, "100"), (3, "1k"), (5, "100k"),
                                      (6, "1M"), (8, "100M"), (9, "1G"), (-1, "0.1")])
def test_power_labels(k, label):
    assert plot._power_label(k) == label


@pytest.mark.parametrize("groups, series, match", [
    ([], {"jit": []}, "at least one group"),
    (["a", "b"], {"jit": [1.0]}, "has 1 values for 2 groups"),
    (["a"], {"jit": [0.0]}, "positive finite"),
    (["a"], {"jit": [-5.0]}, "positive finite"),
    (["a"], {"jit": [math.nan]}, "positive finite"),
    (["a"], {"jit": [math.inf]}, "positive finite"),
    (["a"], {"jit": ["3"]}, "positive finite"),
    (["a", "b"], {"jit": [None, None], "kernel": [None, None]}, "no values"),
    (["a"], {}, "no values"),
    (["a"], {f"s{i}": [1.0] for i in range(len(plot.COLOURS) + 1)}, "at most"),
])
def test_bad_input_raises_value_error(groups, series, match):
    with pytest.raises(ValueError, match=match):
        plot.bar_chart_png("t", groups, series)


def test_too_small_raises_value_error():
    with pytest.raises(ValueError, match="too small"):
        plot.bar_chart_png("t", ["a", "b", "c"], {"jit": [1.0, 2.0, 3.0]}, width=120, height=80)

"""A grouped bar chart on a log scale, written as a PNG with the standard library alone.

``bpfjit bench --plot FILE.png`` draws the nanoseconds per run of every benchmark for each engine.
The timings span eight or nine orders of magnitude (an interpreted loop against a JIT-compiled
one), so the y axis is log10. The project takes no plotting dependency for one picture: this
module rasterises the bars, gridlines and text itself, with a 5x7 bitmap font (plus a descender
row) drawn by hand below, and encodes the pixels as an 8-bit RGB PNG with zlib.
"""
from __future__ import annotations

import math
import numbers
import struct
import zlib

Colour = tuple[int, int, int]
WHITE, BLACK, GRID, TEXT = (255, 255, 255), (0, 0, 0), (215, 215, 215), (40, 40, 40)
# One fixed colour per series, in order: readable on white and distinct from the greys above.
COLOURS: tuple[Colour, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (90, 90, 160))

# Each glyph is 8 rows of 5 pixels, as hex bytes whose bit 4 is the leftmost pixel; row 7 holds
# descenders only, so glyphs without one list 7 rows. Unknown characters draw as "?".
_GLYPHS = {
    " ": "00000000000000", "?": "0E110102040004", "_": "000000000000001F",
    "-": "0000001F000000", ".": "00000000000C0C", ",": "00000000000C0408",
    ":": "000C0C000C0C00", "(": "02040808080402", ")": "08040202020408",
    "/": "00010204081000", "%": "18190204081303", "+": "0004041F040400",
    "0": "0E11131519110E", "1": "040C040404040E",
    "2": "0E11010204081F", "3": "1F02040201110E", "4": "02060A121F0202",
    "5": "1F101E0101110E", "6": "0608101E11110E", "7": "1F010204080808",
    "8": "0E11110E11110E", "9": "0E11110F01020C",
    "A": "0E11111F111111", "B": "1E11111E11111E", "C": "0E11101010110E",
    "D": "1C12111111121C", "E": "1F10101E10101F", "F": "1F10101E101010",
    "G": "0E11101711110F", "H": "1111111F111111", "I": "0E04040404040E",
    "J": "0702020202120C", "K": "11121418141211", "L": "1010101010101F",
    "M": "111B1515111111", "N": "11111915131111", "O": "0E11111111110E",
    "P": "1E11111E101010", "Q": "0E11111115120D", "R": "1E11111E141211",
    "S": "0F10100E01011E", "T": "1F040404040404", "U": "1111111111110E",
    "V": "11111111110A04", "W": "1111111515150A", "X": "11110A040A1111",
    "Y": "1111110A040404", "Z": "1F01020408101F",
    "a": "00000E010F110F", "b": "1010161911111E",
    "c": "00000E1010110E", "d": "01010D1311110F", "e": "00000E111F100E",
    "f": "0609081C080808", "g": "00000F11110F010E", "h": "10101619111111",
    "i": "04000C0404040E", "j": "020006020202120C", "k": "10101214181412",
    "l": "0C04040404040E", "m": "00001A15151515", "n": "00001619111111",
    "o": "00000E1111110E", "p": "00001E11111E1010", "q": "00000F11110F0101",
    "r": "00001619101010", "s": "00000F100E011E", "t": "08081C08080906",
    "u": "0000111111130D", "v": "00001111110A04", "w": "0000111115150A",
    "x": "0000110A040A11", "y": "00001111110F010E", "z": "00001F0204081F",
}
FONT: dict[str, tuple[int, ...]] = {
    ch: tuple(bytes.fromhex(rows.ljust(16, "0"))) for ch, rows in _GLYPHS.items()}
GLYPH_W, GLYPH_H, ADVANCE, LINE = 5, 8, 6, 10   # pixels at scale 1


class Canvas:
    """An RGB raster that clips every write, so layout mistakes cost pixels, not exceptions."""

    def __init__(self, width: int, height: int, background: Colour = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def fill(self, x0: int, y0: int, x1: int, y1: int, colour: Colour) -> None:
        """Fill the half-open rectangle [x0, x1) x [y0, y1)."""
        x0, x1 = max(0, x0), min(self.width, x1)
        if x0 >= x1:
            return
        row = bytes(colour) * (x1 - x0)
        for y in range(max(0, y0), min(self.height, y1)):
            start = (y * self.width + x0) * 3
            self.pixels[start:start + len(row)] = row

    def text(self, x: int, y: int, s: str, colour: Colour = TEXT, scale: int = 1) -> None:
        """Draw s with its top-left corner at (x, y)."""
        for i, ch in enumerate(s):
            for r, bits in enumerate(FONT.get(ch, FONT["?"])):
                for c in range(GLYPH_W):
                    if bits & (0x10 >> c):
                        px, py = x + (i * ADVANCE + c) * scale, y + r * scale
                        self.fill(px, py, px + scale, py + scale, colour)

    def png(self) -> bytes:
        """Encode as 8-bit RGB PNG: filter byte 0 on every row, one zlib IDAT."""
        stride = self.width * 3
        raw = b"".join(b"\x00" + self.pixels[y * stride:(y + 1) * stride] for y in range(self.height))
        ihdr = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
                + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_width(s: str, scale: int = 1) -> int:
    """Width in pixels of s drawn by Canvas.text, for centring and fitting before drawing."""
    return max(0, len(s) * ADVANCE - 1) * scale


def _power_label(k: int) -> str:
    """10**k as a short label: 1, 10, 100, 1k ... 100G, then 1e12; 0.1, 0.01, then 1e-3."""
    if k < 0:
        return "0." + "0" * (-k - 1) + "1" if k >= -2 else f"1e{k}"
    if k >= 12:
        return f"1e{k}"
    return "1" + "0" * (k % 3) + ("", "k", "M", "G")[k // 3]


def _validate(groups: list[str], series: dict[str, list[float | None]]) -> list[float]:
    """Return every present value, or raise ValueError saying what is wrong with the input."""
    if not groups:
        raise ValueError("bar chart needs at least one group")
    if len(series) > len(COLOURS):
        raise ValueError(f"bar chart has colours for at most {len(COLOURS)} series, got {len(series)}")
    values = []
    for name, row in series.items():
        if len(row) != len(groups):
            raise ValueError(f"series {name!r} has {len(row)} values for {len(groups)} groups")
        for group, v in zip(groups, row):
            if v is not None and not (isinstance(v, numbers.Real) and math.isfinite(v) and v > 0):
                raise ValueError(f"series {name!r}, group {group!r}: {v!r} is not a positive finite "
                                 "number (a log scale needs one; use None for a missing value)")
            if v is not None:
                values.append(float(v))
    if not values:
        raise ValueError("bar chart has no values to draw (every value is None)")
    return values


def _decades(values: list[float]) -> tuple[int, int]:
    """Powers of ten (lo, hi) for the axis: the smallest bar is at least 0.3 decade tall (a bar of
    1.02 on an axis starting at 1 would be invisible), the largest has room."""
    lo = math.floor(math.log10(min(values)) - 0.3)
    return lo, math.floor(math.log10(max(values)) + 1e-9) + 1


def _group_labels(groups: list[str], slot: float) -> tuple[int, list[str], int]:
    """(scale, labels, lines): the largest text that fits each group's slot, staggering alternate
    labels on two lines before shrinking, and cutting labels short only as a last resort."""
    longest = max(text_width(g) for g in groups)
    for scale, lines in ((2, 1), (2, 2), (1, 1), (1, 2)):
        if longest * scale <= slot * lines - 6:
            return scale, list(groups), lines
    keep = max(1, int((2 * slot - 6) // ADVANCE))
    return 1, [g if len(g) <= keep else g[:max(1, keep - 1)] + "." for g in groups], 2


def bar_chart_png(title: str, groups: list[str], series: dict[str, list[float | None]],
                  ylabel: str = "ns per run (log scale)", width: int = 1200, height: int = 600) -> bytes:
    """Draw a grouped bar chart with a log10 y axis and return it as PNG bytes.

    ``series`` maps a name (an engine) to one value per group; None draws no bar, for a program
    that engine could not run. Every series keeps a legend entry, so a missing bar reads as missing.
    Raises ValueError for no groups, a series of the wrong length, no values, a value that is not
    positive and finite (log10 has no place for it), or a size too small to lay out.
    """
    lo, hi = _decades(_validate(groups, series))
    canvas = Canvas(width, height)
    ticks = [(k, _power_label(k)) for k in range(lo, hi + 1)]
    left = 12 + max(text_width(label, 2) for _, label in ticks)
    legend_w = 32 + 12 + max(text_width(name, 2) for name in series)
    right, top = width - legend_w - 24, 76
    slot = (right - left) / len(groups)
    scale, labels, lines = _group_labels(groups, slot)
    bottom = height - 12 - lines * (LINE * scale + 4)
    if right - left < 10 * len(groups) or bottom - top < 40:
        raise ValueError(f"a {width}x{height} chart is too small for {len(groups)} groups")

    def y_of(value: float) -> int:
        return round(bottom - (math.log10(value) - lo) / (hi - lo) * (bottom - top))

    tscale = 3 if text_width(title, 3) <= width - 16 else 2
    canvas.text((width - text_width(title, tscale)) // 2, 10, title, BLACK, tscale)
    canvas.text(8, top - 30, ylabel, TEXT, 2)
    for k, label in ticks:
        y = y_of(10.0 ** k)
        canvas.fill(left, y, right, y + 1, GRID)
        canvas.text(left - 8 - text_width(label, 2), y - 7, label, TEXT, 2)
    bar_w = max(1, int(slot * 0.8 / len(series)))
    for g, label in enumerate(labels):
        x0 = round(left + g * slot + (slot - bar_w * len(series)) / 2)
        for s, row in enumerate(series.values()):
            if row[g] is not None:
                inset = 1 if bar_w > 3 else 0
                canvas.fill(x0 + s * bar_w + inset, min(y_of(row[g]), bottom - 1),
                            x0 + (s + 1) * bar_w - inset, bottom, COLOURS[s])
        line = g % lines
        centre = left + (g + 0.5) * slot
        canvas.text(round(centre - text_width(label, scale) / 2),
                    bottom + 8 + line * (LINE * scale + 4), label, TEXT, scale)
    canvas.fill(left, top, left + 1, bottom + 1, BLACK)
    canvas.fill(left, bottom, right, bottom + 1, BLACK)
    _legend(canvas, right + 16, top, legend_w, list(series))
    return canvas.png()


def _legend(canvas: Canvas, x: int, y: int, w: int, names: list[str]) -> None:
    """A framed box listing each series name beside a swatch of its colour."""
    h = 10 + len(names) * 24
    canvas.fill(x, y, x + w, y + h, GRID)
    canvas.fill(x + 1, y + 1, x + w - 1, y + h - 1, WHITE)
    for i, name in enumerate(names):
        row = y + 8 + i * 24
        canvas.fill(x + 10, row, x + 24, row + 14, COLOURS[i])
        canvas.text(x + 32, row, name, TEXT, 2)

"""The C source line of each instruction of a loaded program, from ``.BTF.ext`` line info.

The verifier works on the linked program (a section's program with its ``.text`` subprograms
appended), while clang writes line records per ELF section, by byte offset. This module carries
the records over to the linked indexes through the linker's per-slot origins, as libbpf
relocates a subprogram's line info to where it placed the subprogram, so that a rejection can
name the C line and the verifier log can show it the way the kernel does
(``; <text> @ <file>:<line>``, docs/semantics.md, ".BTF.ext").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from .runtime.btf import LineInfo

# A log line that shows an instruction: "12: (61) r2 = *(u32 *)(r1 +0)" (state lines, "12: R1=...",
# have no opcode in parentheses).
_INSN_LINE = re.compile(r"(\d+): \(")


@dataclass(frozen=True)
class SourceLine:
    """One line of C source, as a line record names it."""
    file: str  # as clang recorded it (a path)
    line: int
    text: str  # the line's text, leading whitespace removed

    def __str__(self) -> str:
        """The kernel verifier's form: the text, then the file's base name and the line number."""
        return f"{self.text} @ {self.file.rsplit('/', 1)[-1]}:{self.line}"


# Per instruction slot of a linked program: the source line covering it, or None.
SourceMap = Sequence[Optional[SourceLine]]


def source_map(origins: Sequence[tuple[str, int]], line_info: Mapping[str, Sequence[LineInfo]]) -> SourceMap:
    """The line covering each slot of a linked program whose slot i came from ``origins[i]``
    (section, slot in that section).

    A record covers its instruction and those after it up to the next record, within one
    function: where the linker starts another function (the origin is not the previous slot's
    successor), coverage restarts, so a subprogram never inherits its caller's last line.
    """
    starts = {(section, record.insn_index): record for section, records in line_info.items() for record in records}
    covering: list[SourceLine | None] = []
    current: SourceLine | None = None
    previous: tuple[str, int] | None = None
    for origin in origins:
        record = starts.get(origin)
        if record is not None:
            current = SourceLine(record.file, record.line, record.line_text.lstrip())
        elif previous is None or origin != (previous[0], previous[1] + 1):
            current = None
        covering.append(current)
        previous = origin
    return covering


def annotate_log(log: str, lines: SourceMap | None) -> str:
    """The verifier log with ``; <text> @ <file>:<line>`` before each instruction line whose source
    line differs from the last one shown, as the kernel prints them (the same file and line
    number is not repeated, whatever the column); unchanged without line info (None)."""
    if lines is None:
        return log
    out: list[str] = []
    shown: tuple[str, int] | None = None
    for text in log.split("\n"):
        match = _INSN_LINE.match(text)
        if match and int(match.group(1)) < len(lines):
            source = lines[int(match.group(1))]
            if source is not None and (source.file, source.line) != shown:
                out.append(f"; {source}")
                shown = (source.file, source.line)
        out.append(text)
    return "\n".join(out)

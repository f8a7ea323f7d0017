"""The verifier's log, in the kernel's shape, and the error that ends a verification.

Level 1 (what a rejected program shows by default) has one line per processed instruction in the
kernel's text (``3: (07) r1 += -8``), a ``from A to B: <state>`` line where exploration resumes a
saved branch, and the error message last; level 2 adds the register state after every
instruction. Users compare it with the kernel's log, so it keeps the kernel's wording.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bpfjit.errors import VerifierError

# Past this many characters the log keeps only its tail: the error and the path to it.
LOG_LIMIT = 1 << 20


@dataclass
class Stats:
    """veristat's figures: instructions processed, states kept, time."""
    insns_processed: int = 0
    states_total: int = 0
    peak_states: int = 0
    max_states_per_insn: int = 0
    seconds: float = 0.0
    # Loops checked once for all their trips (verifier/widen.py) instead of trip by trip as the
    # kernel does: where this is not 0, the figures above are smaller than the kernel's.
    loops_widened: int = 0


@dataclass
class VerifierLog:
    level: int = 1
    lines: list[str] = field(default_factory=list)
    size: int = 0

    def write(self, line: str) -> None:
        if self.level:
            self.lines.append(line)
            self.size += len(line) + 1
            if self.size > 2 * LOG_LIMIT:
                keep = self.lines[len(self.lines) // 2:]
                self.lines, self.size = keep, sum(len(x) + 1 for x in keep)

    def insn(self, index: int, text: str, state: Callable[[], str] | None = None) -> None:
        if self.level:
            after = f" ; {state()}" if self.level >= 2 and state is not None else ""
            self.write(f"{index}: {text}{after}")

    def resume(self, source: int, target: int, state: str) -> None:
        if self.level:
            self.write(f"from {source} to {target}: {state}")

    def text(self) -> str:
        text = "\n".join(self.lines)
        return text[-LOG_LIMIT:] if len(text) > LOG_LIMIT else text


class Rejected(Exception):
    """Raised inside the verifier at the first violation; turned into a VerifierError."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def error(index: int, message: str, log: VerifierLog, line: str | None = None) -> VerifierError:
    log.write(message)
    return VerifierError(index, message, log.text(), line)

"""bpf_trace_printk's formatting, bounded as the kernel bounds it.

The kernel formats into a buffer of MAX_BPRINTF_BUF (1024) bytes with ``bstr_printf``
(kernel/trace/bpf_trace.c): the trace line is what fits, at most 1023 bytes and a NUL, and the
helper returns ``bstr_printf``'s count, the length the whole text would have had (vsnprintf's
convention, without the NUL). Field widths are decimal ints that lib/vsprintf.c keeps within
FIELD_WIDTH_MAX. A width is honoured in the count but the text is never built past the buffer,
so ``%999999999d`` costs what ``%d`` costs.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bpfjit.isa import sign_extend

from . import helper_args

MAX_BPRINTF_BUF = 1024  # the buffer bpf_trace_printk formats into (include/linux/bpf.h)
FIELD_WIDTH_MAX = (1 << 23) - 1  # lib/vsprintf.c
FIRST_ARG = 3  # the format's arguments are r3-r5

_CONVERSION = re.compile(rb"%([-+ #0]*)(\d*)(ll|l|h|hh|z)?([diuxXpsc%])")


@dataclass(frozen=True)
class Printed:
    text: bytes  # the trace line as the kernel's buffer holds it: at most MAX_BPRINTF_BUF - 1 bytes
    length: int  # bstr_printf's count: the length of the whole formatted text, which may be longer


def format_printk(fmt: bytes, args: Sequence[int]) -> Printed:
    """Format like the kernel's bpf_trace_printk: %d %i %u %x %X %p %s %c with l/ll modifiers,
    flags and field widths; fmt ends at its first NUL. %s strings are read from the run's memory
    (argument registers r3-r5), no further than the end of the region they start in."""
    fmt = fmt.split(b"\0", 1)[0]
    text = bytearray()
    length = 0

    def put(shown: bytes, size: int) -> None:
        """Append a piece of `size` bytes, of which `shown` is at least the part that fits."""
        nonlocal length
        length += size
        room = MAX_BPRINTF_BUF - 1 - len(text)
        if room > 0:
            text.extend(shown[:room])

    used, position = 0, 0
    for match in _CONVERSION.finditer(fmt):
        put(fmt[position:match.start()], match.start() - position)
        position = match.end()
        flags, digits, modifier, conv = match.groups()
        if conv == b"%":
            put(b"%", 1)
            continue
        value = args[used] if used < len(args) else 0
        width = min(int(digits or b"0"), FIELD_WIDTH_MAX)
        put(*_conversion(flags, width, modifier, conv, value, FIRST_ARG + used))
        used += 1
    put(fmt[position:], len(fmt) - position)
    return Printed(bytes(text), length)


def _conversion(flags: bytes, width: int, modifier: bytes | None, conv: bytes, value: int,
                arg: int) -> tuple[bytes, int]:
    """One conversion: its text, padded no further than the buffer needs, and its full length."""
    bits = 64 if modifier in (b"l", b"ll", b"z") else 32
    operand: int | bytes
    if conv in (b"d", b"i"):
        spec, operand = b"d", sign_extend(value, bits)
    elif conv in (b"u", b"x", b"X"):
        spec, operand = (b"d" if conv == b"u" else conv), value & ((1 << bits) - 1)
    elif conv == b"c":
        spec, operand = b"c", value & 0xFF
    elif conv == b"s":
        spec, operand = b"s", helper_args.string(value, MAX_BPRINTF_BUF - 1, arg) if value else b"(null)"
    else:  # %p
        spec, operand = b"s", f"0x{value:x}".encode() if value else b"(null)"
    natural = len((b"%" + flags + spec) % operand)
    # Padding past the buffer is never seen: a width capped just above it gives the same prefix.
    shown = min(width, MAX_BPRINTF_BUF + natural)
    return (b"%" + flags + str(shown).encode() + spec) % operand, max(width, natural)

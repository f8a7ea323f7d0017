"""Every benchmark: the standard micro-suite, then the packet programs."""
from __future__ import annotations

from .cases import MICRO_CASES, Case
from .packets import PACKET_CASES

CASES: list[Case] = MICRO_CASES + PACKET_CASES

"""Every benchmark: the standard micro-suite, the packet programs, then the helper-heavy ones."""
from __future__ import annotations

from .cases import HELPER_CASES, FILLED_MAP_CASES, MICRO_CASES, PACKET_HELPER_CASES, Case
from .packets import PACKET_CASES

CASES: list[Case] = MICRO_CASES + PACKET_CASES + HELPER_CASES + PACKET_HELPER_CASES + FILLED_MAP_CASES

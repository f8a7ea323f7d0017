"""Helpers implemented in native code, bound in place of their Python callbacks.

A verified program's helper arguments are proven by the verifier, so a helper that sits on the
hot path of a packet (map updates, locks, ring buffers) can run as native code on the maps'
native memory without entering Python. This module answers, per helper id, where that native
implementation is; the engine binds ``@bpfjit_h<id>`` to it instead of a ctypes callback.
Programs that were not verified keep the Python helpers, which check every pointer.
"""
from __future__ import annotations

from bpfjit.runtime.environment import Environment


def native_address(helper_id: int, env: Environment) -> int | None:
    """The address of the native implementation of `helper_id`, or None for the Python one."""
    return None

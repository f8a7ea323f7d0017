"""bench/capture.py's passes count what the firewall must do: its verdicts over the bundled
frames are worked out by hand in tests/test_cli_objects.py (only correctness is asserted here;
the packets per second are the bench's to show)."""
from __future__ import annotations

import collections

import pytest
from test_cli_objects import EXPECTED_VERDICTS

from bpfjit.bench import capture


def expected_actions(count: int) -> dict[int, int]:
    return dict(collections.Counter(EXPECTED_VERDICTS[i % len(EXPECTED_VERDICTS)] for i in range(count)))


@pytest.mark.parametrize(("engine", "threads"), [("jit", 1), ("jit", 2), ("interp", 1)])
def test_a_pass_counts_the_firewalls_verdicts(engine, threads):
    packets = capture.frames(3 * len(EXPECTED_VERDICTS) + 1)
    done = capture.run_bpfjit(engine, packets, threads)
    assert done.actions == expected_actions(len(packets)) and done.packets == len(packets) and done.per_second > 0

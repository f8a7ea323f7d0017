"""bench/threads.py's thread-scaling round: threads sharing one hash map keep exact counts.

Only correctness is asserted here (the scaling figure is the bench's to show, never a timed test)."""
from __future__ import annotations

import pytest

from bpfjit.bench import threads


@pytest.mark.parametrize("count", [1, 2, 3])
def test_each_flow_counts_exactly_the_runs_of_its_thread(count):
    done = threads.run_round(count, seconds=0.2)
    assert done.threads == count
    assert done.runs >= count * threads.BATCH  # every thread made at least one batch


def test_a_lost_count_is_reported(monkeypatch):
    """The check compares the map with the threads' own tallies: a batch the map never saw fails."""
    real = threads.BATCH
    monkeypatch.setattr(threads, "BATCH", real + 1)  # the threads claim one run more per call than ran
    original_test_run = threads.bpfjit.Program.test_run

    def short_run(self, data=b"", ctx=None, repeat=1, **kwargs):
        return original_test_run(self, data, ctx, repeat=max(1, repeat - 1), **kwargs)

    monkeypatch.setattr(threads.bpfjit.Program, "test_run", short_run)
    with pytest.raises(AssertionError, match="the map counted"):
        threads.run_round(2, seconds=0.1)

"""The bench's ratios (bench/runs.py): each run of syncd against the plain loop's runs
just before and just after it, not against one far away."""

from __future__ import annotations

import pytest

from bench.runs import ratios


def test_each_run_is_taken_against_the_loops_on_either_side_of_it() -> None:
    # The machine slows down between the runs: 200, then 100 and 50 requests a second.
    assert ratios([150.0, 75.0], [200.0, 100.0, 50.0]) == [1.0, 1.0]


def test_the_loop_must_run_before_and_after_every_run() -> None:
    with pytest.raises(ValueError, match="2 runs of syncd need 3"):
        ratios([1.0, 1.0], [1.0, 1.0])

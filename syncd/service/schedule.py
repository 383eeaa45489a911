"""When the daemon runs: its interval, jitter, deadline, and the backoff after failures.

Pure arithmetic over the settings and the count of failed runs in a row, so
that the rules can be read (and tested) apart from the scheduler that obeys them.
"""

from __future__ import annotations

from syncd.settings import Settings

MAX_BACKOFF = 3600.0
SUCCESS = frozenset({"ok", "no_changes"})
# Only these back off: `blocked` waits for an operator and costs cached reads only;
# `invalid` sends nothing, and its fix must be picked up at the next interval.
BACKING_OFF = frozenset({"failed", "error", "deadline", "cancelled"})


def backoff_delay(interval: float, failures: int) -> float:
    """Seconds until the next run after `failures` failed runs in a row: the interval after
    one, then doubling, capped at an hour (or the interval when that is longer)."""
    if failures <= 1:
        return interval
    return min(interval * 2.0 ** (failures - 1), max(MAX_BACKOFF, interval))


def jitter_for(interval: float) -> float:
    """Up to a tenth of the interval (at most 30 s): many daemons started together spread out."""
    return min(interval / 10, 30.0)


def deadline_for(settings: Settings) -> float:
    return settings.run_deadline or 3 * settings.interval

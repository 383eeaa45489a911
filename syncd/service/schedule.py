"""When the daemon runs and what it reads: interval, jitter, deadline, backoff, drift share.

Pure arithmetic over the settings and the count of failed runs in a row, so
that the rules can be read (and tested) apart from the scheduler that obeys them.
"""

from __future__ import annotations

import math

from syncd.core.vocabulary import RunResult
from syncd.settings import Settings

MAX_BACKOFF = 3600.0
# These back off the whole schedule. `failed` only when every request of the cycle
# failed (see CycleOutcome.backs_off): one user's failure never delays the others.
# `blocked` waits for an operator and costs cached reads only; `invalid` sends
# nothing, and its fix must be picked up at the next interval.
BACKING_OFF = frozenset({RunResult.ERROR, RunResult.DEADLINE, RunResult.CANCELLED})


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


def drift_share(users: int, settings: Settings) -> int:
    """How many users a cycle reads again, those read longest ago, so that every one is
    read at least once per drift window and the GETs are spread evenly over the cycles.

    A cycle starts at most an interval plus its jitter after the last one; with
    that many users each, the users go round within about a window. What holds
    the bound is the cache: it trusts nothing older than the window, so a user
    that the shares left behind (rounding, a late cycle) is read at the next one.
    """
    period = settings.interval + jitter_for(settings.interval)
    return min(users, math.ceil(users * period / settings.drift_window))


def user_retry_delay(settings: Settings, failures: int) -> float:
    """Seconds until a failing user is read again after `failures` failed cycles in a
    row: the interval, then doubling, capped at the drift window."""
    return min(settings.interval * 2.0 ** (failures - 1), max(settings.drift_window, 1.0))

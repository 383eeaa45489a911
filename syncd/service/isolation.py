"""Failure isolation: one user's failure never delays the others (design.md section 3).

A user that fails is retried with its own backoff, doubling from the interval
and capped at the drift window, while the others go on at the normal
interval. Until its retry is due, the cycle does not read it: the plan carries
the user's last error instead, so the run still says it failed. A failure that
every read met alike (the API down) gets no backoff of its own: the schedule
backs off as a whole. Nor does a write the server does not keep: nothing is
sent for it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import structlog

from syncd.core.problem import Problem
from syncd.core.vocabulary import Code
from syncd.service.schedule import user_retry_delay
from syncd.settings import Settings
from syncd.state.user_failures import UserFailures

log = structlog.get_logger("syncd.service.isolation")


def held_users(
    failures: UserFailures, usernames: Iterable[str], settings: Settings, now: float
) -> dict[str, Problem]:
    """The users whose own retry is not due at this cycle, each with its last error.

    Due means: by the middle of the coming interval, so that a retry asked for
    in one interval happens at the next cycle, jitter or not.
    """
    wanted = set(usernames)
    due_by = now + settings.interval / 2
    held = {}
    for name, failing in failures.all().items():
        if name in wanted and failing.retry_at is not None and failing.retry_at > due_by:
            when = datetime.fromtimestamp(failing.retry_at, UTC).strftime("%H:%M:%S UTC")
            message = f"{failing.message} (failing since {failing.since}; read again at {when})"
            held[name] = Problem(name, failing.code, message)
    return held


def record_cycle(
    failures: UserFailures,
    usernames: list[str],
    failing: Mapping[str, Problem],
    held: Mapping[str, Problem],
    settings: Settings,
) -> dict[str, Problem]:
    """Store this cycle's failures, log each failing user once, and return them all."""
    now = time.time()
    fresh = [failure for name, failure in failing.items() if name not in held]
    fine = [name for name in usernames if name not in failing]
    standing = failures.update(now, fresh, fine, lambda problem: _retry_delay(problem, settings))
    failures.forget_except(usernames)
    alike: collections.Counter[tuple[str, str]] = collections.Counter()
    for name, failure in failing.items():
        user = standing.get(name)
        if user is None:
            continue
        if failure.shared:
            # The API down: one line for all, by the cause, which names no user
            # (each user's message names its own URL).
            alike[failure.code, failure.cause] += 1
            continue
        retry = None if user.retry_at is None else round(user.retry_at - now, 1)
        log.warning(
            "user_failing",
            user=name,
            code=user.code,
            message=user.message,
            since=user.since,
            cycles=user.failures,
            retry_in=retry,
        )
    for (code, cause), count in alike.items():
        log.warning("users_failing_alike", users=count, code=code, cause=cause)
    return {name: standing[name] for name in failing if name in standing}


def _retry_delay(problem: Problem, settings: Settings) -> float | None:
    """Seconds until the user is read again; None (the next cycle) for a failure that
    is not its own, or a write that is not sent again anyway."""
    if problem.shared or problem.code == Code.DOES_NOT_CONVERGE:
        return None
    return user_retry_delay(settings, problem.failures)

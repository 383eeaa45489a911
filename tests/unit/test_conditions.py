"""Notifications' bookkeeping: each condition told when it starts and when it resolves."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from syncd.core.conditions import Condition, transitions
from syncd.core.vocabulary import NotificationEvent, RunResult
from syncd.service.cycle import CycleOutcome
from syncd.service.metrics import Metrics
from syncd.service.notifications import Notifications, conditions_of, sign
from syncd.settings import Settings, load_settings

DRIFT = Condition(NotificationEvent.DRIFT_DETECTED, ("alice",))
HELD = Condition(NotificationEvent.GUARD_HELD)


def told(before, now):
    return [(n.condition.event, n.status) for n in transitions(before, now)]


def test_a_condition_is_told_once_until_it_resolves():
    drift = {DRIFT.event: DRIFT}
    assert told({}, drift) == [("drift_detected", "firing")]
    assert told(drift, drift) == []
    more = Condition(NotificationEvent.DRIFT_DETECTED, ("alice", "bobsmith"))
    assert told(drift, {more.event: more}) == []  # the same condition, still holding
    assert told(drift, {HELD.event: HELD}) == [
        ("guard_held", "firing"),
        ("drift_detected", "resolved"),
    ]


def test_the_signature_is_an_hmac_of_time_dot_body():
    header = sign(b"key", b'{"a": 1}', 1700000000)
    digest = hmac.new(b"key", b'1700000000.{"a": 1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,sha256={digest}"


def test_only_a_cycle_that_asked_the_api_says_whether_it_is_down():
    down = CycleOutcome(RunResult.FAILED, message="API unreachable", api_down=True)
    held, decided = conditions_of(down)
    assert NotificationEvent.API_DOWN in decided
    assert held[NotificationEvent.API_DOWN].message == "API unreachable"
    # The source failed before any request, or every user came from the cache.
    for silent in (CycleOutcome(RunResult.INVALID), CycleOutcome(RunResult.OK, planned=True)):
        assert NotificationEvent.API_DOWN not in conditions_of(silent)[1]
    answered = CycleOutcome(RunResult.OK, planned=True, api_answered=True)
    held, decided = conditions_of(answered)
    assert NotificationEvent.API_DOWN in decided
    assert NotificationEvent.API_DOWN not in held


def test_a_reload_replaces_only_the_notifiers_that_changed():
    # The review: changing one notifier replaced every one, and the 3 s drain of the
    # old ones dropped what an unchanged but slow receiver still had queued.
    def settings(second: str) -> Settings:
        urls = ("https://a.example/hook", second)
        return load_settings(notify=[{"type": "slack", "url": url} for url in urls])

    async def reload() -> None:
        notifications = Notifications(settings("https://b.example/hook"), Metrics(60), "me")
        notifications.start()
        unchanged, rotated = notifications.providers
        new = settings("https://c.example/hook")
        leaving = notifications.renew(new, Notifications.providers_of(new))
        assert notifications.providers[0] is unchanged  # its queue and its task
        assert notifications.providers[1].url == "https://c.example/hook"
        assert leaving is not None
        assert leaving.providers == [rotated]
        again = notifications.renew(new, Notifications.providers_of(new))
        assert again is None
        await asyncio.gather(leaving.stop(), notifications.stop())

    asyncio.run(reload())

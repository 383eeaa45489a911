"""Notifications' bookkeeping: each condition told when it starts and when it resolves."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

from syncd.core.conditions import Condition, Notice, transitions
from syncd.core.problem import Problem
from syncd.core.vocabulary import Code, NotificationEvent, RunResult
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
    # Resolutions first: one replaced is closed before its successor opens.
    assert told(drift, {HELD.event: HELD}) == [
        ("drift_detected", "resolved"),
        ("guard_held", "firing"),
    ]


def test_a_held_set_replaced_is_another_condition_and_its_resolution_says_cleared():
    first = Condition(
        NotificationEvent.GUARD_HELD, ("alice",), "holding … approve a1", key="set a1"
    )
    again = Condition(NotificationEvent.GUARD_HELD, ("alice", "bob"), "holding …", key="set a1")
    other = Condition(NotificationEvent.GUARD_HELD, ("bob",), "holding … approve b2", key="set b2")
    assert transitions({HELD.event: first}, {HELD.event: again}) == []
    resolved, started = transitions({HELD.event: first}, {HELD.event: other})
    assert (resolved.status, resolved.condition.message) == ("resolved", "set a1 cleared")
    assert resolved.condition.users == ("alice",)
    assert (started.status, started.condition) == ("firing", other)


def test_slack_shows_every_value_as_written_and_a_user_once():
    # A trial: a value in the desired state pinged the channel and showed a disguised
    # link in Slack, and a write's failure said its user twice.
    settings = load_settings(notify=[{"type": "slack", "url": "https://hooks.slack.com/x"}])
    notifications = Notifications(settings, Metrics(60), "me")
    value = '"<!channel> at <https://evil.example|https://sso.example> & co"'
    failing = {
        "carol": Problem("carol", Code.DOES_NOT_CONVERGE, f"full_name: sent {value}"),
        "dave": Problem("dave", Code.WRITE_FAILED, "dave: update location: HTTP 500"),
    }
    outcome = CycleOutcome(RunResult.PARTIAL, planned=True, failing=failing)
    conditions, _ = conditions_of(outcome)
    (provider,) = notifications.providers
    for event, text in (
        (
            NotificationEvent.DOES_NOT_CONVERGE,
            "syncd firing: does_not_converge (1 users: carol). carol: full_name: sent "
            '"&lt;!channel&gt; at &lt;https://evil.example|https://sso.example&gt; &amp; co" [me]',
        ),
        (
            NotificationEvent.APPLY_FAILED,
            "syncd firing: apply_failed (1 users: dave). dave: update location: HTTP 500 [me]",
        ),
    ):
        body = notifications._body(provider, Notice(conditions[event], "firing"), None)
        assert json.loads(body) == {"text": text}


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


def test_a_cycle_that_read_nobody_leaves_drift_and_the_guard_as_they_were():
    # A trial: suspending everyone told the drift `resolved`, though nothing was read.
    read = CycleOutcome(RunResult.NO_CHANGES, planned=True)
    assert NotificationEvent.DRIFT_DETECTED in conditions_of(read)[1]
    frozen = CycleOutcome(RunResult.HELD, planned=True, all_suspended=True)
    decided = conditions_of(frozen)[1]
    assert NotificationEvent.DRIFT_DETECTED not in decided
    assert NotificationEvent.GUARD_HELD not in decided


def test_with_no_notifier_nothing_is_kept_as_told():
    # A review: a daemon with no notifier kept its conditions as told, so one that
    # got a notifier later told `resolved` for what it never said was firing.
    drift = {DRIFT.event: DRIFT}
    silent = Notifications(load_settings(), Metrics(60), "me")
    silent.observe(drift, frozenset(drift), None)
    assert silent.told() == {}
    settings = load_settings(notify=[{"type": "slack", "url": "https://hooks.slack.com/x"}])
    heard = Notifications(settings, Metrics(60), "me")
    heard.observe(drift, frozenset(drift), None)
    assert list(heard.holding) == [NotificationEvent.DRIFT_DETECTED]


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


def test_a_firing_delivered_is_told_though_a_newer_one_was_queued_behind_it():
    # A review: with a slow receiver, set a1's firing was queued, then set b2 replaced
    # it behind it; a1 was delivered, and the process died before b2 left. `told` kept
    # nothing (only an event's last unsent firing made it told), so the next process
    # never resolved a1, open at the receiver for good.
    settings = load_settings(notify=[{"type": "slack", "url": "https://hooks.slack.com/x"}])
    a1 = Condition(HELD.event, ("alice",), "holding a1", key="set a1")
    b2 = Condition(HELD.event, ("bob",), "holding b2", key="set b2")

    async def slow_receiver() -> list[dict[str, dict[str, object]]]:
        notifications = Notifications(settings, Metrics(60), "me")
        notifications.start()  # its task never runs: nothing here awaits
        notifications.observe({HELD.event: a1}, frozenset({HELD.event}), None)
        notifications.observe({HELD.event: b2}, frozenset({HELD.event}), None)
        (provider,) = notifications.providers
        told = []
        while not provider.queue.empty():  # a1's firing, its resolution, b2's firing
            notifications._ended(provider.queue.get_nowait()[0])
            told.append(notifications.told())  # what the state keeps if killed now
        provider.task.cancel()
        return told

    a1_told = {"users": ["alice"], "message": "holding a1", "key": "set a1"}
    b2_told = {"users": ["bob"], "message": "holding b2", "key": "set b2"}
    assert asyncio.run(slow_receiver()) == [
        {"guard_held": a1_told},
        {"guard_held": a1_told},  # its resolution counts when queued, but b2 is not told
        {"guard_held": b2_told},
    ]

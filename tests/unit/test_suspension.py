"""Suspensions in the core and the loader: not read, not planned, listed; ended, said so."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd.core.desired import DesiredState, DesiredUser
from syncd.core.live import LiveAccount
from syncd.core.plan import build_plan
from syncd.core.suspension import EVERYONE, Suspension, suspensions_at
from syncd.core.vocabulary import SuspensionSource
from syncd.desired.loading import parse_desired
from syncd.errors import DesiredStateError
from tests.unit.conftest import profile

NOW = datetime(2027, 1, 15, tzinfo=UTC).timestamp()
BEFORE, AFTER = NOW - 3600, NOW + 3600
CLI = SuspensionSource.CLI


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    ("from_yaml", "from_cli", "active", "ended"),
    [
        pytest.param({}, {}, {}, {}, id="none"),
        pytest.param({"bob": Suspension("INC-1")}, {}, {"bob": "INC-1"}, {}, id="yaml-forever"),
        pytest.param(
            {"bob": Suspension("INC-1", AFTER)}, {}, {"bob": "INC-1"}, {}, id="yaml-holds"
        ),
        pytest.param(
            {"bob": Suspension("INC-1", BEFORE)}, {}, {}, {"bob": "INC-1"}, id="yaml-ended"
        ),
        pytest.param(
            {"bob": Suspension("yaml", BEFORE)},
            {"bob": Suspension("cli", AFTER, "ops@host", CLI)},
            {"bob": "cli"},
            {},
            id="cli-holds-where-yaml-ended",
        ),
        pytest.param(
            {},
            {EVERYONE: Suspension("freeze", None, "ops@host", CLI)},
            {"alice": "freeze", "bob": "freeze"},
            {},
            id="cli-all",
        ),
        pytest.param(
            {},
            {"bob": Suspension("cli", BEFORE, "ops@host", CLI)},
            {},
            {"bob": "cli"},
            id="cli-ended",
        ),
    ],
)
def test_who_is_suspended_at_a_moment(from_yaml, from_cli, active, ended):
    found = suspensions_at(NOW, ["alice", "bob"], from_yaml, from_cli)
    assert {user: s.reason for user, s in found.active.items()} == active
    assert {user: s.reason for user, s in found.ended.items()} == ended


def test_a_suspended_user_is_listed_and_neither_planned_nor_an_error():
    desired = DesiredState(
        (
            DesiredUser("alice", {"full_name": "A"}),
            DesiredUser(
                "bobsmith", {"full_name": "B"}, suspend=Suspension("INC-123", AFTER, "f:3:5")
            ),
        )
    )
    live = {"alice": LiveAccount("alice", profile(full_name="x"))}  # bob is not read
    suspensions = suspensions_at(
        NOW, desired.usernames(), {"bobsmith": desired.users[1].suspend}, {}
    )
    plan = build_plan(desired, live, suspensions=suspensions)
    assert plan.complete  # bob is not "not read": an exit code as if he were absent
    assert plan.users_with_changes() == ["alice"]
    document = plan.to_json({})
    assert document["suspended"] == [
        {
            "user": "bobsmith",
            "reason": "INC-123",
            "until": "2027-01-15T01:00:00+00:00",
            "by": "f:3:5",
            "source": "yaml",
        }
    ]
    assert document["summary"]["users_suspended"] == 1


def test_after_its_end_the_user_is_planned_again_and_the_plan_says_so():
    ended = Suspension("INC-123", BEFORE, "f:3:5")
    desired = DesiredState((DesiredUser("bobsmith", {"full_name": "B"}, suspend=ended),))
    live = {"bobsmith": LiveAccount("bobsmith", profile(full_name="x"))}
    plan = build_plan(
        desired, live, suspensions=suspensions_at(NOW, ["bobsmith"], {"bobsmith": ended}, {})
    )
    assert plan.users_with_changes() == ["bobsmith"]
    assert [entry["user"] for entry in plan.to_json({})["suspension_ended"]] == ["bobsmith"]


HEAD = "version: 1\nusers:\n  bobsmith:\n    full_name: Bob\n"


@pytest.mark.parametrize(
    ("written", "until"),
    [
        pytest.param("{reason: INC-123}", None, id="no-end"),
        pytest.param(
            "{reason: INC-123, until: 2027-01-31}", at("2027-01-31T00:00:00+00:00"), id="date"
        ),
        pytest.param(
            "{reason: INC-123, until: '2027-01-31T18:00:00+01:00'}",
            at("2027-01-31T17:00:00+00:00"),
            id="datetime-with-zone",
        ),
    ],
)
def test_the_yaml_suspend_key(written, until):
    (user,) = parse_desired([("d.yaml", (HEAD + f"    suspend: {written}\n").encode())]).users
    assert user.suspend == Suspension("INC-123", until, "d.yaml:3:3")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param("{until: 2027-01-31}", "d.yaml:6:7: missing 'reason'", id="no-reason"),
        pytest.param(
            "{reason: ' '}",
            "d.yaml:6:15: a suspension needs a reason (an incident, a ticket)",
            id="empty-reason",
        ),
        pytest.param(
            "{reason: x, until: '2027-01-31T18:00:00'}",
            "d.yaml:7:14: invalid end '2027-01-31T18:00:00': expected a date",
            id="no-zone",
        ),
        pytest.param(
            "{reason: x, until: 2027-02-30}",
            "d.yaml:7:14: invalid end '2027-02-30'",
            id="not-a-date",
        ),
        pytest.param(
            "{reason: x, untl: 2027-01-31}",
            "d.yaml:7:7: unknown key 'untl' (did you mean 'until'?)",
            id="unknown-key",
        ),
    ],
)
def test_a_bad_suspend_is_an_error_at_its_place(written, expected):
    text = HEAD + "    suspend:\n" + f"      {written[1:-1].replace(', ', chr(10) + '      ')}\n"
    with pytest.raises(DesiredStateError) as caught:
        parse_desired([("d.yaml", text.encode())])
    messages = [str(problem) for problem in caught.value.problems]
    assert len(messages) == 1, messages
    assert messages[0].startswith(expected), messages

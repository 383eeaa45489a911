"""Converging against the sandbox: writes, retries, ambiguity, the guard and the audit trail."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
from typing import Any

import httpx
import pytest

from syncd.core.suspension import Suspension
from syncd.desired.loading import load_desired
from syncd.engine.reconcile import ConvergeResult, PlanResult, connect, converge, planning
from syncd.errors import GuardError
from syncd.settings import Settings
from syncd.state.backend import open_store
from syncd.state.suspensions import SuspensionTable
from tests.world import STANDARD_DESIRED, STANDARD_SEED, World, account


def audit_rows(world: World) -> list[dict[str, Any]]:
    with sqlite3.connect(world.state_dir / "syncd.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM audit ORDER BY seq")]


def test_apply_converges_with_one_write_per_action(world: World):
    first = world.apply()
    assert first.report is not None
    assert first.report.ok
    assert world.writes() == len(first.result.plan.changes) == 3
    second = world.apply()
    assert second.result.plan.is_empty
    assert sum(second.result.requests.values()) == 0, "the cache was updated from the answers"


def test_every_write_has_one_intent_and_one_outcome(world: World):
    world.apply()
    rows = audit_rows(world)
    intents = [r for r in rows if r["event"] == "intent"]
    outcomes = [r for r in rows if r["event"] == "outcome"]
    assert len(intents) == len(outcomes) == 3
    assert sorted(o["intent_seq"] for o in outcomes) == sorted(i["seq"] for i in intents)
    assert {o["result"] for o in outcomes} == {"ok"}
    assert json.loads(intents[0]["after"]) == {
        "full_name": "Jane Doe",
        "location": "Private Island",
    }


def test_a_user_suspended_after_the_plan_gets_no_write(world: World):
    """Asked before each user's writes, through the apply's own connection (on SQLite
    the group commit's thread): a suspension said after the plan still holds."""
    users = {f"late{i}": account([f"l{i}@example.com"], f"tok-l{i}") for i in range(3)}
    world.seed({"users": users})
    world.desire(
        {"version": 1, "users": {name: {"full_name": f"{name} renamed"} for name in users}}
    )
    desired = load_desired(world.desired_file)
    settings = world.settings()
    withheld: list[str] = []

    def suspend_one(planned: PlanResult) -> bool:
        withheld.append(planned.plan.changes[0].user)
        with open_store(settings, "suspend") as store:
            SuspensionTable(store.history).suspend(
                withheld, Suspension("said after the plan", by="test")
            )
        return True

    async def run() -> ConvergeResult:
        async with connect(settings) as connection:
            return await converge(
                connection,
                planning(desired),
                command="apply",
                deletion_limit=10,
                confirm=suspend_one,
            )

    converged = asyncio.run(run())
    assert converged.report is not None
    assert converged.report.withheld == withheld
    changes = converged.result.plan.changes
    assert world.writes() == len([c for c in changes if c.user not in withheld]) > 0
    assert {row["user"] for row in audit_rows(world)}.isdisjoint(withheld)


@pytest.mark.parametrize(
    "layers",
    [
        pytest.param({}, id="alone"),
        pytest.param({"defaults": {"company": "Acme"}}, id="beside-defaults"),
        pytest.param({"groups": {"staff": {"company": "Acme"}}}, id="beside-groups"),
    ],
)
def test_a_user_suspended_in_the_desired_state_gets_no_write(world: World, layers: dict[str, Any]):
    # The defaults and groups are resolved into each user: a suspension must survive
    # that, or a file with a `defaults:` key writes to the users it suspends.
    desired = copy.deepcopy(STANDARD_DESIRED) | layers
    desired["users"]["janedoe"]["suspend"] = {"reason": "INC-123"}
    if "groups" in layers:
        desired["users"]["janedoe"]["groups"] = list(layers["groups"])
    world.desire(desired)
    converged = world.apply()
    assert [user for user, _ in converged.result.plan.suspended] == ["janedoe"]
    assert "janedoe" not in {row["user"] for row in audit_rows(world)}
    assert "old@example.com" in world.emails_of("janedoe")


def test_the_audit_trail_is_append_only(world: World):
    world.apply()
    with (
        sqlite3.connect(world.state_dir / "syncd.db") as db,
        pytest.raises(sqlite3.IntegrityError, match="append-only"),
    ):
        db.execute("DELETE FROM audit")


def test_deletion_guard_refuses_everything(world: World):
    with pytest.raises(GuardError, match="--allow-deletions 1") as refused:
        world.apply(limit=0)
    assert refused.value.exit_code == 3
    assert world.writes() == 0
    assert world.apply(limit=1).report is not None


def test_ambiguous_writes_never_duplicate_and_converge(world: World):
    users = {
        f"user{i:04d}": account([f"u{i}@example.com"], f"tok-{i}", full_name="old")
        for i in range(20)
    }
    world.seed({"users": users}, faults={"ambiguous_rate": 0.5, "fault_seed": 3})
    desired = {
        name: {"full_name": "new", "emails": [f"u{i}@example.com", f"extra{i}@example.com"]}
        for i, name in enumerate(users)
    }
    world.desire({"version": 1, "users": desired})
    for _ in range(3):
        if world.apply().result.plan.is_empty:
            break
    posts = [r for r in world.sandbox.stats()["requests"] if r["method"] == "POST"]
    assert not [r for r in posts if r["status"] == 400], "an address was sent twice"
    assert world.apply(settings=world.settings(cache_ttl=0)).result.plan.is_empty
    for i, name in enumerate(users):
        assert sorted(world.emails_of(name)) == sorted(
            [f"u{i}@example.com", f"extra{i}@example.com"]
        )


def test_bursts_of_429_and_503_are_survived(world: World):
    world.seed(STANDARD_SEED, faults={"error_rate": 0.3, "rate_limit": 5, "fault_seed": 11})
    result = world.apply(settings=world.settings(concurrency=4))
    assert result.report is not None
    assert result.report.ok
    assert world.apply(settings=world.settings(cache_ttl=0)).result.plan.is_empty


def test_a_failing_user_does_not_stop_the_others(world: World):
    (world.credentials_dir / "janedoe.token").write_text("wrong\n")
    world.desire(
        {
            "version": 1,
            "users": {"janedoe": {"full_name": "X"}, "johnsmith": {"full_name": "Johnny"}},
        }
    )
    result = world.apply()
    assert [e.user for e in result.result.plan.errors] == ["janedoe"]
    assert result.report is not None
    assert result.report.counts["update_profile"] == 1


def test_deletions_wait_until_the_additions_succeed(world: World):
    from tests.integration.conftest import plan_with

    plan_with(world)  # warm cache: the apply below sends only writes
    world.sandbox.set_faults({"error_rate": 1.0})
    result = world.apply()
    assert result.report is not None
    outcomes = set(result.report.failed)
    assert ("add_email", "unknown") in outcomes
    assert ("delete_email", "skipped") in outcomes
    assert world.sandbox.stats()["by_method"].get("DELETE", 0) == 0


def test_a_plan_rereads_users_with_a_write_in_doubt(world: World):
    from syncd.core.plan import UpdateProfile
    from syncd.state.audit import AuditTrail
    from syncd.state.statefile import open_state
    from tests.integration.conftest import plan_with

    plan_with(world)
    gets = world.gets()
    db = open_state(world.state_dir / "syncd.db")
    AuditTrail(db, {}).intent(UpdateProfile("johnsmith", ()))  # never given an outcome
    db.close()
    plan_with(world)
    assert world.gets() == gets + 1  # johnsmith's profile, and only that


def test_a_refused_write_keeps_what_was_read_in_the_cache(world: World):
    # A 403 changes nothing on the server: the read stays true, and the next plan
    # needs no GET for the user (it was "last read -" and "not read" before).
    seed = copy.deepcopy(STANDARD_SEED)
    seed["users"]["janedoe"]["tokens"] = [
        {"token": "tok-jane", "scopes": ["profile_read", "email_read"]}
    ]
    world.seed(seed)
    first = world.apply()
    assert first.report is not None
    assert next(failure.code for failure in first.report.failures) == "forbidden"
    second = world.apply()
    assert second.result.requests["GET"] == 0, "the refused write dropped the cached read"
    assert not second.result.plan.errors


def _plan_a_deletion_through_the_staff_token(world: World) -> Settings:
    """janedoe's old@example.com planned for deletion and cached; the settings that did it.

    The staff token as the fallback (design.md section 1): it still authenticates once
    the account is gone, where janedoe's own token would be answered 401.
    """
    from tests.integration.conftest import plan_with

    world.desire({"version": 1, "users": {"janedoe": {"emails": ["jane.doe@example.com"]}}})
    (world.credentials_dir / "janedoe.token").unlink()
    settings = world.settings(token=world.sandbox.admin_token)
    assert [c.describe() for c in plan_with(world, settings=settings).plan.changes] == [
        "janedoe: delete old@example.com"
    ]
    return settings


def test_a_deletion_answered_404_for_a_vanished_user_is_user_not_found(world: World):
    # DELETE answers 404 for an unknown user as for an unknown address: the emails,
    # re-read, tell which. It was "1 applied", and the next plan "the accounts match".
    from tests.integration.conftest import plan_with

    settings = _plan_a_deletion_through_the_staff_token(world)
    world.sandbox.reset(seed={"users": {"johnsmith": STANDARD_SEED["users"]["johnsmith"]}})
    result = world.apply(settings=settings)
    assert result.report is not None
    assert [(f.user, f.code) for f in result.report.failures] == [("janedoe", "user_not_found")]
    assert set(result.report.failed) == {("delete_email", "failed")}
    assert world.sandbox.stats()["by_method"] == {"DELETE": 1, "GET": 1}
    [outcome] = [r for r in audit_rows(world) if r["event"] == "outcome"]
    assert (outcome["result"], outcome["status"]) == ("failed", 404)
    after = plan_with(world, settings=settings)
    assert [(e.user, e.code) for e in after.plan.errors] == [("janedoe", "user_not_found")]


def test_a_deletion_answered_404_for_an_address_already_gone_is_done(world: World):
    settings = _plan_a_deletion_through_the_staff_token(world)
    httpx.request(
        "DELETE",
        f"{world.sandbox.url}/api/v1.1/users/janedoe/emails/",
        json={"email": "old@example.com"},
        headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
    ).raise_for_status()
    writes = world.writes()
    result = world.apply(settings=settings)
    assert result.report is not None
    assert result.report.ok
    assert result.report.counts["delete_email"] == 1
    assert world.writes() == writes + 1  # one write per action: the re-read is a GET
    assert world.apply(settings=settings).result.plan.is_empty


@pytest.mark.parametrize(
    ("scopes", "refused", "sent", "not_sent"),
    [
        pytest.param(
            ["profile_read", "email_read", "email_write"],
            "update_profile",
            {"PATCH": 1, "POST": 1, "DELETE": 1},
            set[str](),
            id="no-profile_write",
        ),
        pytest.param(
            ["profile_read", "profile_write", "email_read"],
            "add_email",
            {"PATCH": 1, "POST": 1},
            {"delete_email"},
            id="no-email_write",
        ),
    ],
)
def test_a_403_stops_only_the_writes_of_its_scope(
    world: World, scopes: list[str], refused: str, sent: dict[str, int], not_sent: set[str]
):
    # design.md section 1: each call has its own scope, profile_write for the PATCH,
    # email_write for the POSTs and DELETEs. A 403 for the one used to withhold the other.
    seed = copy.deepcopy(STANDARD_SEED)
    seed["users"]["janedoe"]["tokens"] = [{"token": "tok-jane", "scopes": scopes}]
    world.seed(seed)
    result = world.apply()
    assert result.report is not None
    failed = {action for action, outcome in result.report.failed if outcome == "failed"}
    assert failed == {refused}
    assert {a for a, outcome in result.report.failed if outcome == "skipped"} == not_sent
    by_method = world.sandbox.stats()["by_method"]
    assert {m: by_method[m] for m in ("PATCH", "POST", "DELETE") if m in by_method} == sent

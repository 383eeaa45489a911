"""Reading live state and planning, against the sandbox over loopback."""

from __future__ import annotations

import os
import stat

import pytest

from syncd.core.plan import AddEmail, DeleteEmail, FieldChange, UpdateProfile
from syncd.engine.reconcile import PlanResult
from syncd.errors import UsageError
from tests.integration.conftest import plan_with
from tests.world import STANDARD_DESIRED, STANDARD_SEED, World, account


def codes(result: PlanResult) -> dict[str, list[str]]:
    return {
        "warnings": [f"{w.user}:{w.code}" for w in result.plan.warnings],
        "errors": [f"{e.user}:{e.code}" for e in result.plan.errors],
    }


def test_cold_plan_reads_two_gets_per_user_and_finds_the_differences(world: World):
    result = plan_with(world)
    assert result.plan.changes == (
        UpdateProfile(
            "janedoe",
            (
                FieldChange("full_name", "Jane", "Jane Doe"),
                FieldChange("location", "San Francisco, CA", "Private Island"),
            ),
        ),
        AddEmail("janedoe", "jane.doe+other@example.com"),
        DeleteEmail("janedoe", "old@example.com"),
    )
    # janedoe manages profile and emails (2 GETs), johnsmith only a profile (1 GET).
    assert world.gets() == 3
    assert world.writes() == 0


def test_warm_plan_sends_no_request(world: World):
    plan_with(world)
    before = world.gets()
    again = plan_with(world)
    assert world.gets() == before
    assert sum(again.requests.values()) == 0
    assert len(again.plan.changes) == 3


def test_a_cookie_set_for_one_user_never_travels_with_another(world: World):
    world.sandbox.set_faults({"set_cookie": True})  # every answer sets a session cookie
    result = plan_with(world)
    assert sum(result.requests.values()) >= 2  # through one client, for two users
    assert world.sandbox.stats()["with_cookie"] == 0


def test_refresh_ignores_the_cache(world: World):
    plan_with(world)
    before = world.gets()
    plan_with(world, refresh=True)
    assert world.gets() == before + 3


def test_expired_entries_are_read_again(world: World):
    plan_with(world)
    before = world.gets()
    plan_with(world, settings=world.settings(cache_ttl=0))
    assert world.gets() == before + 3


def test_state_file_is_private(world: World):
    plan_with(world)
    mode = stat.S_IMODE(os.stat(world.state_dir / "syncd.db").st_mode)
    assert mode == 0o600


def test_unknown_user_is_an_error_not_a_write(world: World):
    world.desire({"version": 1, "users": {"ghost_user": {"full_name": "Nobody"}}})
    result = plan_with(world, settings=world.settings(token=world.sandbox.admin_token))
    assert codes(result) == {"warnings": [], "errors": ["ghost_user:user_not_found"]}
    assert result.plan.changes == ()


def test_user_without_credentials_is_an_error_and_others_go_on(world: World):
    (world.credentials_dir / "johnsmith.token").unlink()
    desired = {**STANDARD_DESIRED}
    desired["users"] = {**STANDARD_DESIRED["users"], "johnsmith": {"full_name": "J"}}
    world.desire(desired)
    result = plan_with(world)
    assert codes(result) == {"warnings": [], "errors": ["johnsmith:no_credentials"]}
    assert {a.user for a in result.plan.changes} == {"janedoe"}
    assert not result.plan.errors[0].shared


def test_scope_missing_is_a_forbidden_error(world: World):
    seed = {"users": {"readonly": account(["r@example.com"], "tok-r", ["profile_read"])}}
    world.seed(seed)
    world.desire({"version": 1, "users": {"readonly": {"emails": ["r@example.com"]}}})
    result = plan_with(world)
    assert codes(result) == {"warnings": [], "errors": ["readonly:forbidden"]}


def test_primary_missing_from_the_list_is_a_warning(world: World):
    world.desire({"version": 1, "users": {"janedoe": {"emails": ["old@example.com"]}}})
    result = plan_with(world)
    assert codes(result)["warnings"] == ["janedoe:primary_email_not_desired"]
    assert result.plan.changes == ()


def test_wrong_token_is_an_error_for_that_user(world: World):
    (world.credentials_dir / "janedoe.token").write_text("not-the-token\n")
    result = plan_with(world)
    assert codes(result) == {"warnings": [], "errors": ["janedoe:unauthorized"]}
    # Which file to mend: the message names it, never its secret.
    token_file = world.credentials_dir / "janedoe.token"
    message = result.plan.errors[0].message
    assert f"credential refused ({token_file}): " in message
    assert "HTTP 401" in message
    assert "not-the-token" not in str(result.plan.errors)


def test_server_errors_are_retried(world: World):
    world.seed(STANDARD_SEED, faults={"error_rate": 0.3, "fault_seed": 7})
    result = plan_with(world)
    assert result.plan.errors == ()
    assert len(result.plan.changes) == 3
    statuses = {r["status"] for r in world.sandbox.stats()["requests"]}
    assert statuses & {500, 503}, "the fault injection should have answered some 5xx"


def test_rate_limit_is_honoured(world: World):
    world.seed(STANDARD_SEED, faults={"rate_limit": 1, "fault_seed": 1})
    # Every call with one credential, so the second one within a second is over the limit.
    for token_file in world.credentials_dir.iterdir():
        token_file.unlink()
    settings = world.settings(concurrency=4, token=world.sandbox.admin_token)
    result = plan_with(world, settings=settings)
    assert result.plan.errors == ()
    statuses = {r["status"] for r in world.sandbox.stats()["requests"]}
    assert 429 in statuses


def test_plain_http_to_a_remote_host_is_refused(world: World):
    with pytest.raises(UsageError, match="--insecure-http"):
        plan_with(world, settings=world.settings(api_url="http://accounts.example.org"))

"""Malformed API answers are errors for their user, never data, and never lead to a write."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.sandbox.malformed import KINDS
from tests.world import STANDARD_SEED, World


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_answer_fails_that_user_and_writes_nothing(world: World, kind: str):
    world.sandbox.reset(seed=STANDARD_SEED, malformed={"janedoe": kind})
    runner = CliRunner()
    plan = runner.invoke(cli, ["plan", *world.cli_args()], catch_exceptions=False)
    assert plan.exit_code == 1, plan.output
    assert "janedoe: malformed_response" in plan.stdout
    assert "GET /api/v1.1/users/janedoe/" in plan.stdout
    applied = runner.invoke(cli, ["apply", *world.cli_args(), "--yes"], catch_exceptions=False)
    assert applied.exit_code == 1, applied.output
    assert world.writes() == 0


def test_a_profile_without_email_never_lets_the_unmarked_primary_be_deleted(world: World):
    # The list marks no primary; only the profile's `email` can say which one it is,
    # and an answer without it was read as "no primary": the primary got a DELETE.
    world.sandbox.reset(
        seed=STANDARD_SEED, malformed={"janedoe": "unmarked-primary-and-no-profile-email"}
    )
    world.desire({"version": 1, "users": {"janedoe": {"emails": ["old@example.com"]}}})
    args = ["apply", *world.cli_args(), "--yes"]
    applied = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert applied.exit_code == 1, applied.output
    assert "janedoe: malformed_response" in applied.stdout
    assert "user object without 'email'" in applied.stdout
    assert world.writes() == 0


def test_each_spelling_of_an_address_listed_twice_gets_its_delete(world: World):
    # One DELETE, and the cache dropped both spellings: a cached "the accounts match"
    # while the server still held one.
    world.sandbox.reset(seed=STANDARD_SEED, malformed={"janedoe": "one-address-twice"})
    runner = CliRunner()
    plan = runner.invoke(cli, ["plan", *world.cli_args()], catch_exceptions=False)
    assert "- old@example.com" in plan.stdout
    assert "- OLD@example.com" in plan.stdout
    applied = runner.invoke(cli, ["apply", *world.cli_args(), "--yes"], catch_exceptions=False)
    # The sandbox itself holds one spelling: the second DELETE finds it gone (404), and
    # how that ends depends on a re-read, which this answer keeps listing it in.
    assert "janedoe: delete old@example.com… done" in applied.stdout
    assert "janedoe: delete OLD@example.com…" in applied.stdout
    assert world.sandbox.stats()["by_method"]["DELETE"] == 2


def test_an_owned_address_is_released_once_no_spelling_of_it_is_left(world: World):
    # Review: the first spelling's DELETE released the claim on the address while another
    # spelling was left with its own DELETE to come. Released once both are gone (the
    # sandbox holds one spelling: the second DELETE finds it gone).
    owned = {"emails_mode": "owned"}
    listed = {"janedoe": {**owned, "emails": ["jane.doe@example.com", "old@example.com"]}}
    world.desire({"version": 1, "users": listed})
    world.sandbox.reset(seed=STANDARD_SEED, malformed={"janedoe": "one-address-twice"})
    runner = CliRunner()
    claimed = runner.invoke(cli, ["apply", *world.cli_args(), "--yes"], catch_exceptions=False)
    assert claimed.exit_code == 0, claimed.output
    claims = "SELECT email_key FROM email_ownership WHERE email_key LIKE 'old@%'"
    assert world.query(claims) == [{"email_key": "old@example.com"}]
    unlisted = {"janedoe": {**owned, "emails": ["jane.doe@example.com"]}}
    world.desire({"version": 1, "users": unlisted})
    applied = runner.invoke(cli, ["apply", *world.cli_args(), "--yes"], catch_exceptions=False)
    assert "janedoe: delete old@example.com… done" in applied.stdout, applied.stdout
    assert "janedoe: delete OLD@example.com… done" in applied.stdout, applied.stdout
    assert world.query(claims) == []

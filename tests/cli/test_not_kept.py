"""Writes the server does not keep are named, and not sent again (issue 12, item 3).

The sandbox keeps some fields otherwise than sent, as real servers do (trims a
name, appends "/" to a URL, ignores a field, drops a "+tag"). Before, every
apply sent the same PATCH again and reported success. Now the first apply
names the field, the value sent and the value kept, and says what to write in
the file; later plans report it again (exit 1) without sending anything while
the desired and live values stay as they were.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.world import World, account

SEED = {
    "users": {
        "janedoe": account(
            ["jane@example.com"],
            "tok-jane",
            full_name="Jane",
            company="Old Co",
            profile_url="https://example.org/old/",
        )
    }
}


def run(world: World, *args: str) -> Result:
    command, *rest = args
    return CliRunner().invoke(cli, [command, *world.cli_args(), *rest], catch_exceptions=False)


def errors_of(world: World) -> list[dict[str, Any]]:
    result = run(world, "plan", "--output", "json")
    errors: list[dict[str, Any]] = json.loads(result.stdout)["errors"]
    return errors


@pytest.mark.parametrize(
    ("field", "rule", "sent", "kept"),
    [
        pytest.param(
            "profile_url", "slash", "https://example.org/jane", "https://example.org/jane/"
        ),
        pytest.param("full_name", "strip", "Jane Doe ", "Jane Doe", id="full_name-strip"),
        pytest.param("company", "ignore", "New Co", "Old Co", id="company-ignore"),
    ],
)
def test_a_field_the_server_keeps_otherwise_is_named_once_and_not_sent_again(
    world: World, field: str, rule: str, sent: str, kept: str
):
    world.seed(SEED, normalize={field: rule})
    world.desire({"version": 1, "users": {"janedoe": {field: sent}}})

    first = run(world, "apply", "--yes")
    assert first.exit_code == 1, first.output
    assert world.writes() == 1
    message = (
        f"{field}: sent {json.dumps(sent)}, the server keeps {json.dumps(kept)}; to converge, "
        f"write {field}: {json.dumps(kept)} in the desired state (or leave {field} out)"
    )
    assert f"janedoe: update profile… does not converge: {message}" in first.stdout

    for _ in range(2):  # neither a plan nor an apply sends it again
        again = run(world, "apply", "--yes")
        assert again.exit_code == 1
        assert world.writes() == 1
        assert message in again.stdout
    assert errors_of(world) == [
        {"user": "janedoe", "code": "does_not_converge", "message": message}
    ]

    world.desire({"version": 1, "users": {"janedoe": {field: kept}}})  # as the message says
    assert run(world, "plan", "--detailed-exitcode").exit_code == 0


def test_a_new_desired_value_is_sent_as_usual(world: World):
    world.seed(SEED, normalize={"profile_url": "slash"})
    world.desire({"version": 1, "users": {"janedoe": {"profile_url": "https://example.org/a"}}})
    assert run(world, "apply", "--yes").exit_code == 1
    world.desire({"version": 1, "users": {"janedoe": {"profile_url": "https://example.org/b/"}}})
    result = run(world, "apply", "--yes")
    assert result.exit_code == 0, result.output
    assert world.writes() == 2


def test_a_live_value_changed_since_is_written_again(world: World):
    world.seed(SEED, normalize={"profile_url": "slash"})
    world.desire({"version": 1, "users": {"janedoe": {"profile_url": "https://example.org/a"}}})
    assert run(world, "apply", "--yes").exit_code == 1
    world.sandbox.reset(seed=SEED)  # someone fixed the server, and the value is back as it was
    result = run(world, "apply", "--yes", "--refresh")
    assert result.exit_code == 0, result.output
    assert world.writes() == 1  # the sandbox's counts start again at the reset


def test_an_address_the_server_keeps_otherwise_is_neither_added_nor_deleted(world: World):
    world.seed(SEED, normalize={"email": "untag"})
    desired = {"emails": ["jane@example.com", "jane.work+syncd@example.com"]}
    world.desire({"version": 1, "users": {"janedoe": desired}})

    first = run(world, "apply", "--yes")
    assert first.exit_code == 1, first.output
    assert 'added "jane.work+syncd@example.com", the server keeps "jane.work@example.com"' in (
        first.stdout
    )
    again = run(world, "apply", "--yes", "--allow-deletions", "10")
    assert again.exit_code == 1
    assert world.writes() == 1  # no second POST, and no DELETE of what the server made of it
    assert sorted(world.emails_of("janedoe")) == ["jane.work@example.com", "jane@example.com"]


def test_a_gravatar_the_server_ignores_says_to_stop_managing_it(world: World):
    world.seed(SEED, normalize={"gravatar_email": "ignore"})
    world.desire({"version": 1, "users": {"janedoe": {"gravatar_email": "jane@example.com"}}})
    assert run(world, "apply", "--yes").exit_code == 1
    (error,) = errors_of(world)
    assert error["code"] == "does_not_converge"
    assert "remove gravatar_email from the desired state" in error["message"]
    assert world.writes() == 1


def test_the_audit_trail_records_what_was_not_kept(world: World):
    world.seed(SEED, normalize={"full_name": "strip"})
    world.desire({"version": 1, "users": {"janedoe": {"full_name": " Jane "}}})
    run(world, "apply", "--yes")
    audit = CliRunner().invoke(
        cli, ["audit", "--state-dir", str(world.state_dir), "--output", "json"]
    )
    outcome = json.loads(audit.stdout)[-1]
    assert outcome["result"] == "does_not_converge"
    assert 'sent " Jane ", the server keeps "Jane"' in outcome["message"]


def test_a_write_of_two_fields_not_kept_is_one_failed_write(world: World):
    world.seed(SEED, normalize={"full_name": "strip", "company": "ignore"})
    world.desire({"version": 1, "users": {"janedoe": {"full_name": " Jane ", "company": "X"}}})
    result = run(world, "apply", "--yes")
    assert result.exit_code == 1
    assert "Apply finished with failures: 0 applied, 1 failed." in result.stdout
    assert result.stdout.count("does not converge") == 1  # one line for the write


def test_status_counts_a_run_s_failed_writes_beside_its_applied_ones(world: World):
    world.seed(SEED, normalize={"full_name": "strip"})
    world.desire({"version": 1, "users": {"janedoe": {"full_name": " Jane "}}})
    run(world, "apply", "--yes")
    status = CliRunner().invoke(cli, ["status", "--state-dir", str(world.state_dir)])
    (last_run,) = [line for line in status.stdout.splitlines() if " apply " in line]
    assert last_run.endswith("0 applied, 1 failed")

"""A plan is green only when every managed user was read and is equal (issue 12, item 1).

Each test is one way a new operator got "No changes: the accounts match" from
a plan that had read nothing: a wrong API URL, no credentials, tokens without
the read scope, the server down. Now each is exit 1, also with
--detailed-exitcode, and a failure that every read met is said once.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.cli.conftest import plan
from tests.world import STANDARD_DESIRED, World, account, write_secret


def assert_not_green(result: Result) -> None:
    assert result.exit_code == 1, result.output
    assert "match" not in result.stdout
    assert "No changes" not in result.stdout


def test_every_user_unknown_to_the_server_is_one_error_not_a_match(world: World):
    world.sandbox.reset(seed={"users": {}}, generate=0)  # the accounts are not on this server
    for path in world.credentials_dir.iterdir():
        path.unlink()
    result = CliRunner().invoke(
        cli,
        ["plan", *world.cli_args(), "--detailed-exitcode"],
        env={"SYNCD_TOKEN": world.sandbox.admin_token},
        catch_exceptions=False,
    )
    assert_not_green(result)
    errors = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert errors == [
        f"✗ every read failed alike, 2 users: user_not_found: the API at {world.sandbox.url}"
        " answered 404 (no such user): is the API URL right? (janedoe, johnsmith)"
    ]
    assert "Incomplete: 2 of 2 users could not be read" in result.stdout


def test_no_credential_at_all_is_one_error_that_says_what_to_set(world: World):
    for path in world.credentials_dir.iterdir():
        path.unlink()
    result = plan(world)
    assert_not_green(result)
    assert "every read failed alike, 2 users: no_credentials" in result.stdout
    assert "SYNCD_CREDENTIALS_DIR" in result.stdout
    assert world.sandbox.stats()["total"] == 0


def test_tokens_without_the_read_scope_are_not_a_match(world: World):
    world.seed(
        {
            "users": {
                "janedoe": account(["jane.doe@example.com"], "tok-jane", ["profile_write"]),
                "johnsmith": account(["john@example.com"], "tok-john", ["profile_write"]),
            }
        }
    )
    result = plan(world, "--output", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["errors"] == [
        {
            "user": None,
            "code": "forbidden",
            "message": f"the API at {world.sandbox.url} answered 403: may the credentials"
            " read their users (scopes profile_read and email_read)?",
            "users": ["janedoe", "johnsmith"],
        }
    ]
    assert document["summary"]["users_unreadable"] == 2
    assert document["changes"] == []


def test_the_server_down_is_one_error_with_its_url(world: World):
    with socket.socket() as closed:  # a port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    result = plan(world, api_url=url)
    assert_not_green(result)
    # The run stops once it knows (issue 22, item 15): one line, naming the URL and why.
    errors = result.stderr.splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"syncd: API unreachable: {url}: none of 5 attempts got an answer")
    assert f"connection refused by {url.removeprefix('http://')}" in errors[0]


def test_a_wait_that_every_read_refused_is_said_once_with_the_wait(world: World):
    # It was "failed: HTTP 429": an ordinary throttling, as if syncd should have waited.
    world.sandbox.set_faults({"throttle_rate": 1, "throttle_wait": 1000})
    result = plan(world, "--output", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"] == [
        {
            "user": None,
            "code": "fetch_failed",
            "message": f"the API at {world.sandbox.url} failed: HTTP 429: the server asks to"
            " wait 1000 s (Retry-After), longer than syncd waits (300 s)",
            "users": ["janedoe", "johnsmith"],
        }
    ]


def test_one_unknown_user_among_readable_ones_is_named_on_its_own(world: World):
    desired = {**STANDARD_DESIRED, "users": {**STANDARD_DESIRED["users"], "ghost_user": {}}}
    world.desire(desired)
    write_secret(world.credentials_dir / "ghost_user.token", "tok-jane\n")
    result = plan(world)
    assert result.exit_code == 1
    assert "✗ ghost_user: forbidden:" in result.stdout  # jane's token may not read ghost_user
    assert "Plan: 3 changes for 1 user" in result.stdout  # and the rest of the plan is shown
    assert "Incomplete: 1 of 3 users could not be read" in result.stdout


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_complete_plan_still_says_match(world: World, output: str):
    world.desire({"version": 1, "users": {"johnsmith": {"full_name": "John Smith"}}})
    result = plan(world, "--output", output)
    assert result.exit_code == 0, result.output
    if output == "text":
        assert result.stdout.startswith("No changes: the accounts match the desired state.")
    else:
        assert json.loads(result.stdout)["summary"]["users_unreadable"] == 0


def test_a_user_without_credential_does_not_break_a_failure_said_once(world: World):
    world.seed(
        {
            "users": {
                "janedoe": account(["jane.doe@example.com"], "tok-jane", ["profile_write"]),
                "johnsmith": account(["john@example.com"], "tok-john", ["profile_write"]),
            }
        }
    )
    desired = {**STANDARD_DESIRED, "users": {**STANDARD_DESIRED["users"], "ghost_user": {}}}
    world.desire(desired)  # ghost_user has no credential file at all
    result = plan(world)
    assert result.exit_code == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert len(errors) == 2, errors
    assert errors[0].startswith("✗ every read failed alike, 2 users: forbidden:")
    assert errors[1].startswith("✗ ghost_user: no_credentials:")


def test_a_saved_plan_that_could_not_read_a_user_applies_as_partial(world: World, tmp_path):
    desired = {**STANDARD_DESIRED, "users": {**STANDARD_DESIRED["users"], "ghost_user": {}}}
    world.desire(desired)
    write_secret(world.credentials_dir / "ghost_user.token", "tok-jane\n")
    saved = tmp_path / "plan.json"
    assert plan(world, "--out", str(saved)).exit_code == 1  # saved, and not green

    applied = CliRunner().invoke(
        cli, ["apply", str(saved), *world.cli_args(), "--yes"], catch_exceptions=False
    )

    assert applied.exit_code == 1, applied.output  # the others converged; ghost_user unknown
    assert world.writes() == 3
    assert "ghost_user: forbidden" in applied.stdout
    [run] = world.query("SELECT result FROM runs WHERE command = 'apply'")
    assert run["result"] == "partial"


def test_an_answer_no_state_can_hold_is_a_malformed_response(world: World):
    # JSON can carry a NUL; PostgreSQL's text cannot hold it, and an outcome that
    # could not be recorded stopped a whole apply. (A lone surrogate likewise: see
    # tests/unit/test_live_answers.py; the sandbox refuses to store one.)
    httpx.patch(
        f"{world.sandbox.url}/api/v1.1/users/janedoe/",
        content='{"full_name": "Jane\\u0000Doe"}',
        headers={
            "Authorization": f"Bearer {world.sandbox.admin_token}",
            "Content-Type": "application/json",
        },
    ).raise_for_status()
    result = plan(world, "--output", "json")
    assert result.exit_code == 1, result.output
    [error] = json.loads(result.stdout)["errors"]
    assert (error["user"], error["code"]) == ("janedoe", "malformed_response")
    assert "'full_name' holds a NUL character" in error["message"]


def test_an_api_that_answers_no_read_fails_the_run_though_the_cache_answers_some(world: World):
    # Issue 22, item 2: the users answered from the cache made such a run `partial`.
    users = [f"user{n}" for n in range(1, 9)]
    world.seed(
        {"users": {name: account([f"{name}@example.com"], f"tok-{name}") for name in users}}
    )
    world.desire({"version": 1, "users": {name: {"full_name": name.title()} for name in users}})
    apply = ["apply", *world.cli_args(), "--yes"]
    assert CliRunner().invoke(cli, apply, catch_exceptions=False).exit_code == 0
    # Half of the users now manage their addresses too, which the cache does not hold.
    world.desire(
        {
            "version": 1,
            "users": {
                name: {
                    "full_name": name.title(),
                    **({"emails": [f"{name}@example.com"]} if n % 2 else {}),
                }
                for n, name in enumerate(users)
            },
        }
    )
    world.sandbox.set_faults({"error_rate": 1.0})  # 500 or 503, whichever

    result = plan(world, "--output", "json")
    assert result.exit_code == 1
    [error] = json.loads(result.stdout)["errors"]  # said once, whatever the statuses
    assert error["user"] is None
    assert len(error["users"]) == 4
    assert "/api/v1.1/users/" not in error["message"]

    applied = CliRunner().invoke(cli, apply, catch_exceptions=False)
    assert applied.exit_code == 1
    [run] = world.query(
        "SELECT result FROM runs WHERE command = 'apply' ORDER BY started_at DESC LIMIT 1"
    )
    assert run["result"] == "failed"

"""What syncd keeps per account belongs to one API (issue 22, item 1).

Two sandboxes with the same usernames, as staging and production are: after
converging the first, `plan --api-url <second>` said "No changes: the accounts
match" from the first one's cached answers, and `apply` wrote nothing, for up
to the cache's TTL. Now the cache, the not-kept records and the users' backoff
are kept per API URL, and a saved plan names the API it was made against.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from syncd.sandbox.runtime import SandboxConfig
from syncd.sandbox.server import serve_in_thread
from tests.conftest import ADMIN_TOKEN, SandboxHandle
from tests.world import STANDARD_DESIRED, STANDARD_SEED, World, account


@pytest.fixture(scope="module")
def second_server() -> Iterator[str]:
    with serve_in_thread(SandboxConfig(admin_token=ADMIN_TOKEN)) as url:
        yield url


@pytest.fixture
def second(second_server: str, world: World) -> SandboxHandle:
    """Another API with the same users and tokens as the world's, not yet converged."""
    handle = SandboxHandle(second_server, ADMIN_TOKEN)
    handle.reset(seed=STANDARD_SEED)
    world.seed(STANDARD_SEED)
    world.desire(STANDARD_DESIRED)
    return handle


def run(world: World, command: str, *args: str, api_url: str | None = None) -> Result:
    arguments = world.cli_args()
    if api_url is not None:
        arguments[arguments.index("--api-url") + 1] = api_url
    return CliRunner().invoke(cli, [command, *arguments, *args], catch_exceptions=False)


def full_name(sandbox: SandboxHandle, username: str) -> str:
    response = httpx.get(
        f"{sandbox.url}/api/v1.1/users/{username}/",
        headers={"Authorization": f"Bearer {sandbox.admin_token}"},
    )
    name: str = response.json()["full_name"]
    return name


def writes(sandbox: SandboxHandle) -> int:
    by_method = sandbox.stats()["by_method"]
    return sum(by_method.get(method, 0) for method in ("PATCH", "POST", "DELETE"))


def test_a_plan_against_another_api_reads_it_and_apply_writes_to_it(
    world: World, second: SandboxHandle
):
    assert run(world, "apply", "--yes").exit_code == 0
    assert run(world, "plan", "--detailed-exitcode").exit_code == 0  # the first one matches

    planned = run(world, "plan", "--detailed-exitcode", api_url=second.url)
    assert planned.exit_code == 2, planned.output
    assert "No changes" not in planned.stdout
    assert second.stats()["by_method"]["GET"] >= 2  # read from the second API itself

    applied = run(world, "apply", "--yes", api_url=second.url)
    assert applied.exit_code == 0, applied.output
    assert full_name(second, "janedoe") == "Jane Doe"
    assert run(world, "plan", "--detailed-exitcode", api_url=second.url).exit_code == 0


def test_what_one_api_did_not_keep_is_sent_to_another(world: World, second: SandboxHandle):
    seed = {"users": {"janedoe": account(["jane@example.com"], "tok-jane", company="Old Co")}}
    world.seed(seed, normalize={"company": "ignore"})  # the first API ignores the field
    second.reset(seed=seed)
    world.desire({"version": 1, "users": {"janedoe": {"company": "New Co"}}})
    assert run(world, "apply", "--yes").exit_code == 1  # does_not_converge, remembered

    planned = run(world, "plan", "--refresh", "--output", "json", api_url=second.url)
    document = json.loads(planned.stdout)
    assert document["errors"] == []
    assert [change["action"] for change in document["changes"]] == ["update_profile"]


def test_a_saved_plan_is_refused_against_another_api(
    world: World, second: SandboxHandle, tmp_path: Path
):
    saved = tmp_path / "plan.json"
    assert run(world, "plan", "--out", str(saved)).exit_code == 0
    document = json.loads(saved.read_text())
    assert document["api_url"] == world.sandbox.url
    assert document["created_at"].endswith("+00:00")

    refused = run(world, "apply", "--yes", str(saved), api_url=second.url)
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        f"syncd: {saved} was made against the API at {world.sandbox.url}, not {second.url}:"
        " nothing was applied. Make a new plan against this API."
    ]
    assert writes(second) == 0

    # A plan that does not say (an older syncd's) is made again, not guessed at.
    del document["api_url"], document["created_at"]
    saved.write_text(json.dumps(document))
    older = run(world, "apply", "--yes", str(saved))
    assert older.exit_code == 1
    assert "does not say which API it was made against" in older.output
    assert "Make a new plan" in older.output
    assert writes(world.sandbox) == 0

    # The same file as syncd writes it applies to its own API, spelt otherwise.
    assert run(world, "plan", "--out", str(saved)).exit_code == 0
    spelt = world.sandbox.url.replace("http://", "HTTP://") + "/"
    applied = run(world, "apply", "--yes", str(saved), api_url=spelt)
    assert applied.exit_code == 0, applied.output
    assert full_name(world.sandbox, "janedoe") == "Jane Doe"


def test_a_user_backing_off_on_one_api_is_read_at_once_on_another(
    world: World, second: SandboxHandle, start_daemon: Any
):
    # On the first API johnsmith's credential is refused: it backs off for an interval.
    world.sandbox.reset(
        seed={
            "users": {
                **STANDARD_SEED["users"],
                "johnsmith": account(
                    ["john@example.com"], "another-token", full_name="John Smith"
                ),
            }
        }
    )
    first = start_daemon("--once", SYNCD_INTERVAL="60")
    assert first.wait_for("user_failing", user="johnsmith")["retry_in"] > 30
    assert first.process.wait(timeout=30) == 1

    # The same state against the second API: johnsmith is not held back by the first's.
    daemon = start_daemon("--once", SYNCD_INTERVAL="60", SYNCD_API_URL=second.url)
    assert daemon.wait_for("cycle_finished")["result"] == "ok"
    assert second.stats()["by_method"]["GET"] >= 2

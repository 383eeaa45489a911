"""A plan that cannot know what syncd owns says so (trialops entry 3).

With users in `emails_mode: owned`, a plan made with a state that holds no ownership
record for the API (a CI job's fresh state directory) sees every address as its
owner's, and so none of the deletions the daemon, whose ledger owns them, will make.
Before, such a plan said "No changes: the accounts match the desired state." and
`--detailed-exitcode` gave 0; after the merge, the daemon deleted.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from syncd.cli.main import cli
from tests.world import World

PRIMARY, PERSONAL = "jane.doe@example.com", "old@example.com"  # both seeded (tests/world.py)


def desire(world: World, janes: list[str]) -> None:
    owned = {"emails_mode": "owned"}
    users = {
        "janedoe": {**owned, "emails": janes},
        "johnsmith": {**owned, "emails": ["john@example.com"]},
    }
    world.desire({"version": 1, "users": users})


def plan(world: World, state_dir: Path, *args: str) -> Result:
    arguments = world.cli_args()
    arguments[arguments.index("--state-dir") + 1] = str(state_dir)
    return CliRunner().invoke(
        cli, ["plan", *arguments, "--detailed-exitcode", *args], catch_exceptions=False
    )


def test_a_plan_without_the_ledger_says_so_once_and_does_not_exit_0(world: World, tmp_path):
    desire(world, [PRIMARY, PERSONAL])
    world.apply()  # the daemon's state: PERSONAL listed and read, syncd's
    desire(world, [PRIMARY])  # the pull request removes it

    daemons = plan(world, world.state_dir)
    assert daemons.exit_code == 2, daemons.output
    assert f"  - {PERSONAL}" in daemons.stdout
    assert "ownership_unknown" not in daemons.output

    fresh = plan(world, tmp_path / "ci-state")
    assert fresh.exit_code == 1, fresh.output
    lines = fresh.stdout.splitlines()
    (warning,) = [line for line in lines if "ownership_unknown" in line]
    assert warning.startswith("! ownership_unknown: 2 users in emails_mode: owned")
    assert "Plan with the daemon's state to see them" in warning
    assert lines[-1].startswith("No changes found, but deletions of addresses syncd owns")
    assert "match" not in fresh.stdout
    assert "(ownership_unknown)" in fresh.stderr

    document = json.loads(plan(world, tmp_path / "ci-state", "--output", "json").stdout)
    (entry,) = document["warnings"]
    assert entry["user"] is None
    assert entry["code"] == "ownership_unknown"
    assert document["summary"]["warnings"] == 1


def test_a_ledger_of_another_api_is_no_ledger_for_this_one(world: World):
    desire(world, [PRIMARY, PERSONAL])
    world.apply()
    world.query("UPDATE email_ownership SET api = 'https://accounts.example.org' RETURNING api")
    result = plan(world, world.state_dir, "--output", "json")
    assert result.exit_code == 1, result.output
    assert [w["code"] for w in json.loads(result.stdout)["warnings"]] == ["ownership_unknown"]


def test_without_owned_users_a_fresh_state_plans_as_before(world: World, tmp_path):
    world.desire({"version": 1, "users": {"johnsmith": {"emails": ["john@example.com"]}}})
    result = plan(world, tmp_path / "ci-state")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("No changes: the accounts match the desired state.")


def test_a_saved_plan_shows_the_warning_as_it_was_made(world: World, tmp_path):
    desire(world, [PRIMARY])
    saved = tmp_path / "plan.json"
    assert plan(world, tmp_path / "ci-state", "--out", str(saved)).exit_code == 1
    shown = CliRunner().invoke(cli, ["show", str(saved)], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("! ownership_unknown: 2 users in emails_mode: owned"), (
        shown.stdout
    )


def test_a_suspended_user_is_not_counted_in_the_warning(world: World, tmp_path):
    owned = {"emails_mode": "owned"}
    users = {
        "janedoe": {**owned, "emails": [PRIMARY]},
        "johnsmith": {**owned, "emails": ["john@example.com"], "suspend": {"reason": "INC-1"}},
    }
    world.desire({"version": 1, "users": users})
    fresh = plan(world, tmp_path / "ci-state")
    (warning,) = [line for line in fresh.stdout.splitlines() if "ownership_unknown" in line]
    assert warning.startswith("! ownership_unknown: 1 user in emails_mode: owned"), warning

"""--user, --exclude and --group on plan, apply and run --once; the run records its scope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.daemon.harness import once
from tests.world import World

TEAMS: dict[str, Any] = {
    "version": 1,
    "groups": {"island": {"location": "Private Island"}, "smiths": {}},
    "users": {
        "janedoe": {"groups": ["island"], "full_name": "Jane Doe"},
        "johnsmith": {"groups": ["smiths"], "full_name": "Johnny"},
    },
}


def plan(world: World, *selection: str) -> Any:
    return CliRunner().invoke(cli, ["plan", *world.cli_args(), "--output", "json", *selection])


SELECTIONS = [
    pytest.param((), ["janedoe", "johnsmith"], id="everyone"),
    pytest.param(("--user", "janedoe"), ["janedoe"], id="user"),
    pytest.param(("--exclude", "janedoe"), ["johnsmith"], id="exclude"),
    pytest.param(("--group", "island"), ["janedoe"], id="group"),
    pytest.param(("--group", "island", "--user", "johnsmith"), ["janedoe", "johnsmith"], id="or"),
    pytest.param(("--group", "smiths", "--exclude", "johnsmith"), [], id="exclude-wins"),
]


@pytest.mark.parametrize(("selection", "users"), SELECTIONS)
def test_plan_selection(world: World, selection: tuple[str, ...], users: list[str]) -> None:
    world.desire(TEAMS)
    result = plan(world, *selection)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert sorted({change["user"] for change in document["changes"]}) == users
    assert document["summary"]["users"] == len(users)
    scope = document["source"].get("scope")
    assert (scope is not None) == bool(selection)


def test_a_selection_that_leaves_no_one_does_not_say_the_accounts_match(world: World) -> None:
    world.desire(TEAMS)
    result = CliRunner().invoke(
        cli, ["plan", *world.cli_args(), "--group", "smiths", "--exclude", "johnsmith"]
    )
    assert result.exit_code == 0, result.output
    assert "No users to compare (none desired or selected): nothing was read." in result.output
    assert "match" not in result.output


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        pytest.param(("--user", "nobody"), "user 'nobody'", id="unknown-user"),
        pytest.param(("--exclude", "nobody"), "user 'nobody'", id="unknown-excluded-user"),
        pytest.param(("--group", "islands"), "group 'islands'", id="unknown-group"),
    ],
)
def test_a_selection_names_only_what_the_state_has(
    world: World, selection: tuple[str, ...], message: str
) -> None:
    world.desire(TEAMS)
    result = plan(world, *selection)
    assert result.exit_code == 1
    assert f"not in the desired state: {message}" in result.output


def test_apply_records_its_scope_and_a_saved_plan_keeps_it(world: World, tmp_path: Path) -> None:
    world.desire(TEAMS)
    saved = tmp_path / "plan.json"
    made = CliRunner().invoke(
        cli, ["plan", *world.cli_args(), "--group", "island", "--out", str(saved)]
    )
    assert made.exit_code == 0, made.output
    scope = {"users": [], "exclude": [], "groups": ["island"]}
    assert json.loads(saved.read_text())["source"]["scope"] == scope
    applied = CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes", str(saved)])
    assert applied.exit_code == 0, applied.output
    (run,) = world.query("SELECT scope FROM runs WHERE command = 'apply'")
    assert json.loads(run["scope"]) == scope
    assert world.emails_of("johnsmith") == ["john@example.com"]  # untouched


def test_apply_limits_a_new_plan_only(world: World, tmp_path: Path) -> None:
    refused = CliRunner().invoke(
        cli, ["apply", *world.cli_args(), "--yes", "--exclude", "janedoe", str(tmp_path / "p")]
    )
    assert refused.exit_code == 1
    assert "a saved plan is applied whole" in refused.output


def test_run_once_takes_a_selection(world: World, tmp_path: Path) -> None:
    world.desire(TEAMS)
    assert once(world, tmp_path, "--exclude", "johnsmith") == 0
    (run,) = world.query("SELECT scope FROM runs")
    assert json.loads(run["scope"]) == {"users": [], "exclude": ["johnsmith"], "groups": []}
    profiles = world.query("SELECT \"user\" FROM audit WHERE event = 'outcome'")
    assert {row["user"] for row in profiles} == {"janedoe"}

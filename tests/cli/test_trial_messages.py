"""Messages a new-operator trial found wanting (2026-12-07): each says what went wrong
once, in the operator's words, and the way on."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.cli.status_command import _guard, _pending
from syncd.state.lock import acquire
from tests.world import World


def test_an_apply_refused_the_lock_is_told_how_to_wait_for_it(world: World):
    held = acquire(world.state_dir)  # as a `syncd run` holds it for its life
    try:
        refused = CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"])
    finally:
        held.release()
    assert refused.exit_code == 1
    (line,) = refused.stderr.splitlines()
    assert "holds" in line
    assert "one run or apply per state directory" in line
    assert line.endswith("; wait for it with --lock-timeout 5m, or stop it"), line


def test_a_run_refused_the_lock_is_not_offered_a_flag_it_lacks(world: World):
    held = acquire(world.state_dir)
    try:
        refused = CliRunner().invoke(cli, ["run", "--once", *world.cli_args()])
    finally:
        held.release()
    assert refused.exit_code == 1
    assert "one run or apply per state directory" in refused.stderr
    assert "--lock-timeout" not in refused.stderr


def test_a_prune_refused_the_lock_names_the_holder_as_the_operations_guide_says(world: World):
    # The trial (hist D10): docs/operations.md promised "(audit prune refused)", which
    # only the PostgreSQL message said.
    assert CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"]).exit_code == 0
    held = acquire(world.state_dir)
    try:
        prune = ["audit", "prune", "--state-dir", str(world.state_dir), "--before", "1d"]
        refused = CliRunner().invoke(cli, [*prune, "--force"])
    finally:
        held.release()
    assert refused.exit_code == 1
    lock = world.state_dir / "syncd.state.lock"
    assert refused.stderr == (
        f"syncd: another syncd (pid {os.getpid()}) holds {lock}: one run or apply per state"
        " directory (audit prune refused)\n"
    )


@pytest.mark.parametrize(
    ("args", "env", "config", "expected"),
    [
        pytest.param(
            [],
            {"SYNCD_LOG_FORMAT": "jsn"},
            "",
            "invalid settings: log_format (SYNCD_LOG_FORMAT): should be 'auto', 'json' or"
            " 'console'",
            id="variable",
        ),
        pytest.param(
            [],
            {},
            "intervall = 5\n",
            "invalid settings: intervall (config file {config}): unknown setting"
            " (did you mean interval?)",
            id="config-file",
        ),
        pytest.param(
            ["--api-url", "127.0.0.1:40977"],
            {},
            "",
            "invalid settings: api_url (--api-url): must be an http:// or https:// URL",
            id="flag",
        ),
        pytest.param(
            [],
            {"SYNCD_NOTIFY": "webhook"},
            "",
            # A traceback from pydantic-settings' JSON parsing.
            "invalid settings: notify (SYNCD_NOTIFY): should be JSON: Expecting value at column 1",
            id="json-variable",
        ),
    ],
)
def test_a_bad_setting_is_named_where_it_was_set_in_our_words(
    tmp_path: Path, args: list[str], env: dict[str, str], config: str, expected: str
):
    desired = tmp_path / "desired.yaml"
    desired.write_text("version: 1\nusers:\n  janedoe: {full_name: Jane}\n")
    if config:
        (tmp_path / "syncd.toml").write_text(config)
        env = {**env, "SYNCD_CONFIG": str(tmp_path / "syncd.toml")}
    result = CliRunner().invoke(cli, ["plan", "-f", str(desired), *args], env=env)
    assert result.exit_code == 1
    assert result.stderr == f"syncd: {expected.format(config=tmp_path / 'syncd.toml')}\n"


def test_status_counts_one_in_the_singular():
    pending = {
        "planned": True,
        "as_of": "2026-12-07 17:00",
        "changes": 1,
        "users": 1,
        "users_exact": True,
        "users_unreadable": 1,
        "by_action": {"update_profile": 1},
    }
    assert _pending(pending) == (
        "1 change for 1 user (update_profile 1) after the last run;"
        " not known for 1 user that could not be read"
    )
    guard = {"max_deletions": 1, "deletions_planned": 1, "blocked": True, "held": False}
    assert _guard(guard) == "BLOCKED the last run: 1 deletion planned, the limit is 1"
    assert _guard({**guard, "blocked": False}) == "clear (at most 1 deletion per run)"


def test_status_lines_up_the_results_of_runs_with_long_command_names(world: World):
    # The trial (hist D10): `audit prune ok` ran past the column that `apply  ok` kept.
    assert CliRunner().invoke(cli, ["apply", *world.cli_args(), "--yes"]).exit_code == 0
    with sqlite3.connect(world.state_dir / "syncd.db") as db:
        db.execute(
            "INSERT INTO runs (id, command, started_at, ended_at, result)"
            " VALUES ('0123456789ab', 'audit prune', ?, ?, 'ok')",
            ["2026-12-08T00:00:00.000000+00:00", "2026-12-08T00:00:01.000000+00:00"],
        )
    shown = CliRunner().invoke(cli, ["status", "--state-dir", str(world.state_dir)])
    lines = shown.stdout.split("last runs\n")[1].splitlines()
    runs = [line for line in lines if " ok " in line]
    assert len(runs) == 2, shown.stdout
    assert len({line.index(" ok ") for line in runs}) == 1, runs

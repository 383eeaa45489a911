"""The commands on the PostgreSQL backend: the same results, one lock, secrets kept out.

Each test has a database of its own on the session's throwaway cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from syncd.state.backend import open_store
from tests.world import World


def run(world: World, *args: str) -> Result:
    command, *rest = args
    return CliRunner(env=world.state_env()).invoke(
        cli, [command, *world.cli_args(), *rest], catch_exceptions=False
    )


def syncd_process(world: World, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(world.root),
        "SYNCD_LOG_FORMAT": "json",
        **world.state_env(),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args, *world.cli_args()],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_apply_plan_audit_and_status_on_postgresql(pg_world: World):
    applied = run(pg_world, "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert pg_world.database is not None
    assert "in postgresql://syncd@127.0.0.1:" in applied.output
    before = pg_world.gets()
    planned = run(pg_world, "plan", "--detailed-exitcode")
    assert planned.exit_code == 0, planned.output
    assert pg_world.gets() == before  # the cache in the database answered

    events = CliRunner(env=pg_world.state_env()).invoke(cli, ["audit", "--output", "json"])
    assert events.exit_code == 0, events.output
    assert [e["event"] for e in json.loads(events.stdout)] == ["intent", "outcome"] * 3
    status = CliRunner(env=pg_world.state_env()).invoke(cli, ["status", "--output", "json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["state_file"] == pg_world.database.url
    assert report["daemon"]["running"] is False
    assert [r["result"] for r in report["runs"]] == ["ok"]  # a plan records no run
    assert pg_world.query("SELECT COUNT(*) AS n FROM live_accounts") == [{"n": 2}]


def test_apply_is_refused_while_another_holds_the_lock_and_a_plan_looks_beside(
    pg_world: World,
):
    with open_store(pg_world.settings(), "run") as store, store.lock("run"):
        refused = syncd_process(pg_world, "apply", "--yes")
        planned = syncd_process(pg_world, "plan", "--detailed-exitcode")
    assert refused.returncode == 1, refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("syncd: syncd run on "), line
    assert "holds the state at postgresql://syncd@" in line
    assert "one run or apply at a time (apply refused" in line
    assert planned.returncode == 2, planned.stderr  # janedoe's changes, shown
    # The plan wrote nothing: no run, and no answer in the cache the daemon keeps.
    assert pg_world.query("SELECT COUNT(*) AS n FROM live_accounts") == [{"n": 0}]
    assert pg_world.writes() == 0


def test_a_password_in_the_url_is_refused_without_being_shown(pg_world: World):
    assert pg_world.database is not None
    url = pg_world.database.url.replace("syncd@", "syncd:hunter2secret@")
    done = syncd_process(pg_world, "plan", SYNCD_STATE_URL=url)
    assert done.returncode == 1
    assert "hunter2secret" not in done.stderr + done.stdout
    assert "state_url (SYNCD_STATE_URL): must not hold a password" in done.stderr


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        pytest.param({"port": "1"}, "Connection refused", id="nothing-listens"),
        pytest.param({"password": "wrong"}, "password authentication failed", id="wrong-password"),
    ],
)
def test_an_unusable_database_is_one_line_naming_it(
    pg_world: World, change: dict[str, str], cause: str
):
    assert pg_world.database is not None
    env = dict(pg_world.state_env())
    if "port" in change:
        port = urlsplit(pg_world.database.url).port
        env["SYNCD_STATE_URL"] = pg_world.database.url.replace(f":{port}/", ":1/")
    else:
        wrong = pg_world.root / "wrong-password"
        fd = os.open(wrong, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"wrong\n")
        os.close(fd)
        env["SYNCD_STATE_PASSWORD_FILE"] = str(wrong)
    for command in (["plan"], ["apply", "--yes"]):
        done = syncd_process(pg_world, *command, **env)
        assert done.returncode == 1, done.stdout
        assert "Traceback" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("syncd: ")]
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("syncd: state database postgresql://syncd@127.0.0.1:")
        assert cause in lines[0]
    assert pg_world.writes() == 0


def test_prune_and_state_migrate_need_every_replica_stopped_as_the_docs_say(
    pg_world: World, tmp_path: Path
):
    # The trial (entry 9): both are refused while any `syncd run` holds the state, and
    # the retention section gave the prune's commands without the outage they need.
    assert run(pg_world, "apply", "--yes").exit_code == 0
    operations = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    section = operations.split("## Retention and verification\n")[1].split("\n## ")[0]
    retention = " ".join(section.split())
    commands = {
        "audit prune": ["audit", "prune", "--before", "2000-01-01", "--force"],
        "state migrate": ["state", "migrate", "--to", str(tmp_path / "elsewhere")],
    }
    with open_store(pg_world.settings(), "run") as store, store.lock("run"):
        for purpose, command in commands.items():
            done = CliRunner(env=pg_world.state_env()).invoke(cli, command)
            assert done.exit_code == 1, done.output
            assert "holds the state at postgresql://syncd@" in done.output
            assert done.output.rstrip().endswith(f"({purpose} refused)")
            assert f"`syncd {purpose}`" in retention or f"({purpose} refused)" in retention
    assert "stop every replica, the standbys too" in retention
    assert "holds the state … (audit prune refused)" in retention

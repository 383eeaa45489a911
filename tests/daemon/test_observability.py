"""What the daemon shows: /metrics, /healthz and `syncd status` (the deletion guard too)."""

from __future__ import annotations

import json
import re
import time

import httpx
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.daemon.harness import DaemonProcess
from tests.world import STANDARD_SEED, World, account


def test_metrics_and_healthz_answer(world: World, start_daemon):
    daemon: DaemonProcess = start_daemon(SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    assert daemon.wait_for("cycle_finished")["result"] == "ok"

    metrics = httpx.get(f"http://{address}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for line in (
        'syncd_runs_total{result="ok"} 1.0',
        'syncd_changes_total{action="update_profile",result="ok"} 1.0',
        'syncd_changes_total{action="add_email",result="ok"} 1.0',
        'syncd_changes_total{action="delete_email",result="ok"} 1.0',
        # janedoe's user and emails, johnsmith's user only (his emails are unmanaged)
        'syncd_http_requests_total{code="200",method="GET"} 3.0',
        'syncd_http_requests_total{code="200",method="PATCH"} 1.0',
        'syncd_http_requests_total{code="204",method="DELETE"} 1.0',
        "syncd_drift_users 0.0",
        "syncd_guard_blocked 0.0",
        "syncd_run_duration_seconds_count 1.0",
    ):
        assert line in text, [got for got in text.splitlines() if "_total{" in got]
    assert 'syncd_http_request_duration_seconds_bucket{le="0.005",method="GET"}' in text
    last_success = next(
        line for line in text.splitlines() if line.startswith("syncd_last_success_timestamp")
    )
    assert float(last_success.split()[1]) > 0

    health = httpx.get(f"http://{address}/healthz", timeout=5)
    assert (health.status_code, health.text) == (200, "ok: the event loop answers\n")
    ready = httpx.get(f"http://{address}/readyz", timeout=5)
    assert (ready.status_code, ready.text[:6]) == (200, "ready:")
    assert httpx.get(f"http://{address}/other", timeout=5).status_code == 404
    assert daemon.stop() == 0


def test_a_guard_block_shows_in_metrics_and_status(world: World, start_daemon):
    # The standard desired state deletes one address; past a limit of 0 the daemon
    # holds the deletion for `syncd approve` and applies the rest (issue 24).
    daemon: DaemonProcess = start_daemon(
        SYNCD_MAX_DELETIONS="0", SYNCD_METRICS_ADDR="127.0.0.1:0", SYNCD_INTERVAL="60"
    )
    address = daemon.wait_for("metrics_listening")["address"]
    held = daemon.wait_for("cycle_finished")
    assert held["result"] == "held"
    assert "holding 1 deletion (the limit is 0)" in held["message"]
    assert held["drift_users"] == 1
    assert world.writes() == 2  # the rename and the address added, not the deletion
    metrics = httpx.get(f"http://{address}/metrics", timeout=5).text
    assert "syncd_guard_blocked 1.0" in metrics
    assert 'syncd_runs_total{result="held"} 1.0' in metrics

    text = CliRunner().invoke(
        cli, ["status", "--state-dir", str(world.state_dir)], catch_exceptions=False
    )
    assert text.exit_code == 0, text.output
    assert "HELD the last run's deletions (1 planned, the limit is 0)" in text.output
    assert "1 change for 1 user (delete_email 1) after the last run" in text.output
    assert f"running, pid {daemon.pid}" in text.output

    as_json = CliRunner().invoke(
        cli,
        ["status", "--state-dir", str(world.state_dir), "--output", "json"],
        catch_exceptions=False,
    )
    report = json.loads(as_json.output)
    assert report["guard"] == {
        "max_deletions": 0,
        "blocked": False,
        "held": True,
        "deletions_planned": 1,
    }
    assert report["pending"]["by_action"] == {
        "update_profile": 0,
        "add_email": 0,
        "delete_email": 1,
    }
    assert report["next_run_at"] is not None
    assert [run["result"] for run in report["runs"]] == ["held"]
    assert daemon.stop() == 0

    after = CliRunner().invoke(
        cli, ["status", "--state-dir", str(world.state_dir)], catch_exceptions=False
    )
    assert "daemon       not running" in after.output
    # status reads without leaving anything behind that the service could not open.
    assert sorted(path.name for path in world.state_dir.iterdir() if "syncd.db" in path.name) == [
        "syncd.db"
    ]


def johnsmith_writes_fail(world: World, **desired: dict[str, object]) -> None:
    """johnsmith's token reads only: his rename fails 403 at every try, as carol_c's did."""
    read_only = account(["john@example.com"], "tok-john", ["profile_read", "email_read"])
    world.seed({"users": {**STANDARD_SEED["users"], "johnsmith": read_only}})
    world.desire({"version": 1, "users": {"johnsmith": {"full_name": "John S."}, **desired}})


def test_a_user_that_always_fails_lets_the_no_success_alert_fire(world: World, start_daemon):
    # A trial: every run ended `partial`, so syncd_last_success_timestamp_seconds had no
    # sample and `time() - syncd_last_success_timestamp_seconds > 3600` never fired.
    johnsmith_writes_fail(world, janedoe={"full_name": "Jane Doe"})
    began = time.time()
    daemon: DaemonProcess = start_daemon(SYNCD_METRICS_ADDR="127.0.0.1:0", SYNCD_INTERVAL="60")
    address = daemon.wait_for("metrics_listening")["address"]
    assert daemon.wait_for("cycle_finished")["result"] == "partial"
    metrics = httpx.get(f"http://{address}/metrics", timeout=5).text
    since = re.search(r"^syncd_last_success_timestamp_seconds (\S+)$", metrics, re.M)
    assert since is not None, "no sample: the alert on its age cannot fire"
    assert began - 1 <= float(since[1]) <= time.time()  # since the daemon became active
    assert daemon.stop() == 0


def test_a_user_waiting_for_its_retry_still_counts_as_drift(world: World, start_daemon):
    # A trial: syncd_drift_users went 1 1 0 1 0 0 0 1 0 while johnsmith waited for his
    # own retry, and each 0 restarted SyncdDriftPersisting's `for: 1h`.
    johnsmith_writes_fail(world)
    daemon: DaemonProcess = start_daemon(SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    retries = [daemon.wait_for("user_failing", user="johnsmith")["retry_in"]]
    cycles = [daemon.wait_for("cycle_finished") for _ in range(5)]
    retries.append(daemon.wait_for("user_failing", user="johnsmith")["retry_in"])
    assert max(retries) > 1.5, retries  # his backoff held him back some cycles
    assert [cycle["drift_users"] for cycle in cycles] == [1] * 5, cycles
    metrics = httpx.get(f"http://{address}/metrics", timeout=5).text
    assert "syncd_drift_users 1.0" in metrics
    assert daemon.stop() == 0


def test_held_deletions_block_the_guard_when_another_user_fails_too(world: World, start_daemon):
    # A trial: johnsmith's write failing 403 beside the held deletion made the run
    # `partial`, and status, the pages and syncd_guard_blocked said "guard clear" while
    # the set waited for `syncd approve`.
    johnsmith_writes_fail(world, janedoe={"emails": ["jane.doe@example.com"]})
    daemon: DaemonProcess = start_daemon(
        SYNCD_MAX_DELETIONS="0", SYNCD_METRICS_ADDR="127.0.0.1:0", SYNCD_INTERVAL="60"
    )
    address = daemon.wait_for("metrics_listening")["address"]
    finished = daemon.wait_for("cycle_finished")
    assert finished["result"] == "partial"  # not every other change was applied
    assert "holding 1 deletion (the limit is 0)" in finished["message"]
    metrics = httpx.get(f"http://{address}/metrics", timeout=5).text
    assert "syncd_guard_blocked 1.0" in metrics

    as_json = CliRunner().invoke(
        cli,
        ["status", "--state-dir", str(world.state_dir), "--output", "json"],
        catch_exceptions=False,
    )
    report = json.loads(as_json.output)
    assert report["guard"]["held"] is True
    (held_set,) = report["held_changes"]
    text = (
        CliRunner()
        .invoke(cli, ["status", "--state-dir", str(world.state_dir)], catch_exceptions=False)
        .output
    )
    assert "HELD the last run's deletions" in text
    assert "guard        clear" not in text

    # Rejected, the set no longer waits: status says so at once, whatever the last run.
    decided = CliRunner().invoke(
        cli, ["reject", held_set["id"], "--state-dir", str(world.state_dir)]
    )
    assert decided.exit_code == 0, decided.output
    report = json.loads(
        CliRunner()
        .invoke(cli, ["status", "--state-dir", str(world.state_dir), "--output", "json"])
        .output
    )
    assert report["guard"]["held"] is False
    assert daemon.stop() == 0


def test_status_without_a_state_file_says_so(tmp_path):
    result = CliRunner().invoke(cli, ["status", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no state file" in result.output

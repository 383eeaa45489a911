"""What the daemon shows: /metrics, /healthz and `syncd status` (the deletion guard too)."""

from __future__ import annotations

import json

import httpx
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.daemon.harness import DaemonProcess
from tests.world import World


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
    assert "holding 1 deletions (the limit is 0)" in held["message"]
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
    assert "1 change for up to 1 user " in text.output
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


def test_status_without_a_state_file_says_so(tmp_path):
    result = CliRunner().invoke(cli, ["status", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no state file" in result.output

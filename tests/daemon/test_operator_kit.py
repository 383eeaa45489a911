"""The operator's kit of `syncd run` (issue 14, items 1, 2 and 6), through the real daemon.

Observe mode writes nothing over several cycles and stays ready; `--once`
exits with apply's codes; a push hook with a real HMAC starts a cycle and a
wrong one starts nothing; the metrics are what Prometheus users expect.
"""

from __future__ import annotations

import json
import re
import signal
import time

import httpx
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.service.daemon import HOOK_SPACING
from tests.daemon.harness import SECRET, DaemonProcess, hooked_daemon, http_get, once, signed
from tests.world import World, write_secret


def test_observe_mode_writes_nothing_over_cycles_and_stays_ready(world: World, start_daemon):
    daemon: DaemonProcess = start_daemon("--observe", SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    for _ in range(3):
        finished = daemon.wait_for("cycle_finished")
        assert finished["result"] == "drift"
        assert finished["drift_users"] == 1
    drift = daemon.wait_for("drift", user="janedoe")
    assert "janedoe: update full_name, location" in drift["would"]
    assert world.writes() == 0
    assert http_get(f"http://{address}/readyz")[0] == 200
    metrics = httpx.get(f"http://{address}/metrics").text
    assert "syncd_drift_users 1.0" in metrics
    assert re.search(r'^syncd_runs_total\{result="drift"\} [3-9]', metrics, re.M)
    status = CliRunner().invoke(cli, ["status", "--state-dir", str(world.state_dir)]).stdout
    assert "mode         observing: plans and reports drift, writes nothing" in status
    assert "pending      3 changes for 1 user " in status
    assert daemon.stop() == 0


def test_once_runs_one_cycle_and_exits_with_apply_codes(world: World, tmp_path):
    assert once(world, tmp_path) == 0
    assert world.writes() == 3
    assert once(world, tmp_path) == 0  # nothing left to do
    (world.credentials_dir / "janedoe.token").write_text("revoked\n")
    for cached in world.state_dir.glob("cache.db*"):  # read every user again
        cached.unlink()
    assert once(world, tmp_path, "--observe") == 1  # janedoe unreadable: an error


def test_once_refused_by_the_deletion_guard_exits_3(world: World, tmp_path):
    assert once(world, tmp_path, SYNCD_MAX_DELETIONS="0") == 3
    assert world.writes() == 0
    # What it advises works for `run`, which has no --allow-deletions.
    status = CliRunner().invoke(cli, ["status", "--state-dir", str(world.state_dir)]).stdout
    assert (
        "refusing to delete 1 email address (the limit is 0): janedoe (1). Nothing was "
        "applied. If this is intended, run again with SYNCD_MAX_DELETIONS=1 "
        "(or syncd apply --allow-deletions 1)"
    ) in status
    assert once(world, tmp_path, SYNCD_MAX_DELETIONS="1") == 0
    assert world.writes() == 3


def test_a_signed_push_starts_a_cycle_now_and_a_wrong_one_nothing(
    world: World, start_daemon, tmp_path
):
    daemon, address = hooked_daemon(start_daemon, tmp_path / "hook.secret", SECRET)
    url = f"http://{address}/hooks/git"
    body = json.dumps({"ref": "refs/heads/main"}).encode()

    wrong = httpx.post(url, content=body, headers={"X-Hub-Signature-256": signed(body, "no")})
    assert wrong.status_code == 401
    missing = httpx.post(url, content=body)
    assert missing.status_code == 401
    gitlab_wrong = httpx.post(url, content=body, headers={"X-Gitlab-Token": "nope"})
    assert gitlab_wrong.status_code == 401
    too_large = httpx.post(
        url, content=b"x" * (1024 * 1024 + 1), headers={"X-Gitlab-Token": SECRET}
    )
    assert too_large.status_code == 413

    github = httpx.post(
        url,
        content=body,
        headers={"X-Hub-Signature-256": signed(body), "X-GitHub-Event": "push"},
    )
    assert github.status_code == 202
    assert daemon.wait_for("run_requested")["reason"] == "github hook"
    daemon.wait_for("cycle_finished", result="no_changes")  # now, not in an hour
    gitlab = httpx.post(url, content=body, headers={"X-Gitlab-Token": SECRET})
    assert gitlab.status_code == 202
    # HOOK_SPACING after the github hook's cycle started (tests/security/test_hooks.py).
    daemon.wait_for("cycle_finished", result="no_changes", timeout=HOOK_SPACING + 10)

    metrics = httpx.get(f"http://{address}/metrics").text
    assert 'syncd_webhook_requests_total{result="accepted"} 2.0' in metrics
    assert 'syncd_webhook_requests_total{result="unauthorized"} 3.0' in metrics
    assert 'syncd_webhook_requests_total{result="too_large"} 1.0' in metrics
    assert daemon.stop() == 0
    # The secret is in no log line and no metric.
    assert SECRET not in "\n".join(daemon.lines)
    assert SECRET not in metrics


def test_sighup_reads_a_rotated_hook_secret(world: World, start_daemon, tmp_path):
    secret_file = tmp_path / "hook.secret"
    daemon, address = hooked_daemon(start_daemon, secret_file, "the-old-secret")
    url = f"http://{address}/hooks/git"

    write_secret(secret_file, SECRET + "\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for("reloaded")
    daemon.wait_for("cycle_finished", result="no_changes")  # SIGHUP runs now
    old = httpx.post(url, content=b"{}", headers={"X-Gitlab-Token": "the-old-secret"})
    assert old.status_code == 401
    new = httpx.post(url, content=b"{}", headers={"X-Gitlab-Token": SECRET})
    assert new.status_code == 202
    assert daemon.stop() == 0


def test_metrics_are_what_prometheus_users_expect(world: World, start_daemon):
    daemon: DaemonProcess = start_daemon(SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]
    before = httpx.get(f"http://{address}/metrics").text  # before any run
    import syncd

    assert f'syncd_build_info{{version="{syncd.__version__}"}} 1.0' in before
    assert "_created" not in before
    # No run has ended yet: no sample, not a 0 that rules would read as 1970.
    assert not re.search(r"^syncd_last_run_timestamp_seconds ", before, re.M)
    # Nor a success: the time it became active, so that the rule on its age fires for
    # a daemon whose runs never end ok (test_observability).
    since = re.search(r"^syncd_last_success_timestamp_seconds (\S+)$", before, re.M)
    assert since is not None
    assert float(since[1]) <= time.time()
    assert float(since[1]) > time.time() - 60
    assert "# TYPE syncd_last_run_timestamp_seconds gauge" in before
    assert "syncd_active 1.0" in before  # on SQLite, the lock is ours from the start
    for series in (
        'syncd_runs_total{result="failed"} 0.0',
        'syncd_runs_total{result="partial"} 0.0',
        'syncd_changes_total{action="delete_email",result="failed"} 0.0',
        'syncd_http_requests_total{code="429",method="GET"} 0.0',
        'syncd_users_failing{code="unauthorized"} 0.0',
        'syncd_findings{code="user_not_found",severity="error"} 0.0',
        'syncd_scheduler_skipped_runs_total{reason="overlap"} 0.0',
    ):
        assert series in before, series
    daemon.wait_for("cycle_finished", result="ok")
    after = httpx.get(f"http://{address}/metrics").text
    last_run = re.search(r"^syncd_last_run_timestamp_seconds (\S+)$", after, re.M)
    assert last_run is not None
    assert float(last_run.group(1)) > 0
    assert daemon.stop() == 0


def test_findings_by_code_follow_the_last_run(world: World, start_daemon):
    world.desire({"version": 1, "users": {"janedoe": {"emails": ["old@example.com"]}}})
    daemon: DaemonProcess = start_daemon(
        SYNCD_METRICS_ADDR="127.0.0.1:0", SYNCD_MAX_DELETIONS="10"
    )
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished")
    metrics = httpx.get(f"http://{address}/metrics").text
    assert 'syncd_findings{code="primary_email_not_desired",severity="warning"} 1.0' in metrics
    assert daemon.stop() == 0

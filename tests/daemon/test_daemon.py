"""`syncd run` against the sandbox: converging, signals, systemd notifications, one instance."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid

from tests.daemon.harness import DaemonProcess, audit_events, daemon_env, http_get, runs
from tests.world import STANDARD_DESIRED, World

#: Seconds a SIGTERM may take: TimeoutStopSec=15s of deploy/syncd.service, after which
#: systemd kills the daemon. The daemon abandons its run after STOP_TIMEOUT (5 s); the
#: rest is margin for a loaded machine.
STOP_WITHIN = 15.0


def test_converges_and_talks_to_systemd(world: World, start_daemon):
    daemon: DaemonProcess = start_daemon(WATCHDOG_USEC="200000")

    ready = daemon.notifications.wait("READY")
    assert ready["READY"] == "1"
    finished = daemon.wait_for("cycle_finished")
    assert finished["result"] == "ok"
    assert finished["applied"] == 3  # janedoe: the profile, one address added, one deleted
    status = daemon.notifications.wait("STATUS")
    while status["STATUS"].startswith("started"):
        status = daemon.notifications.wait("STATUS")
    assert status["STATUS"].startswith("ok; 3 changes applied")
    assert "next run" in status["STATUS"]
    daemon.notifications.wait("WATCHDOG")
    assert sorted(world.emails_of("janedoe")) == sorted(
        STANDARD_DESIRED["users"]["janedoe"]["emails"]
    )
    assert runs(world)[0]["command"] == "run"

    stopping_at = time.monotonic()
    assert daemon.stop(timeout=STOP_WITHIN) == 0
    assert time.monotonic() - stopping_at < STOP_WITHIN
    assert daemon.notifications.wait("STOPPING")["STOPPING"] == "1"


def test_sigterm_during_a_write_exits_0_and_audits_its_outcome(world: World, start_daemon):
    # Each request takes 1.5 s, so the PATCH is on the wire when the signal arrives.
    world.seed(
        {"users": {"janedoe": world_account()}},
        faults={"latency_ms": 1500},
    )
    world.desire({"version": 1, "users": {"janedoe": {"full_name": "Jane Doe"}}})
    daemon: DaemonProcess = start_daemon(
        notify_socket=f"@syncd-test-{uuid.uuid4().hex}", SYNCD_RUN_DEADLINE="30"
    )
    daemon.notifications.wait("READY")  # an abstract socket works as well
    intent = daemon.wait_for("intent", timeout=15)
    assert intent["action"] == "update_profile"

    stopping_at = time.monotonic()
    assert daemon.stop(timeout=STOP_WITHIN) == 0
    assert time.monotonic() - stopping_at < STOP_WITHIN
    daemon.notifications.wait("STOPPING")

    (run,) = runs(world)
    assert run["result"] == "cancelled"
    events = audit_events(world, run["id"])
    outcomes = [event for event in events if event["event"] == "outcome"]
    assert [(event["action"], event["result"]) for event in outcomes] in (
        [("update_profile", "unknown")],
        [("update_profile", "ok")],  # the answer made it in time after all
    )


def world_account():
    from tests.world import account

    return account(["jane.doe@example.com"], "tok-jane", full_name="Jane")


def test_a_second_instance_is_refused_naming_the_pid(world: World, start_daemon, tmp_path):
    first: DaemonProcess = start_daemon()
    first.notifications.wait("READY")

    env = daemon_env(world, str(tmp_path / "second.sock"))
    second = subprocess.run(
        [sys.executable, "-m", "syncd", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert f"pid {first.pid}" in second.stderr
    assert "syncd.state.lock" in second.stderr
    assert first.process.poll() is None  # the first one goes on
    assert first.stop() == 0


def test_invalid_desired_state_changes_nothing_until_fixed(world: World, start_daemon):
    world.desired_file.write_text(
        "version: 1\nusers:\n  janedoe:\n    ful_name: Jane Doe\n", encoding="utf-8"
    )
    daemon: DaemonProcess = start_daemon(SYNCD_INTERVAL="0.5")

    invalid = daemon.wait_for("desired_state_invalid")
    assert any("unknown key 'ful_name'" in problem for problem in invalid["problems"])
    assert any(problem.startswith(f"{world.desired_file}:4:5") for problem in invalid["problems"])
    assert daemon.wait_for("cycle_finished")["result"] == "invalid"
    assert world.writes() == 0
    assert runs(world)[0]["result"] == "invalid"

    world.desire(STANDARD_DESIRED)
    fixed = daemon.wait_for("cycle_finished", result="ok")
    assert fixed["applied"] == 3
    assert daemon.stop() == 0


def test_failures_back_off_and_one_success_resets(world: World, start_daemon):
    good = {path: path.read_text() for path in world.credentials_dir.iterdir()}
    for path in good:
        path.write_text("not-a-token\n")  # every read answers 401: each run fails at once
    daemon: DaemonProcess = start_daemon(SYNCD_INTERVAL="0.4", SYNCD_METRICS_ADDR="127.0.0.1:0")
    address = daemon.wait_for("metrics_listening")["address"]

    delays = [daemon.wait_for("cycle_finished", result="failed")["next_run_in"] for _ in range(3)]
    # One failure keeps the interval; then 0.8, 1.6: doubling.
    assert delays[0] <= 0.4 + 0.04 + 0.05
    assert 0.75 <= delays[1] <= 0.85
    assert 1.55 <= delays[2] <= 1.65
    assert http_get(f"http://{address}/readyz", until=503)[0] == 503  # the runs fail
    assert http_get(f"http://{address}/healthz")[0] == 200  # yet the process is alive

    for path, text in good.items():
        path.write_text(text)
    recovered = daemon.wait_for("cycle_finished", result="ok", timeout=10)
    assert recovered["failures"] == 0
    assert recovered["next_run_in"] <= 0.4 + 0.04
    status, body = http_get(f"http://{address}/readyz", until=200)
    assert status == 200, body
    metrics = http_get(f"http://{address}/metrics")[1]
    failed = re.search(r'^syncd_runs_total\{result="failed"\} (\S+)$', metrics, re.MULTILINE)
    assert failed is not None
    assert float(failed.group(1)) >= 3
    assert "syncd_consecutive_failures 0.0" in metrics
    assert daemon.stop() == 0

    started = [run["started_at"] for run in runs(world)]
    assert len(started) >= 4


def test_sighup_rereads_the_settings_and_runs_now(world: World, start_daemon, tmp_path):
    config = tmp_path / "syncd.toml"
    config.write_text('interval = 120\nmetrics_addr = "127.0.0.1:0"\n')
    daemon: DaemonProcess = start_daemon(SYNCD_CONFIG=str(config), SYNCD_INTERVAL=None)
    address = daemon.wait_for("metrics_listening")["address"]
    assert daemon.wait_for("daemon_started")["interval"] == 120
    assert daemon.wait_for("cycle_finished")["result"] == "ok"

    # The listener is set up at start: a reload that moves it says it did not.
    config.write_text('interval = 90\nmetrics_addr = "127.0.0.1:1"\n')
    world.desire({**STANDARD_DESIRED, "users": {"johnsmith": {"location": "Remote"}}})
    daemon.process.send_signal(signal.SIGHUP)
    warned = daemon.wait_for("restart_needed")
    assert warned["settings"] == ["metrics_addr"]
    assert warned["level"] == "warning"
    assert daemon.wait_for("reloaded")["interval"] == 90
    assert http_get(f"http://{address}/healthz")[0] == 200
    daemon.notifications.wait("RELOADING")
    again = daemon.wait_for("cycle_finished")  # long before the 90 s interval
    assert again["result"] == "ok"
    assert again["applied"] == 1
    assert daemon.stop() == 0


def test_a_reload_with_a_port_that_is_no_number_is_refused_and_the_settings_kept(
    world: World, start_daemon, tmp_path
):
    # It was taken: every cycle after it logged run_crashed with a ValueError traceback.
    config = tmp_path / "syncd.toml"
    config.write_text(f'api_url = "{world.sandbox.url}"\ninterval = 120\n')
    daemon: DaemonProcess = start_daemon(
        SYNCD_CONFIG=str(config), SYNCD_API_URL=None, SYNCD_INTERVAL=None
    )
    assert daemon.wait_for("cycle_finished")["result"] == "ok"

    # What looks like a port may be the start of a password: never shown.
    config.write_text('api_url = "http://127.0.0.1:s3cretport"\ninterval = 120\n')
    daemon.process.send_signal(signal.SIGHUP)
    refused = daemon.wait_for("reload_failed")
    assert refused["error"] == (
        f"invalid settings: api_url (config file {config}): has an invalid port: "
        "the port after the host is a number from 1 to 65535"
    )
    assert refused["kept"] == "the previous settings"
    again = daemon.wait_for("cycle_finished")  # the run a reload starts, on the kept API
    assert again["result"] == "no_changes"
    assert daemon.stop() == 0
    assert not any("s3cretport" in line or "run_crashed" in line for line in daemon.lines)


def test_a_reload_to_a_credentials_directory_start_refuses_is_refused(
    world: World, start_daemon, tmp_path
):
    # It was taken: every cycle after it failed on the directory start would refuse.
    config = tmp_path / "syncd.toml"
    config.write_text(f'credentials_dir = "{world.credentials_dir}"\n')
    daemon: DaemonProcess = start_daemon(SYNCD_CONFIG=str(config), SYNCD_CREDENTIALS_DIR=None)
    assert daemon.wait_for("cycle_finished")["result"] == "ok"

    shared = tmp_path / "shared-credentials"
    shared.mkdir()
    shared.chmod(0o777)
    config.write_text(f'credentials_dir = "{shared}"\n')
    daemon.process.send_signal(signal.SIGHUP)
    refused = daemon.wait_for("reload_failed")
    assert refused["error"].startswith(f"credentials directory {shared} refused: group or")
    again = daemon.wait_for("cycle_finished")  # the run a reload starts, as it was
    assert again["result"] == "no_changes"
    assert daemon.stop() == 0


def test_a_hung_run_is_cancelled_at_its_deadline(world: World, start_daemon):
    # Every request takes 3 s; the run may take 1.2 s; a run is due every 0.5 s.
    world.seed({"users": {"janedoe": world_account()}}, faults={"latency_ms": 3000})
    daemon: DaemonProcess = start_daemon(SYNCD_INTERVAL="0.5", SYNCD_RUN_DEADLINE="1.2")

    skipped = daemon.wait_for("run_skipped")  # a run came due while the first one hung
    assert skipped["reason"] == "the previous run is running"
    late = daemon.wait_for("cycle_finished")
    assert late["result"] == "deadline"
    assert late["message"] == "cancelled after 1.2 s"
    assert 1.2 <= late["seconds"] < 2.5
    assert runs(world)[0]["result"] == "deadline"  # the run record says why, too
    daemon.wait_for("run_started")  # and the schedule goes on
    assert daemon.stop() == 0
    assert all(line.startswith("{") for line in daemon.lines), daemon.lines  # JSON only

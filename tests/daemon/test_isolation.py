"""One user's failure never delays the others (issue 12, item 4).

A revoked token made every daemon run `failed` and the whole schedule back
off, 300 → 600 → … → 3600 s, so the healthy users' drift waited too. Now such
a cycle is `partial`: the others go on at the normal interval, and the failing
user is retried with its own backoff, listed by `syncd status` and counted by
`syncd_users_failing{code}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.daemon.harness import DaemonProcess, cycles_within
from tests.world import World, admin_patch

WINDOW = 4


def test_a_revoked_token_fails_its_user_alone(world: World, start_daemon: Any):
    (world.credentials_dir / "johnsmith.token").write_text("revoked-token\n")
    daemon: DaemonProcess = start_daemon(
        SYNCD_DRIFT_WINDOW=str(WINDOW), SYNCD_METRICS_ADDR="127.0.0.1:0"
    )
    address = daemon.wait_for("metrics_listening")["address"]

    first = daemon.wait_for("cycle_finished")
    assert first["result"] == "partial"
    assert first["applied"] == 3  # janedoe converged beside the failing user
    assert first["next_run_in"] <= 1.1  # the schedule did not back off
    failing = daemon.wait_for("user_failing", user="johnsmith")
    assert failing["code"] == "unauthorized"

    # The healthy user's drift is corrected on time while johnsmith keeps failing.
    daemon.wait_for("cycle_finished", result="partial")
    changed = len(daemon.events)
    admin_patch(world, "janedoe", full_name="Changed behind syncd's back")
    outcome = daemon.wait_for("outcome", timeout=60, user="janedoe", action="update_profile")
    # Within window + interval, counted in cycles as in test_freshness, and the partial
    # cycles did not back off.
    missed = daemon.between("cycle_finished", since=changed, until=outcome)
    assert len(missed) <= cycles_within(WINDOW, 1) + 1, missed
    assert all(cycle["next_run_in"] <= 1.1 for cycle in missed), missed

    # johnsmith is read again after 1, 2, 4 intervals, then at most once per window.
    retries = [daemon.wait_for("user_failing", user="johnsmith")["retry_in"] for _ in range(6)]
    waits = sorted(set(retries))
    assert waits[0] <= 1.0
    assert max(waits) <= WINDOW
    assert any(1.5 <= wait <= 2.0 for wait in waits), retries  # it doubled

    metrics = httpx.get(f"http://{address}/metrics").text
    assert re.search(r'^syncd_users_failing\{code="unauthorized"\} 1\.0$', metrics, re.M)
    assert re.search(r'^syncd_users_failing\{code="fetch_failed"\} 0\.0$', metrics, re.M)
    assert "syncd_consecutive_failures 0.0" in metrics

    status = CliRunner().invoke(
        cli, ["status", "--state-dir", str(world.state_dir), "--output", "json"]
    )
    (user,) = json.loads(status.stdout)["users_in_error"]
    assert user["user"] == "johnsmith"
    assert user["code"] == "unauthorized"
    assert user["cycles"] >= 3
    text = CliRunner().invoke(cli, ["status", "--state-dir", str(world.state_dir)]).stdout
    assert "in error     1 user\n" in text
    assert "johnsmith" in text

    (world.credentials_dir / "johnsmith.token").write_text("tok-john\n")
    daemon.process.send_signal(1)  # SIGHUP: the fixed user is read at once
    daemon.wait_for("cycle_finished", timeout=15, result="no_changes")
    status = CliRunner().invoke(
        cli, ["status", "--state-dir", str(world.state_dir), "--output", "json"]
    )
    assert json.loads(status.stdout)["users_in_error"] == []
    assert daemon.stop() == 0


def test_a_write_the_server_does_not_keep_is_sent_once_over_many_cycles(
    world: World, start_daemon: Any
):
    world.sandbox.reset(
        seed={"users": {"janedoe": world_seed_user()}}, normalize={"full_name": "strip"}
    )
    world.desire({"version": 1, "users": {"janedoe": {"full_name": "Jane Doe "}}})
    daemon: DaemonProcess = start_daemon(SYNCD_DRIFT_WINDOW="2")
    for _ in range(4):
        finished = daemon.wait_for("cycle_finished")
        assert finished["result"] == "failed"
        # The same words after the write as after the plans that follow: each said once
        # (not "janedoe: update full_name: full_name: sent").
        assert finished["message"].startswith(
            'does_not_converge 1; janedoe: does_not_converge: full_name: sent "Jane Doe ", '
        )
    assert world.writes() == 1
    assert finished["next_run_in"] <= 1.1  # nothing failed to answer: no backoff
    assert daemon.stop() == 0


def world_seed_user() -> dict[str, Any]:
    from tests.world import account

    return account(["jane@example.com"], "tok-jane", full_name="Jane")

"""A push hook sent to a standby starts a cycle on the active instance (issue 22, item 5).

The shipped Service spreads hooks over two replicas: the standby answered "a
cycle starts now" and nothing ran. Now it passes the hook on (NOTIFY through
the state database) and the active instance starts the cycle; when it cannot,
it answers 503 with Retry-After, so the sender tries again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from syncd.service.daemon import HOOK_SPACING
from syncd.service.webhook import PASSED_ON
from syncd.state.postgres_backend import STANDBY_WAIT_MS
from tests.daemon.harness import SECRET, DaemonProcess, runs, signed
from tests.postgres import Cluster
from tests.world import World, write_secret

Start = Callable[..., DaemonProcess]
PUSH = json.dumps({"ref": "refs/heads/main"}).encode()
#: How soon the active instance must start the cycle of a hook sent to a standby. The
#: contract (docs/postgresql.md): it "starts its cycle within about a second", the
#: second being the standby's session, busy for up to STANDBY_WAIT_MS waiting for the
#: lock before it can send the NOTIFY. The rest is processing, which load stretches
#: (past a second on this 2-core machine): four seconds of margin for it, and the bound
#: still tells a cycle started at once from one spaced by HOOK_SPACING.
WITHIN = STANDBY_WAIT_MS / 1000 + 4.0
assert WITHIN < HOOK_SPACING


def post(address: str, delivery: str) -> httpx.Response:
    headers = {
        "X-Hub-Signature-256": signed(PUSH),
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
    }
    return httpx.post(f"http://{address}/hooks/git", content=PUSH, headers=headers, timeout=10)


def active_and_standby(
    start: Start, tmp_path: Path, interval: str = "3600"
) -> tuple[DaemonProcess, DaemonProcess, str]:
    """Two hooked daemons, the first active (its first cycle done); the standby's address."""
    secret_file = tmp_path / "hook.secret"
    write_secret(secret_file, SECRET + "\n")
    env = {
        "SYNCD_INTERVAL": interval,
        "SYNCD_METRICS_ADDR": "127.0.0.1:0",
        "SYNCD_WEBHOOK_SECRET_FILE": str(secret_file),
    }
    active = start(**env)
    active.wait_for("took_over", timeout=20)
    active.wait_for("hooks_listening", timeout=20)
    active.wait_for("cycle_finished", result="ok", timeout=60)
    standby = start(**env)
    address = standby.wait_for("metrics_listening", timeout=20)["address"]
    standby.wait_for("standby", timeout=20)
    return active, standby, address


def cycles_of(world: World, daemon: DaemonProcess) -> list[dict[str, object]]:
    return [run for run in runs(world) if run["pid"] == daemon.pid]


def test_a_hook_sent_to_the_standby_starts_a_cycle_on_the_active_one(
    pg_world: World, start_pg_daemon: Start, tmp_path: Path
):
    active, standby, address = active_and_standby(start_pg_daemon, tmp_path)
    sent_at = datetime.now(UTC)
    sent = time.monotonic()
    answer = post(address, "delivery-1")
    assert (answer.status_code, answer.text) == (202, PASSED_ON + "\n")

    requested = active.wait_for("run_requested", timeout=WITHIN)
    assert time.monotonic() - sent < WITHIN
    assert requested["reason"] == "github hook, passed on by a standby"
    assert (datetime.fromisoformat(requested["run_at"]) - sent_at).total_seconds() < WITHIN
    active.wait_for("cycle_finished", result="no_changes", timeout=30)
    hooked = cycles_of(pg_world, active)[-1]
    started = datetime.fromisoformat(str(hooked["started_at"]))
    assert (started - sent_at).total_seconds() < WITHIN

    # The standby ran nothing and took nothing; the same delivery again is a duplicate.
    assert cycles_of(pg_world, standby) == []
    names = {event.get("event") for event in standby.events}
    assert names.isdisjoint({"took_over", "run_requested", "cycle_finished"})
    again = post(address, "delivery-1")
    assert (again.status_code, again.text) == (202, "a delivery already received: ignored\n")
    assert standby.stop() == 0
    assert active.stop() == 0
    assert SECRET not in "\n".join(active.lines + standby.lines)


def test_the_active_one_listens_again_after_its_connection_is_cut(
    pg_world: World, start_pg_daemon: Start, tmp_path: Path, postgres_cluster: Cluster
):
    active, _standby, address = active_and_standby(start_pg_daemon, tmp_path)
    assert pg_world.database is not None
    cut = postgres_cluster.terminate(pg_world.database.name, f"syncd hooks on % pid {active.pid}")
    assert len(cut) == 1
    active.wait_for("hooks_listening_lost", timeout=10)
    assert active.wait_for("hooks_listening", timeout=10)["again"] is True
    # A hook passed on while nobody listened would be lost: a cycle to be safe.
    missed = active.wait_for("run_requested", timeout=10)
    assert missed["reason"] == "hooks passed on by standbys may have been missed"

    sent = time.monotonic()
    assert post(address, "delivery-2").status_code == 202
    # The cycle just asked for has started: this one is coalesced with the next.
    heard = active.wait_for(
        "run_requested", timeout=WITHIN, reason="github hook, passed on by a standby"
    )
    assert time.monotonic() - sent < WITHIN
    assert heard["run_at"]
    assert active.stop() == 0
    # Stopping closed the listening connection: not taken for one lost.
    names = [event.get("event") for event in active.events]
    after_stop = names[names.index("stop_requested") :]
    assert "hooks_listening_lost" not in after_stop
    assert after_stop[-1] == "daemon_stopped"


def test_a_standby_that_cannot_pass_a_hook_on_answers_503_and_its_retry_is_served(
    pg_world: World, start_pg_daemon: Start, tmp_path: Path, postgres_cluster: Cluster
):
    active, standby, address = active_and_standby(start_pg_daemon, tmp_path)
    assert pg_world.database is not None
    with postgres_cluster.admin(pg_world.database.name) as admin:
        admin.execute("REVOKE EXECUTE ON FUNCTION pg_notify(text, text) FROM PUBLIC")
    refused = post(address, "delivery-3")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert refused.text == "no cycle can be started now: try again\n"
    metrics = httpx.get(f"http://{address}/metrics", timeout=10).text
    assert 'syncd_webhook_requests_total{result="unavailable"} 1.0' in metrics
    with postgres_cluster.admin(pg_world.database.name) as admin:
        admin.execute("GRANT EXECUTE ON FUNCTION pg_notify(text, text) TO PUBLIC")

    retried = post(address, "delivery-3")  # the sender's retry: not a duplicate
    assert (retried.status_code, retried.text) == (202, PASSED_ON + "\n")
    active.wait_for("run_requested", timeout=WITHIN)
    assert standby.stop() == 0
    assert active.stop() == 0


def test_an_instance_that_loses_the_lock_stops_listening_and_passes_hooks_on(
    pg_world: World, start_pg_daemon: Start, tmp_path: Path, postgres_cluster: Cluster
):
    first, second, _ = active_and_standby(start_pg_daemon, tmp_path, interval="1")
    address = next(e["address"] for e in first.events if e["event"] == "metrics_listening")
    assert pg_world.database is not None
    cut = postgres_cluster.terminate(pg_world.database.name, f"syncd run on % pid {first.pid}")
    assert len(cut) == 1
    first.wait_for("lock_lost", timeout=30)
    second.wait_for("took_over", timeout=10)
    second.wait_for("hooks_listening", timeout=10)
    first.wait_for("standby", timeout=30)
    names = [event.get("event") for event in first.events]
    assert "hooks_listening_lost" not in names  # it stopped listening: nothing was lost

    sent = time.monotonic()
    answer = post(address, "delivery-4")  # to the instance that was active
    assert (answer.status_code, answer.text) == (202, PASSED_ON + "\n")
    second.wait_for("run_requested", timeout=WITHIN, reason="github hook, passed on by a standby")
    assert time.monotonic() - sent < WITHIN
    assert second.stop() == 0
    assert first.stop() == 0

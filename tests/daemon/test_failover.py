"""One active instance and a standby on one PostgreSQL database, as processes.

Two `syncd run` against the sandbox: exactly one writes; when it is killed in
the middle of a cycle, its session cut, or the server restarted under it, an
instance takes over at once, first closes what the other left
open, converges, and no write that had succeeded is sent twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.daemon.harness import DaemonProcess, http_get
from tests.postgres import Cluster
from tests.world import World, account

INTERVAL = 2.0
USERS = 30
ENV = {
    "SYNCD_INTERVAL": str(INTERVAL),
    "SYNCD_CONCURRENCY": "1",
    "SYNCD_METRICS_ADDR": "127.0.0.1:0",
}
Start = Callable[..., DaemonProcess]
#: Seconds from the kill to the standby's takeover. The contract (docs/postgresql.md):
#: when the active session ends "a standby gets the lock at once", and a killed
#: process's connection closes with it. The bound tells that apart from a takeover that
#: waits for the server to notice a vanished host (the keepalives of SESSION_SETTINGS,
#: about 25 s); the rest is margin for a loaded machine, which took more than 4 s.
TAKEOVER_WITHIN = 12.0


def renaming_world(world: World) -> list[str]:
    users = {f"fail{i:03d}": account([f"f{i}@example.com"], f"tok-f{i}") for i in range(USERS)}
    # Latency keeps a cycle in flight long enough to be interrupted in the middle.
    world.seed({"users": users}, faults={"latency_ms": 30})
    world.desire({"version": 1, "users": {name: {"full_name": "renamed"} for name in users}})
    return list(users)


def mid_cycle(daemon: DaemonProcess, outcomes: int = 5) -> None:
    """Return once `daemon` has finished `outcomes` writes and the next one's intent is made."""
    for _ in range(outcomes):
        daemon.wait_for("outcome", timeout=30)
    daemon.wait_for("intent", timeout=30)


def status(world: World) -> dict[str, Any]:
    done = CliRunner(env=world.state_env()).invoke(cli, ["status", "--output", "json"])
    assert done.exit_code == 0, done.output
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def assert_converged_once_each(world: World, users: list[str], in_flight: int = 1) -> None:
    """Every user renamed; one ok outcome each; at most the writes in flight sent twice."""
    for name in users:  # read past syncd: a plan would be refused while an instance runs
        response = httpx.get(
            f"{world.sandbox.url}/api/v1.1/users/{name}/",
            headers={"Authorization": f"Bearer {world.sandbox.admin_token}"},
        )
        assert response.json()["full_name"] == "renamed", name
    ok = world.query("SELECT \"user\" FROM audit WHERE event = 'outcome' AND result = 'ok'")
    written = Counter(row["user"] for row in ok)
    assert set(written.values()) == {1}
    # A write interrupted may have landed: re-read, its user then needs none.
    interrupted = world.query("SELECT \"user\" FROM audit WHERE result = 'interrupted'")
    assert set(users) - set(written) <= {row["user"] for row in interrupted}
    patches = sum(
        r["count"]
        for r in world.sandbox.stats()["requests"]
        if r["method"] == "PATCH" and r["status"] == 200
    )
    assert USERS <= patches <= USERS + in_flight
    open_intents = world.query(
        "SELECT i.seq FROM audit AS i WHERE i.event = 'intent' AND NOT EXISTS"
        " (SELECT 1 FROM audit AS o WHERE o.intent_seq = i.seq)"
    )
    assert open_intents == []


def intents_before(daemon: DaemonProcess, event: str) -> int:
    """The intents `daemon` logged before its first `event`."""
    names = [e.get("event") for e in daemon.events]
    return names[: names.index(event)].count("intent")


def test_the_standby_takes_over_when_the_active_one_is_killed(
    pg_world: World, start_pg_daemon: Start
):
    users = renaming_world(pg_world)
    # Nothing to write until the standby is up and the status read, which take seconds
    # under load: a cycle begun before would be over, with no write left to interrupt.
    renamed = pg_world.desired_file.read_text()
    pg_world.desire({"version": 1, "users": {name: {} for name in users}})
    active = start_pg_daemon(**ENV)
    active.wait_for("took_over", timeout=20)
    # The lock was free: it stood by for nobody ("nobody (it is being released)").
    assert "standby" not in {event.get("event") for event in active.events}
    active.wait_for("cycle_finished", result="no_changes", timeout=60)
    standby = start_pg_daemon(**ENV)
    address = standby.wait_for("metrics_listening", timeout=20)["address"]
    standby.wait_for("standby", timeout=20)
    code, body = http_get(f"http://{address}/readyz")
    # Who is active, and where the database is, are for `syncd status` (below).
    assert (code, body) == (200, "ready: standby\n")

    text = CliRunner(env=pg_world.state_env()).invoke(cli, ["status"]).output
    assert "daemon       active: syncd run on " in text
    assert f"pid {active.pid}, since " in text
    assert "standby      syncd run on " in text
    shown = status(pg_world)["daemon"]
    assert shown["running"]
    assert shown["active"].endswith(f"pid {active.pid}")
    assert [s["name"].endswith(f"pid {standby.pid}") for s in shown["standbys"]] == [True]

    aside = pg_world.desired_file.with_suffix(".tmp")
    aside.write_text(renamed)
    aside.replace(pg_world.desired_file)
    mid_cycle(active)  # of the next cycle, the first with writes
    active.process.kill()
    killed, killed_at = time.monotonic(), int(time.time())
    taken = standby.wait_for("took_over", timeout=TAKEOVER_WITHIN)
    assert time.monotonic() - killed < TAKEOVER_WITHIN
    assert taken["interrupted_writes"] == 1
    standby.wait_for("cycle_finished", result="ok", timeout=60)
    assert intents_before(standby, "took_over") == 0  # exactly one instance writes
    # "active since" is when it took over, not when its process started: a failover shows.
    shown = status(pg_world)["daemon"]
    assert shown["active"].endswith(f"pid {standby.pid}")
    assert datetime.fromisoformat(shown["started_at"]).timestamp() >= killed_at

    assert_converged_once_each(pg_world, users)
    by_pid = Counter(
        row["pid"]
        for row in pg_world.query(
            "SELECT r.pid FROM audit AS a JOIN runs AS r ON r.id = a.run_id"
            " WHERE a.event = 'intent'"
        )
    )
    assert set(by_pid) == {active.pid, standby.pid}  # both instances' events
    interrupted = pg_world.query(
        "SELECT o.run_id, i.run_id AS intent_run FROM audit AS o JOIN audit AS i"
        " ON i.seq = o.intent_seq WHERE o.result = 'interrupted'"
    )
    assert len(interrupted) == 1
    killed_runs = pg_world.query("SELECT result FROM runs WHERE pid = ?", (active.pid,))
    assert killed_runs[-1]["result"] == "interrupted"
    assert standby.stop() == 0
    assert pg_world.database is not None
    password = pg_world.database.password_file.read_text().strip()
    for daemon in (active, standby):
        assert not [line for line in daemon.lines if password in line]


def test_a_standby_exports_no_timestamp_for_the_alerts_to_age(
    pg_world: World, start_pg_daemon: Start
):
    # It exported 0 for each ("1970"): SyncdNotReady and SyncdSourceStale fired for ever.
    active = start_pg_daemon(**ENV)
    addresses = {active: active.wait_for("metrics_listening", timeout=20)["address"]}
    active.wait_for("cycle_finished", result="ok", timeout=60)
    standby = start_pg_daemon(**ENV)
    addresses[standby] = standby.wait_for("metrics_listening", timeout=20)["address"]
    standby.wait_for("standby", timeout=20)
    metrics = {}
    for daemon, address in addresses.items():
        code, metrics[daemon] = http_get(f"http://{address}/metrics")
        assert code == 200
    assert "\nsyncd_active 0.0\n" in metrics[standby]
    assert "\nsyncd_active 1.0\n" in metrics[active]
    for name in ("last_run", "last_success", "source_last_success", "next_run"):
        series = f"\nsyncd_{name}_timestamp_seconds "
        assert series not in metrics[standby], name
        assert series in metrics[active], name
    assert standby.stop() == 0
    assert active.stop() == 0


def test_an_instance_whose_session_is_cut_stops_writing(
    pg_world: World, start_pg_daemon: Start, postgres_cluster: Cluster
):
    users = renaming_world(pg_world)
    first = start_pg_daemon(**ENV)
    address = first.wait_for("metrics_listening", timeout=20)["address"]
    first.wait_for("took_over", timeout=20)
    second = start_pg_daemon(**ENV)
    second.wait_for("standby", timeout=20)
    mid_cycle(first)

    assert pg_world.database is not None
    cut = postgres_cluster.terminate(pg_world.database.name, f"syncd run on % pid {first.pid}")
    assert len(cut) == 1
    first.wait_for("lock_lost", timeout=30)
    second.wait_for("took_over", timeout=TAKEOVER_WITHIN)
    first.wait_for("standby", timeout=30)  # it stands by now, and writes nothing more
    second.wait_for("cycle_finished", result="ok", timeout=60)
    names = [e.get("event") for e in first.events]
    cut_at = names.index("lock_lost")
    assert "intent" not in names[cut_at:]
    # What it wrote before the cut is counted by the process that sent it, and the
    # cut cycle as the error it ended with.
    written = Counter(
        (e["action"], e["result"]) for e in first.events[:cut_at] if e.get("event") == "outcome"
    )
    assert written[("update_profile", "ok")] >= 5
    code, metrics = http_get(f"http://{address}/metrics")
    assert code == 200
    for (action, result), count in written.items():
        assert f'\nsyncd_changes_total{{action="{action}",result="{result}"}} {count:.1f}\n' in (
            metrics
        )
    assert '\nsyncd_runs_total{result="error"} 1.0\n' in metrics
    assert_converged_once_each(pg_world, users)
    assert second.stop() == 0
    assert first.stop() == 0


def test_the_server_restarted_under_an_active_instance(
    pg_world: World, start_pg_daemon: Start, postgres_cluster: Cluster
):
    users = renaming_world(pg_world)
    daemon = start_pg_daemon(**ENV)
    daemon.wait_for("took_over", timeout=20)
    mid_cycle(daemon)

    postgres_cluster.restart()
    daemon.wait_for("lock_lost", timeout=30)
    daemon.wait_for("took_over", timeout=30)  # connected again, and the lock is its own again
    daemon.wait_for("cycle_finished", result="ok", timeout=60)
    assert_converged_once_each(pg_world, users)
    assert daemon.stop() == 0

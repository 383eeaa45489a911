"""The PostgreSQL backend's figures: apply on PostgreSQL against SQLite, and the takeover time.

Both backends in the same run: for each, a sandbox of `users` generated users
(one change each), a cold plan that fills the cache, then the timed apply, so
that the ratio compares the state's cost alone on the same machine at the same
moment. The cluster is a throwaway one (tests/postgres.py) with its durability
on (fsync, synchronous commit), as a real server has it; SQLite runs as syncd
always runs it (WAL, syncd.db with synchronous=FULL).

Takeover: two `syncd run` on one database; the active one is killed (SIGKILL)
and the time until the standby logs `took_over`, and until its first cycle
ends, is measured, TAKEOVERS times (a new standby each time).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from bench import runs
from tests.postgres import Cluster, running_cluster

Measured = tuple[str, float, str, dict[str, Any]]
SandboxProcess = Callable[..., AbstractContextManager[tuple[str, int]]]

TAKEOVERS = 5
TAKEOVER_USERS = 200
TAKEOVER_INTERVAL = 5.0


def _state_env(cluster: Cluster | None) -> dict[str, str]:
    if cluster is None:
        return {}
    database = cluster.new_database()
    return {
        "SYNCD_STATE_URL": database.url,
        "SYNCD_STATE_PASSWORD_FILE": str(database.password_file),
    }


def _apply(sandbox: SandboxProcess, users: int, cluster: Cluster | None) -> dict[str, Any]:
    """A cold plan, then the timed apply of one change per user, on one backend."""
    admin = "bench-" + os.urandom(8).hex()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        credentials, desired, state = root / "credentials", root / "desired.yaml", root / "state"
        runs.desired_file(desired, users, change=True)
        env = _state_env(cluster)
        with sandbox(users, admin, "--credentials-out", str(credentials)) as (url, _):
            args = runs.plan_args(url, desired, state, credentials)
            planned = runs.run_syncd(["plan", *args], env=env)
            if planned.returncode not in (0, 2):
                raise SystemExit(f"bench: the plan failed ({planned.returncode})")
            before = runs.stats(url)
            apply_args = runs.plan_args(url, desired, state, credentials, output=False)
            applied = runs.run_syncd(
                ["apply", *apply_args, "--yes", "--allow-deletions", "0"], env=env
            )
            made = runs.requests_made(before, runs.stats(url))
    if applied.returncode != 0:
        raise SystemExit(f"bench: the apply failed ({applied.returncode})")
    writes = sum(made.get(m, 0) for m in ("PATCH", "POST", "DELETE"))
    return {
        "seconds": round(applied.seconds, 2),
        "writes": writes,
        "writes_s": round(writes / applied.seconds),
        "peak_rss_mb": round(applied.peak_rss_mb),
    }


class _Daemon:
    """`syncd run` with its JSON log events in a queue, read by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if line.startswith("{"):
                self.events.put((time.monotonic(), json.loads(line)))

    def wait_for(self, name: str, timeout: float = 120, **match: Any) -> float:
        """When (monotonic) the daemon logged `name`; SystemExit after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                at, event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit(f"bench: no {name} from syncd run in {timeout} s") from None
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return at

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def _takeovers(sandbox: SandboxProcess, cluster: Cluster) -> dict[str, Any]:
    admin = "bench-" + os.urandom(8).hex()
    to_active: list[float] = []
    to_cycle: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        credentials, desired = root / "credentials", root / "desired.yaml"
        runs.desired_file(desired, TAKEOVER_USERS, change=True)
        with sandbox(TAKEOVER_USERS, admin, "--credentials-out", str(credentials)) as (url, _):
            env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "NOTIFY_"))}
            env.update(
                SYNCD_API_URL=url,
                SYNCD_DESIRED=str(desired),
                SYNCD_CREDENTIALS_DIR=str(credentials),
                SYNCD_INTERVAL=str(TAKEOVER_INTERVAL),
                SYNCD_LOG_FORMAT="json",
                **_state_env(cluster),
            )
            started: list[_Daemon] = []

            def start(n: int) -> _Daemon:
                daemon = _Daemon({**env, "SYNCD_STATE_DIR": str(root / f"state{n}")})
                started.append(daemon)
                return daemon

            try:
                active = start(0)
                active.wait_for("took_over")
                active.wait_for("cycle_finished")
                for n in range(1, TAKEOVERS + 1):
                    standby = start(n)
                    standby.wait_for("standby")
                    killed = time.monotonic()
                    active.kill()
                    to_active.append(standby.wait_for("took_over") - killed)
                    to_cycle.append(standby.wait_for("cycle_finished") - killed)
                    active = standby
            finally:
                for daemon in started:
                    daemon.kill()
    return {
        "took_over_ms_median": round(statistics.median(to_active) * 1000, 1),
        "took_over_ms_max": round(max(to_active) * 1000, 1),
        "first_cycle_s_median": round(statistics.median(to_cycle), 2),
        "takeovers": len(to_active),
        "users": TAKEOVER_USERS,
        "interval_s": TAKEOVER_INTERVAL,
    }


def figures(sandbox: SandboxProcess, users: int) -> list[Measured]:
    """Apply on both backends (the ratio), then the takeover time."""
    with running_cluster(durable=True) as cluster:
        on_sqlite = _apply(sandbox, users, None)
        on_postgres = _apply(sandbox, users, cluster)
        takeover = _takeovers(sandbox, cluster)
    ratio = on_postgres["writes_s"] / on_sqlite["writes_s"]
    return [
        (
            f"apply, {users:,} users, PostgreSQL against SQLite",
            ratio * 100,
            "% of SQLite's writes/s",
            {
                "ratio": round(ratio, 2),
                **{f"postgresql_{k}": v for k, v in on_postgres.items()},
                **{f"sqlite_{k}": v for k, v in on_sqlite.items()},
                "target": "reported (the price of a shared, durable state)",
            },
        ),
        (
            "takeover: active instance killed, standby active",
            takeover["took_over_ms_median"],
            "ms",
            {**takeover, "target": "within 2 intervals"},
        ),
    ]

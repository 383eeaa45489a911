"""Helpers of the daemon tests: `syncd run` as a subprocess, observed through its own channels.

Every wait has a deadline and waits for an event (a datagram, a log line, a row
in the state file), never for a bare amount of time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from syncd.service.schedule import jitter_for
from tests.world import World, write_secret

#: Seconds a wait gives up after: how long until a test calls the daemon hung, no bound
#: of a contract (a test that checks one says so). Under load (loadavg 11 on this
#: 2-core machine) a daemon's first line took more than 10 s: the imports alone.
DEFAULT_WAIT = 30.0


class NotifySocket:
    """The socket systemd would listen on: collects every datagram the daemon sends."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)
        self.messages: list[dict[str, str]] = []
        self._seen = 0

    def wait(self, key: str, timeout: float = DEFAULT_WAIT, **match: str) -> dict[str, str]:
        """The next message (after the last one returned) that sets `key`, and `match`es."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._seen, len(self.messages)):
                message = self.messages[index]
                if key in message and all(message.get(k) == v for k, v in match.items()):
                    self._seen = index + 1
                    return message
            self._seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key}= notification in {timeout} s: {self.messages}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(fields)

    def close(self) -> None:
        self.sock.close()


class DaemonProcess:
    """A running `syncd run`, its JSON log lines and its notifications."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.notifications = NotifySocket(env["NOTIFY_SOCKET"])
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._seen = 0
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                if line.startswith("{"):
                    self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, event: str, timeout: float = DEFAULT_WAIT, **match: Any) -> dict[str, Any]:
        """The next log event (after the last one returned) named `event` that `match`es."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(self._seen, len(self.events)):
                    found = self.events[index]
                    if found.get("event") == event and all(
                        found.get(k) == v for k, v in match.items()
                    ):
                        self._seen = index + 1
                        return found
                self._seen = len(self.events)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader_alive):
                    tail = "\n".join(self.lines[-40:])
                    raise AssertionError(f"no {event} {match} in {timeout} s; stderr:\n{tail}")
                self._changed.wait(remaining)

    def wait_for_count(self, event: str, count: int, timeout: float = DEFAULT_WAIT) -> None:
        """Until `count` events named `event` were logged in all (lines are read on a thread)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(e.get("event") == event for e in self.events) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader_alive):
                    raise AssertionError(f"fewer than {count} {event} in {timeout} s")
                self._changed.wait(remaining)

    def between(self, event: str, since: int, until: dict[str, Any]) -> list[dict[str, Any]]:
        """The events named `event` logged from index `since` (a `len(events)` taken
        earlier) up to the event `until` (one that wait_for returned)."""
        with self._changed:
            end = next(i for i in range(len(self.events) - 1, -1, -1) if self.events[i] is until)
            return [e for e in self.events[since:end] if e.get("event") == event]

    @property
    def _reader_alive(self) -> bool:
        return self._reader.is_alive()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send `signum`, wait for the exit; returns the exit status."""
        self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.notifications.close()


def daemon_env(world: World, notify_socket: str, **overrides: str | None) -> dict[str, str]:
    """The environment of a daemon pointed at the world; nothing from the developer's.

    An override of None removes the variable."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SYNCD_", "NOTIFY_", "WATCHDOG_"))
        and key not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")
    }
    env.update(
        SYNCD_API_URL=world.sandbox.url,
        SYNCD_CREDENTIALS_DIR=str(world.credentials_dir),
        SYNCD_STATE_DIR=str(world.state_dir),
        SYNCD_DESIRED=str(world.desired_file),
        SYNCD_INTERVAL="1",
        SYNCD_LOG_FORMAT="json",
        NOTIFY_SOCKET=notify_socket,
        **world.state_env(),
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def cycles_within(seconds: float, interval: float) -> int:
    """The most cycles that can start within `seconds`: the scheduler fires `interval`
    apart, and the jitter it adds to one fire can bring it closer to the next one."""
    return math.floor(seconds / (interval - jitter_for(interval))) + 1


def runs(world: World) -> list[dict[str, Any]]:
    """The run records of the world's state (file or database), oldest first."""
    if world.database is None and not (world.state_dir / "syncd.db").exists():
        return []
    try:
        rows = world.query("SELECT * FROM runs ORDER BY started_at")
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        rows = []  # the daemon has created the file, not yet its tables
    return [{**row, "counts": json.loads(row["counts"] or "{}")} for row in rows]


def audit_events(world: World, run_id: str) -> list[dict[str, Any]]:
    return world.query("SELECT * FROM audit WHERE run_id = ? ORDER BY seq", (run_id,))


def wait_for_run(
    world: World,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = DEFAULT_WAIT,
    daemon: DaemonProcess | None = None,
) -> dict[str, Any]:
    """The first finished run record that satisfies `predicate`, polling with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        for run in runs(world):
            if run["ended_at"] and predicate(run):
                return run
        if time.monotonic() > deadline:
            tail = "\n".join(daemon.lines[-40:]) if daemon else ""
            raise AssertionError(f"no such run in {timeout} s: {runs(world)}\n{tail}")
        time.sleep(0.05)


def http_get(url: str, until: int | None = None, timeout: float = DEFAULT_WAIT) -> tuple[int, str]:
    """GET `url`; with `until`, ask again until that status comes (within `timeout`)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(url, timeout=5)
        if until is None or response.status_code == until or time.monotonic() > deadline:
            return response.status_code, response.text
        time.sleep(0.05)


#: The secret of the push hooks the hook tests send.
SECRET = "hook-secret-that-must-stay-secret"


def once(world: World, tmp_path: Any, *args: str, **env: str) -> int:
    """`syncd run --once` on the world; its exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "run", "--once", *args],
        env=daemon_env(world, str(tmp_path / "once.sock"), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode


def signed(body: bytes, secret: str = SECRET) -> str:
    """The signature header of a push hook's `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hooked_daemon(start_daemon: Any, secret_file: Path, secret: str) -> tuple[DaemonProcess, str]:
    """A daemon that takes push hooks with `secret`, after its first cycle; its address."""
    write_secret(secret_file, secret + "\n")
    daemon: DaemonProcess = start_daemon(
        SYNCD_INTERVAL="3600",
        SYNCD_METRICS_ADDR="127.0.0.1:0",
        SYNCD_WEBHOOK_SECRET_FILE=str(secret_file),
    )
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="ok")
    return daemon, address

"""Shared fixtures: one sandbox server per session, reset to a clean state for every test;
the worlds built on it (tests.world), `syncd run` subprocesses on a world, and a git
repository of the desired state (`repository`).

    def test_something(sandbox):
        sandbox.reset(seed={"users": {"janedoe": {...}}})   # the seed format of syncd.sandbox.seed
        httpx.get(f"{sandbox.url}/api/v1.1/users/janedoe/",
                  headers={"Authorization": f"Bearer {sandbox.admin_token}"})
        assert sandbox.stats()["total"] == 1

The server runs in a thread of the test process (real HTTP on loopback); each
test starts from no users, no faults and the staff token `sandbox.admin_token`,
so tests pass alone and in any order.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from syncd.sandbox.runtime import SandboxConfig
from syncd.sandbox.server import serve_in_thread
from tests.daemon.harness import DaemonProcess, daemon_env
from tests.postgres import Cluster, Database, running_cluster
from tests.world import World, make_world

ADMIN_TOKEN = "sandbox-admin-token"


class SandboxHandle:
    """A test's view of the shared sandbox server."""

    def __init__(self, url: str, admin_token: str, http: httpx.Client | None = None) -> None:
        self.url = url
        self.admin_token = admin_token
        # Pass the session's client: creating one costs ~0.1 s (it loads the CA bundle).
        self._http = http

    def reset(
        self,
        seed: dict[str, Any] | None = None,
        generate: int = 0,
        faults: dict[str, Any] | None = None,
        malformed: dict[str, str] | None = None,
        normalize: dict[str, str] | None = None,
    ) -> None:
        """Replace the whole state: `seed` users (after `generate` generated ones), `faults`,
        `malformed` answers ({username: kind} of syncd.sandbox.malformed) and the
        values the server keeps otherwise than sent ({field: rule} of syncd.sandbox.normalize).

        The staff token stays `self.admin_token`; the request counts start at zero.
        """
        body = {
            "seed": seed,
            "generate": generate,
            "admin_token": self.admin_token,
            "faults": faults or {},
            "malformed": malformed or {},
            "normalize": normalize or {},
        }
        url = f"{self.url}/_sandbox/reset"
        if self._http is None:
            response = httpx.post(url, json=body, timeout=60)
        else:
            response = self._http.post(url, json=body, timeout=60)
        if response.status_code != 200:
            raise AssertionError(f"sandbox reset refused: {response.text}")

    def set_faults(self, faults: dict[str, Any] | None = None) -> None:
        """Change the faults only (none by default); the accounts stay as they are."""
        response = httpx.post(f"{self.url}/_sandbox/faults", json=faults or {}, timeout=60)
        if response.status_code != 200:
            raise AssertionError(f"sandbox refused the faults: {response.text}")

    def stats(self) -> dict[str, Any]:
        """`GET /_sandbox/stats`.

        {"total": n, "by_method": {"GET": n, ...},
         "requests": [{"method", "path" (route template), "status", "count"}, ...]}
        """
        url = f"{self.url}/_sandbox/stats"
        response = httpx.get(url) if self._http is None else self._http.get(url)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[str]:
    """The base URL of the session's sandbox, served in a thread."""
    with serve_in_thread(SandboxConfig(admin_token=ADMIN_TOKEN)) as url:
        yield url


@pytest.fixture(scope="session")
def sandbox_http() -> Iterator[httpx.Client]:
    """One HTTP client for the session (the sandbox sets no cookies, so sharing is safe)."""
    with httpx.Client() as client:
        yield client


@pytest.fixture
def sandbox(sandbox_server: str, sandbox_http: httpx.Client) -> SandboxHandle:
    """The shared sandbox, reset to no users, no faults and a known staff token."""
    handle = SandboxHandle(sandbox_server, ADMIN_TOKEN, sandbox_http)
    handle.reset()
    return handle


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL server for the session (tests/postgres.py); fails if missing."""
    try:
        with running_cluster() as cluster:
            yield cluster
    except FileNotFoundError as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture
def postgres_db(postgres_cluster: Cluster) -> Iterator[Database]:
    """A new, empty database of the session's cluster, dropped after the test."""
    database = postgres_cluster.new_database()
    yield database
    postgres_cluster.drop_database(database.name)


@pytest.fixture(autouse=True)
def _collectable() -> Iterator[None]:
    """Undo the gc.freeze() of one-shot commands that a test ran in this process.

    Frozen objects are never collected: left frozen, one test's cycles would
    outlive it, with their ResourceWarnings.
    """
    yield
    gc.unfreeze()


# The worlds of the integration, CLI and daemon tests.


@pytest.fixture
def world(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """The standard world: janedoe differs from the desired state, johnsmith matches."""
    return make_world(sandbox, tmp_path, monkeypatch)


@pytest.fixture
def pg_world(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_db: Database
) -> World:
    """The standard world with its state in a PostgreSQL database of its own."""
    return make_world(sandbox, tmp_path, monkeypatch, postgres_db)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_world(
    request: pytest.FixtureRequest,
    sandbox: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """The standard world on each backend in turn."""
    if request.param == "sqlite":
        yield make_world(sandbox, tmp_path, monkeypatch)
        return
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    database = cluster.new_database()
    try:
        yield make_world(sandbox, tmp_path, monkeypatch, database)
    finally:
        cluster.drop_database(database.name)


# `syncd run` as a subprocess, for the daemon and security tests:
#
#     def test_something(world, start_daemon):
#         daemon = start_daemon(SYNCD_INTERVAL="1")
#         daemon.notifications.wait("READY")               # the test owns the notify socket
#         daemon.wait_for("cycle_finished", result="ok")   # JSON log lines from stderr
#         assert daemon.stop() == 0


def _starter(world: World, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(*args: str, notify_socket: str | None = None, **env: str | None) -> DaemonProcess:
        address = notify_socket or str(tmp_path / f"notify{len(started)}.sock")
        assert len(address) < 100, f"socket path too long for AF_UNIX: {address}"
        command = [sys.executable, "-m", "syncd", "run", *args]
        daemon = DaemonProcess(command, daemon_env(world, address, **env), world.root)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


@pytest.fixture
def start_daemon(world: World, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Starts `syncd run` subprocesses for the world; all are killed at teardown."""
    yield from _starter(world, tmp_path)


@pytest.fixture
def start_pg_daemon(
    pg_world: World,
    tmp_path: Path,
) -> Iterator[Callable[..., DaemonProcess]]:
    """Starts `syncd run` subprocesses on the PostgreSQL world; all killed at teardown."""
    yield from _starter(pg_world, tmp_path)


#: Who commits to the test repositories (none is configured on a CI machine).
GIT_IDENTITY = ["-c", "user.name=syncd tests", "-c", "user.email=tests@example.com"]


class Repository:
    """A local git repository holding the desired state under accounts/."""

    def __init__(self, path: Path) -> None:
        self.path = path
        subprocess.run(["git", "init", "--quiet", "-b", "main", str(path)], check=True)
        (path / "accounts").mkdir()

    def commit(self, desired: dict[str, Any] | str, message: str = "change") -> str:
        target = self.path / "accounts" / "users.yaml"
        if isinstance(desired, str):
            target.write_text(desired, encoding="utf-8")
        else:
            with target.open("w") as handle:
                YAML().dump(desired, handle)
        self._git("add", "-A")
        self._git(*GIT_IDENTITY, "commit", "--quiet", "-m", message)
        return self._git("rev-parse", "HEAD").strip()

    def _git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True
        )
        return done.stdout

    @property
    def url(self) -> str:
        return f"git+{self.path.as_uri()}#main:accounts/"


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    return Repository(tmp_path / "ops")

"""Fixtures of the daemon tests: the integration tests' worlds, and `start_daemon`.

def test_something(world, start_daemon):
    daemon = start_daemon(SYNCD_INTERVAL="1")
    daemon.notifications.wait("READY")               # the test owns the notify socket
    daemon.wait_for("cycle_finished", result="ok")   # JSON log lines from stderr
    assert daemon.stop() == 0

`start_pg_daemon` does the same for `pg_world`, whose state is in PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon.harness import DaemonProcess, daemon_env
from tests.integration.conftest import World, pg_world, world  # noqa: F401  (re-exported)


def _starter(world: World, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:  # noqa: F811
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
def start_daemon(world: World, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:  # noqa: F811
    """Starts `syncd run` subprocesses for the world; all are killed at teardown."""
    yield from _starter(world, tmp_path)


@pytest.fixture
def start_pg_daemon(
    pg_world: World,  # noqa: F811
    tmp_path: Path,
) -> Iterator[Callable[..., DaemonProcess]]:
    """Starts `syncd run` subprocesses on the PostgreSQL world; all killed at teardown."""
    yield from _starter(pg_world, tmp_path)

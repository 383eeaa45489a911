"""On SQLite an intent reaches the disk before its write is sent: traced with strace.

Every request that writes (PATCH, POST, DELETE) is sent only after everything
written to syncd.db's WAL so far was synced (fsync or fdatasync): so the
intent's commit, which precedes the request, is on disk, and a power cut after
the write leaves its trace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.world import World, account

WRITE_REQUEST = re.compile(r'sendto\(\d+<[^>]*>, "(PATCH|POST|DELETE) ')
WAL = re.compile(r"\b(write|pwrite64|fsync|fdatasync)\(\d+<[^>]*/syncd\.db-wal>")


def test_every_write_is_sent_after_its_intent_is_synced(world: World, tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is not installed: apt-get install strace")
    users = {f"disk{i}": account([f"d{i}@example.com"], f"tok-d{i}") for i in range(5)}
    world.seed({"users": users})
    world.desire({"version": 1, "users": {name: {"full_name": f"Disk {name}"} for name in users}})
    trace = tmp_path / "trace"
    command = [sys.executable, "-m", "syncd", "apply", *world.cli_args(), "--yes"]
    traced = [strace, "-f", "-y", "-s", "16", "-o", str(trace)]
    traced += ["-e", "trace=write,pwrite64,fsync,fdatasync,sendto", *command]
    env = {**os.environ, **world.state_env()}
    done = subprocess.run(traced, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

    unsynced = False  # WAL frames written since the last sync
    sent = synced = 0
    for line in trace.read_text().splitlines():
        if (wal := WAL.search(line)) is not None:
            unsynced = wal.group(1) in ("write", "pwrite64")
            synced += not unsynced
        elif WRITE_REQUEST.search(line):
            sent += 1
            assert not unsynced, f"a write was sent before its intent was synced: {line}"
    assert sent == len(users)
    assert synced, "no sync of syncd.db-wal was traced"

"""On SQLite an intent reaches the disk before its write is sent: traced with strace.

Every request that writes (PATCH, POST, DELETE) is sent only after the WAL
frames that hold its intent were written to syncd.db-wal and a sync (fsync or
fdatasync) of that file, begun after them, has returned: a power cut after the
write leaves its trace. The commits run on a thread of their own
(syncd.state.groupcommit), so the next group's frames may be written while
the requests of the last group leave: each request is checked against its own
intent, found in the frames by the value it writes.
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

WRITE_REQUEST = re.compile(r'sendto\(\d+<[^>]*>, "(?:PATCH|POST|DELETE) /api/v1\.1/users/(\w+)/')
WAL_WRITE = re.compile(r'\b(?:write|pwrite64)\(\d+<[^>]*/syncd\.db-wal>, "(.*)"')
WAL_SYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<[^>]*/syncd\.db-wal>")
#: strace -f splits a call that another thread's call interrupts: "PID <... fsync resumed>".
RESUMED = re.compile(r"<\.\.\. (?:fsync|fdatasync) resumed>")


def test_every_write_is_sent_after_its_intent_is_synced(world: World, tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is not installed: apt-get install strace")
    # More users than requests in flight: groups commit while earlier ones' writes leave.
    users = {f"disk{i}": account([f"d{i}@example.com"], f"tok-d{i}") for i in range(8)}
    world.seed({"users": users})
    names = {name: f"Disk {name} renamed" for name in users}
    world.desire({"version": 1, "users": {name: {"full_name": names[name]} for name in users}})
    trace = tmp_path / "trace"
    command = [sys.executable, "-m", "syncd", "apply", *world.cli_args(), "--yes"]
    command += ["--concurrency", "2"]
    traced = [strace, "-f", "-y", "-s", "8192", "-o", str(trace)]
    traced += ["-e", "trace=write,pwrite64,fsync,fdatasync,sendto", *command]
    env = {**os.environ, **world.state_env()}
    done = subprocess.run(traced, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

    written: set[str] = set()  # users whose intent is in frames written so far
    synced: set[str] = set()  # … and synced since
    syncing: dict[str, set[str]] = {}  # by thread: what its unfinished sync covers
    sent = syncs = 0
    for line in trace.read_text().splitlines():
        thread = line.split(maxsplit=1)[0]
        if (wal := WAL_WRITE.search(line)) is not None:
            written |= {name for name in users if names[name] in wal.group(1)}
        elif WAL_SYNC.search(line) is not None:
            if line.endswith("<unfinished ...>"):
                syncing[thread] = set(written)
            else:
                synced |= written
                syncs += 1
        elif RESUMED.search(line) is not None and thread in syncing:
            synced |= syncing.pop(thread)
            syncs += 1
        elif (request := WRITE_REQUEST.search(line)) is not None:
            sent += 1
            user = request.group(1)
            assert user in synced, f"a write was sent before its intent was synced: {line}"
    assert sent == len(users)
    assert syncs, "no sync of syncd.db-wal was traced"

"""What must be on disk before syncd goes on, traced with strace: on SQLite, an
intent before its write is sent; an audit export or a saved plan before it takes
its name.

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

FSYNC = re.compile(r"\bfsync\(\d+<([^>]*)>\) = 0")
RENAME = re.compile(r'\brename(?:at2?)?\(.*"([^"]*)".*"([^"]*)".*\) = 0')
WRITE_REQUEST = re.compile(r'sendto\(\d+<[^>]*>, "(?:PATCH|POST|DELETE) /api/v1\.1/users/(\w+)/')
WAL_WRITE = re.compile(r'\b(?:write|pwrite64)\(\d+<[^>]*/syncd\.db-wal>, "(.*)"')
WAL_SYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<[^>]*/syncd\.db-wal>")
#: strace -f splits a call that another thread's call interrupts: "PID <... fsync resumed>".
RESUMED = re.compile(r"<\.\.\. (?:fsync|fdatasync) resumed>")


def test_every_write_is_sent_after_its_intent_is_synced(world: World, tmp_path: Path) -> None:
    strace = _strace()
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


@pytest.mark.parametrize("kept", ["audit export", "saved plan"])
def test_a_file_to_keep_is_on_disk_before_it_takes_its_name(
    world: World, tmp_path: Path, kept: str
) -> None:
    # An export is what lets `audit prune` delete history; a saved plan is what
    # `apply` will send. A crash must not leave either an empty file under its name.
    world.seed({"users": {"jane": account(["jane@example.com"], "tok-jane")}})
    world.desire({"version": 1, "users": {"jane": {"full_name": "Jane Exported"}}})
    env = {**os.environ, **world.state_env()}
    syncd = [sys.executable, "-m", "syncd"]
    applied = subprocess.run(
        [*syncd, "apply", *world.cli_args(), "--yes"], capture_output=True, env=env, timeout=120
    )
    assert applied.returncode == 0, applied.stderr[-2000:]
    out, trace = tmp_path / "kept", tmp_path / "trace"
    if kept == "audit export":
        command = [*syncd, "audit", "--state-dir", str(world.state_dir), "export"]
        command += ["--before", "2999-01-01", "--out", str(out)]
    else:
        command = [*syncd, "plan", *world.cli_args(), "--out", str(out)]
    traced = [
        _strace(),
        "-f",
        "-y",
        "-o",
        str(trace),
        "-e",
        "trace=fsync,rename,renameat,renameat2",
    ]
    done = subprocess.run([*traced, *command], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]

    calls = [line for line in trace.read_text().splitlines() if "= 0" in line]
    (renamed,) = [
        i for i, line in enumerate(calls) if (m := RENAME.search(line)) and m[2] == str(out)
    ]
    partial = RENAME.search(calls[renamed])[1]  # type: ignore[index]
    synced = [m[1] for line in calls if (m := FSYNC.search(line))]
    before = [m[1] for line in calls[:renamed] if (m := FSYNC.search(line))]
    after = [m[1] for line in calls[renamed:] if (m := FSYNC.search(line))]
    assert partial in before, f"the {kept} was renamed before it was synced: {synced}"
    assert str(tmp_path) in after, f"its directory was not synced after the rename: {synced}"


def _strace() -> str:
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is not installed: apt-get install strace")
    return strace

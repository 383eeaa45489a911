"""SIGTERM in the middle of an apply ends it as Ctrl-C does, and as systemd,
Kubernetes, CI runners and `timeout` send it: the writes in flight are audited,
everything is committed, the run is recorded `cancelled` with what it applied,
and the command says "Aborted." and exits 1. At the prompt it means "no" at once,
as Ctrl-C does there."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.world import World, account

USERS = 12


def syncd(world: World, *args: str) -> Any:
    """A read-only syncd command on the world's state, as JSON."""
    command = [sys.executable, "-m", "syncd", *args, "--state-dir", str(world.state_dir)]
    shown = subprocess.run(
        [*command, "--output", "json"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


@pytest.mark.parametrize(
    "signals",
    [
        pytest.param((signal.SIGTERM,), id="sigterm"),
        pytest.param((signal.SIGINT,), id="ctrl-c"),
        pytest.param((signal.SIGTERM, signal.SIGTERM), id="sigterm-twice"),
    ],
)
def test_a_stopped_apply_audits_commits_and_counts_what_it_did(
    world: World, signals: tuple[signal.Signals, ...], tmp_path: Path
):
    users = {f"stop{i:02d}": account([f"s{i}@example.com"], f"tok-s{i}") for i in range(USERS)}
    # Answers that come back spread over a second: when the first write is done,
    # the others are still on the wire.
    world.seed({"users": users}, faults={"latency_ms": 600, "latency_jitter_ms": 500})
    world.desire({"version": 1, "users": {name: {"location": "Moved"} for name in users}})
    command = [sys.executable, "-m", "syncd", "apply", *world.cli_args(), "--yes"]
    env = {**os.environ, "SYNCD_LOG_FORMAT": "json"}
    log = tmp_path / "stderr"
    with log.open("w") as stderr:  # a file: a full pipe would block the process we wait for
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )
    assert process.stdout is not None
    shown: list[str] = []
    first, *more = signals
    for line in process.stdout:
        shown.append(line)
        if line.rstrip().endswith("… done"):
            break  # a write is done, and the others are in flight
    process.send_signal(first)
    for second in more:
        for line in process.stdout:
            shown.append(line)
            if "unknown" in line:
                break  # stopping: its writes in flight are being recorded
        process.send_signal(second)
    shown.append(process.stdout.read())
    process.wait(timeout=60)
    process.stdout.close()
    output, errors = "".join(shown), log.read_text()

    assert process.returncode == 1, (output, errors)
    assert errors.rstrip().endswith("Aborted."), errors
    assert "Traceback" not in errors
    done = output.count("… done\n")
    unknown = output.count("… unknown")
    assert done >= 1
    assert unknown >= 1, output  # stopped with writes in flight

    events = syncd(world, "audit")
    intents = {event["seq"] for event in events if event["event"] == "intent"}
    outcomes = {e["intent_seq"]: e["result"] for e in events if e["event"] == "outcome"}
    assert len(intents) == USERS
    assert set(outcomes) == intents  # every write's outcome committed, none left open
    assert list(outcomes.values()).count("ok") == done
    assert list(outcomes.values()).count("unknown") == unknown

    status = syncd(world, "status")
    [run] = status["runs"]
    assert run["command"] == "apply"
    assert run["result"] == "cancelled"
    assert run["ended_at"] is not None
    assert run["counts"]["applied_update_profile"] == done
    assert status["pending"]["planned"]
    assert status["pending"]["changes"] == USERS - done


def read_until(primary: int, wanted: bytes | None, seconds: float = 30) -> bytes:
    """What the terminal shows up to `wanted`, or (None) until the process ends."""
    shown = b""
    deadline = time.monotonic() + seconds
    while wanted is None or wanted not in shown:
        left = deadline - time.monotonic()
        assert left > 0, f"not shown within {seconds} s: {wanted!r}; shown: {shown!r}"
        if select.select([primary], [], [], left)[0]:
            try:
                more = os.read(primary, 4096)
            except OSError:  # EIO: every process holding the terminal has ended
                more = b""
            if not more:
                assert wanted is None, f"ended before showing {wanted!r}: {shown!r}"
                return shown
            shown += more
    return shown


def test_sigterm_at_the_prompt_means_no_at_once(world: World):
    primary, secondary = os.openpty()  # apply asks only on a terminal
    command = [sys.executable, "-m", "syncd", "apply", *world.cli_args()]
    process = subprocess.Popen(command, stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    try:
        read_until(primary, b"Only 'yes' will be accepted:")
        process.send_signal(signal.SIGTERM)
        # Nothing is typed: before the fix it waited for the answer, SIGTERM unseen.
        shown = read_until(primary, None)
        assert process.wait(timeout=30) == 1
    finally:
        os.close(primary)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert b"Apply cancelled: nothing was applied." in shown  # as after Ctrl-C there
    assert world.writes() == 0
    [run] = syncd(world, "status")["runs"]
    assert run["result"] == "declined"

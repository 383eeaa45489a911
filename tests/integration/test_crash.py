"""kill -9 in the middle of an apply: the next apply converges and reports the interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.world import World, account


def test_kill_9_during_apply_then_a_new_apply_converges(any_world: World):
    world = any_world
    users = {f"crash{i:03d}": account([f"c{i}@example.com"], f"tok-c{i}") for i in range(40)}
    # Latency keeps the run in flight long enough to be killed in the middle of a write.
    world.seed({"users": users}, faults={"latency_ms": 50})
    world.desire({"version": 1, "users": {name: {"full_name": f"Crash {name}"} for name in users}})
    command = [sys.executable, "-m", "syncd", "apply", *world.cli_args(), "--yes"]
    command += ["--concurrency", "2"]
    env = {**os.environ, "SYNCD_LOG_FORMAT": "json", **world.state_env()}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stderr is not None
    outcomes = 0
    for line in process.stderr:
        event = json.loads(line).get("event") if line.startswith("{") else None
        outcomes += event == "outcome"
        if event == "intent" and outcomes >= 5:
            break  # an intent is committed and its request is on the wire
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    # Status counts what the killed run wrote from its audit trail, before the next apply
    # closes it and after: never "0 applied", never "did not get as far as a plan".
    killed = world.query("SELECT id FROM runs WHERE command = 'apply'")[0]["id"]
    written = world.query(
        "SELECT COUNT(*) AS n FROM audit WHERE run_id = ? AND result = 'ok'", (killed,)
    )[0]["n"]
    unanswered = len(world.query("SELECT seq FROM open_intents"))
    assert written >= 1  # the last outcomes logged may not be committed
    assert unanswered >= 1
    status = [sys.executable, "-m", "syncd", "status", "--state-dir", str(world.state_dir)]
    text = subprocess.run(status, capture_output=True, text=True, env=env, timeout=60).stdout
    assert "pending      unknown: the last run was interrupted\n" in text
    assert f"interrupted -             {written} applied, {unanswered} failed" in text

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "an earlier run was interrupted" in again.stdout
    shown = subprocess.run(
        [*status, "--output", "json"], capture_output=True, text=True, env=env, timeout=60
    )
    run = next(run for run in json.loads(shown.stdout)["runs"] if run["id"] == killed)
    assert (run["result"], run["applied"], run["failed"]) == ("interrupted", written, unanswered)

    final = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd",
            "plan",
            *world.cli_args(),
            "--refresh",
            "--detailed-exitcode",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert final.returncode == 0, final.stdout

    if world.database is None:
        assert world.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    interrupted = world.query(
        "SELECT COUNT(*) AS n FROM audit WHERE event = 'outcome' AND result = 'interrupted'"
    )[0]["n"]
    open_intents = world.query(
        "SELECT COUNT(*) AS n FROM audit AS i WHERE event = 'intent' AND NOT EXISTS"
        " (SELECT 1 FROM audit AS o WHERE o.intent_seq = i.seq)"
    )[0]["n"]
    assert interrupted >= 1
    assert open_intents == 0

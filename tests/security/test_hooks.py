"""Push hooks cannot be amplified (issue 22, item 4): a replayed delivery, a push to
another ref and a burst of hooks each cost at most one cycle."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from syncd.service.daemon import HOOK_SPACING
from tests.conftest import Repository
from tests.daemon.harness import SECRET, DaemonProcess, hooked_daemon, signed
from tests.world import STANDARD_DESIRED, World, write_secret

PUSH_TO_MAIN = json.dumps({"ref": "refs/heads/main"}).encode()


def post(address: str, body: bytes, delivery: str) -> httpx.Response:
    headers = {
        "X-Hub-Signature-256": signed(body),
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
    }
    return httpx.post(f"http://{address}/hooks/git", content=body, headers=headers, timeout=10)


def counted(address: str) -> dict[str, float]:
    """Cycles run (all results) and hooks by result, from the daemon's own metrics."""
    text = httpx.get(f"http://{address}/metrics", timeout=10).text
    runs = re.findall(r"^syncd_runs_total\{[^}]*\} (\S+)$", text, re.M)
    hooks = re.findall(r'^syncd_webhook_requests_total\{result="(\w+)"\} (\S+)$', text, re.M)
    return {"cycles": sum(map(float, runs)), **{name: float(n) for name, n in hooks}}


def events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    return [event for event in daemon.events if event.get("event") == name]


def test_a_replayed_delivery_starts_one_cycle(world: World, start_daemon, tmp_path: Path):
    # One signed body sent 20 times in 10 s started 20 cycles.
    daemon, address = hooked_daemon(start_daemon, tmp_path / "hook.secret", SECRET)
    answers = [post(address, PUSH_TO_MAIN, "delivery-1") for _ in range(20)]
    assert [answer.status_code for answer in answers] == [202] * 20
    assert "already received" in answers[-1].text
    daemon.wait_for("cycle_finished", result="no_changes")  # the one it started
    seen = counted(address)
    assert (seen["accepted"], seen["duplicate"]) == (1, 19)
    assert seen["cycles"] == 2  # the first cycle, and the hook's
    assert len(events(daemon, "run_requested")) == 1
    assert daemon.stop() == 0


def test_hooks_start_at_most_one_cycle_per_spacing(world: World, start_daemon, tmp_path: Path):
    daemon, address = hooked_daemon(start_daemon, tmp_path / "hook.secret", SECRET)
    assert post(address, PUSH_TO_MAIN, "d-0").status_code == 202
    first = daemon.wait_for("run_requested")
    daemon.wait_for("cycle_finished", result="no_changes")
    answers = [post(address, PUSH_TO_MAIN, f"d-{n}").status_code for n in range(1, 20)]
    assert answers == [202] * 19
    # One waits, HOOK_SPACING after the last one started; the rest join it.
    waiting = daemon.wait_for("run_requested")
    started_apart = datetime.fromisoformat(waiting["run_at"]) - datetime.fromisoformat(
        first["run_at"]
    )
    assert started_apart.total_seconds() >= HOOK_SPACING
    daemon.wait_for_count("run_coalesced", 18)  # logged before, maybe not read yet
    assert len(events(daemon, "run_coalesced")) == 18
    seen = counted(address)
    assert seen["accepted"] == 20
    assert seen["cycles"] == 2  # the first cycle, and one for the hooks so far
    assert daemon.stop() == 0


def test_a_push_to_another_ref_is_ignored(world: World, start_daemon, tmp_path: Path):
    # A push to any branch started a cycle.
    repository = Repository(tmp_path / "ops")
    repository.commit(STANDARD_DESIRED)
    secret_file = tmp_path / "hook.secret"
    write_secret(secret_file, SECRET + "\n")
    daemon: DaemonProcess = start_daemon(
        SYNCD_DESIRED=repository.url,  # ref main
        SYNCD_INTERVAL="3600",
        SYNCD_METRICS_ADDR="127.0.0.1:0",
        SYNCD_WEBHOOK_SECRET_FILE=str(secret_file),
    )
    address = daemon.wait_for("metrics_listening")["address"]
    daemon.wait_for("cycle_finished", result="ok")
    # A tag `main` is not the branch the source follows (it was accepted for `#main`).
    others = ["refs/heads/feature", "refs/tags/main-v2", "refs/heads/mainline", "refs/tags/main"]
    for n, ref in enumerate(others):
        answer = post(address, json.dumps({"ref": ref}).encode(), f"other-{n}")
        assert (answer.status_code, answer.text) == (
            202,
            "not a push to refs/heads/main: ignored\n",
        )
    ping = post(address, json.dumps({"zen": "Keep it simple."}).encode(), "ping")
    assert ping.status_code == 202
    assert counted(address)["ignored"] == 5
    assert events(daemon, "run_requested") == []
    assert post(address, PUSH_TO_MAIN, "main-1").status_code == 202
    daemon.wait_for("run_requested")
    daemon.wait_for("cycle_finished", result="no_changes")
    assert counted(address)["accepted"] == 1
    assert daemon.stop() == 0

"""The daemon sees drift within a bounded window, with a flat GET rate (issue 12, item 2).

Each cycle reads again the users read longest ago, about N × interval / window
of them, so every user is read at least once per drift window and the reads
are spread evenly: no burst when entries would all expire together, and no
idle stretch in between. The figures are measured on the sandbox's own
per-second request counts.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from syncd.sandbox.seed import generated_token
from tests.daemon.harness import DaemonProcess
from tests.world import World, admin_patch, write_secret

USERS = 200
WINDOW = 10
INTERVAL = 1


def test_an_out_of_band_change_is_corrected_within_window_plus_interval(
    world: World, start_daemon: Any
):
    window = 4
    daemon: DaemonProcess = start_daemon(SYNCD_DRIFT_WINDOW=str(window))
    daemon.wait_for("cycle_finished", result="ok")  # converged
    daemon.wait_for("cycle_finished", result="no_changes")

    admin_patch(world, "janedoe", full_name="Changed behind syncd's back")
    changed_at = time.monotonic()
    outcome = daemon.wait_for(
        "outcome", timeout=window + INTERVAL + 10, user="janedoe", action="update_profile"
    )
    delay = time.monotonic() - changed_at
    assert outcome["result"] == "ok"
    # The bound of the design, plus the time one cycle takes to run here.
    assert delay <= window + INTERVAL + 1.5, f"corrected after {delay:.1f} s"
    assert daemon.stop() == 0


def test_sighup_reads_every_user_again(world: World, start_daemon: Any):
    daemon: DaemonProcess = start_daemon(SYNCD_DRIFT_WINDOW="3600", SYNCD_INTERVAL="3600")
    daemon.wait_for("cycle_finished", result="ok")
    admin_patch(world, "johnsmith", full_name="Changed behind syncd's back")
    gets = world.gets()
    daemon.process.send_signal(1)  # SIGHUP
    finished = daemon.wait_for("cycle_finished", timeout=15)
    assert finished["applied"] == 1  # johnsmith's name, seen at once despite the hour
    assert world.gets() - gets == 3  # every wanted part of both users, once
    assert daemon.stop() == 0


def test_the_reads_are_spread_evenly_over_the_window(world: World, start_daemon: Any):
    world.sandbox.reset(generate=USERS)
    world.credentials_dir.mkdir(exist_ok=True)
    for path in world.credentials_dir.iterdir():
        path.unlink()
    users = {}
    for i in range(1, USERS + 1):
        name = f"user{i:06d}"
        write_secret(world.credentials_dir / f"{name}.token", generated_token(name))
        users[name] = {"full_name": f"User {i}", "emails": [f"{name}@example.com"]}
    world.desire({"version": 1, "users": users})

    daemon: DaemonProcess = start_daemon(
        SYNCD_DRIFT_WINDOW=str(WINDOW), SYNCD_INTERVAL=str(INTERVAL)
    )
    first = daemon.wait_for("cycle_finished", timeout=30)
    assert first["result"] == "no_changes"
    # Steady state: every user has been read again once since the cold start.
    for _ in range(WINDOW + 2):
        daemon.wait_for("cycle_finished", timeout=10, result="no_changes")
    start = int(time.time()) + 1
    span = 20
    while int(time.time()) < start + span + 1:  # the last second complete
        daemon.wait_for("cycle_finished", timeout=10)
    per_second: Counter[int] = Counter()
    for second, method, count in world.sandbox.stats()["per_second"]:
        if method == "GET" and start <= second < start + span:
            per_second[second] += count
    buckets = [per_second[s] + per_second[s + 1] for s in range(start, start + span, 2)]
    mean = sum(buckets) / len(buckets)
    # Each cycle reads its share, 2 GETs for each of ~N × interval / window users.
    assert 0.5 * 2 * USERS / WINDOW * 2 <= mean <= 1.5 * 2 * USERS / WINDOW * 2, buckets
    assert max(buckets) <= 2 * mean, buckets
    assert min(buckets) > 0, buckets
    assert daemon.stop() == 0

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
from tests.daemon.harness import DaemonProcess, cycles_within
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

    changed = len(daemon.events)
    admin_patch(world, "janedoe", full_name="Changed behind syncd's back")
    outcome = daemon.wait_for("outcome", timeout=60, user="janedoe", action="update_profile")
    assert outcome["result"] == "ok"
    # The bound of the design (window + interval) counted in cycles, not seconds: load
    # stretches the cycles, not their number. A cycle reads a user whose answer is a
    # window old, so the cycles that can finish without correcting the change are those
    # that start within a window of it, and one in flight (or its line unread) at it.
    missed = daemon.between("cycle_finished", since=changed, until=outcome)
    assert len(missed) <= cycles_within(window, INTERVAL) + 1, missed
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

    # The cold cycle reads every user: not within the default deadline (three intervals)
    # on a loaded machine, and the deadline is not what this test is about.
    daemon: DaemonProcess = start_daemon(
        SYNCD_DRIFT_WINDOW=str(WINDOW), SYNCD_INTERVAL=str(INTERVAL), SYNCD_RUN_DEADLINE="60"
    )
    first = daemon.wait_for("cycle_finished")
    assert first["result"] == "no_changes"
    # Steady state: every user has been read again once since the cold start.
    for _ in range(WINDOW + 2):
        daemon.wait_for("cycle_finished", result="no_changes")
    start = int(time.time()) + 1
    span = 20
    while int(time.time()) < start + span + 1:  # the last second complete
        daemon.wait_for("cycle_finished")
    per_second: Counter[int] = Counter()
    for second, method, count in world.sandbox.stats()["per_second"]:
        if method == "GET" and start <= second < start + span:
            per_second[second] += count
    buckets = [per_second[s] + per_second[s + 1] for s in range(start, start + span, 2)]
    mean = sum(buckets) / len(buckets)
    # Each cycle reads its share, 2 GETs for each of ~N × interval / window users. Read
    # by age, the users are read at that rate even when load stretches the cycles.
    assert 0.5 * 2 * USERS / WINDOW * 2 <= mean <= 1.5 * 2 * USERS / WINDOW * 2, buckets
    # What must not happen: every user read in one cycle once a window, their answers
    # expiring together. That is one bucket of window/2 times the mean, and the
    # others empty. A loaded machine stalls the daemon for a second or two, and the
    # next cycle catches up: the bounds lie between the two, far from either.
    burst = WINDOW / 2
    assert max(buckets) <= (1 + burst) / 2 * mean, buckets
    assert buckets.count(0) <= len(buckets) // 5, buckets
    assert daemon.stop() == 0

"""A daemon whose API is down says `failed`, once per cycle (issue 22, item 2).

With a warm cache the users answered from it made such a cycle `partial` for
as long as cached answers lasted, so no alert fired for about 1.5 h; each
user's failure was its own `users_failing_alike` line (its message names the
user's URL), and `cycle_finished` carried the users' errors. Now a cycle in
which every request failed alike is `failed`, the shared failure is one line,
and `cycle_finished` says it in a few words whatever the count.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.daemon.harness import DaemonProcess
from tests.world import World, account

USERS = [f"user{n}" for n in range(1, 9)]


def started_at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def test_an_api_that_answers_nothing_but_503_fails_the_cycle_once(world: World, start_daemon: Any):
    world.seed(
        {"users": {name: account([f"{name}@example.com"], f"tok-{name}") for name in USERS}}
    )
    world.desire({"version": 1, "users": {name: {"full_name": name.title()} for name in USERS}})
    # Each cycle reads 2 of the 8 users again (the drift window's share); 6 come from the cache.
    daemon: DaemonProcess = start_daemon(SYNCD_DRIFT_WINDOW="6")
    daemon.wait_for("cycle_finished", result="ok")
    daemon.wait_for("cycle_finished", result="no_changes")

    world.sandbox.set_faults({"throttle_rate": 1, "throttle_status": 503, "retry_after": "none"})
    faulted_at = datetime.now(UTC)
    while started_at(daemon.wait_for("run_started")) <= faulted_at:
        pass  # a cycle that began before the faults may have read some users
    failed = daemon.wait_for("cycle_finished")
    assert failed["result"] == "failed", failed

    finished = [n for n, event in enumerate(daemon.events) if event["event"] == "cycle_finished"]
    end = daemon.events.index(failed)
    start = max(n for n in finished if n < end)
    cycle = daemon.events[start + 1 : end]
    alike = [event for event in cycle if event["event"] == "users_failing_alike"]
    assert len(alike) == 1, alike
    (shared,) = alike
    assert shared["users"] >= 2
    assert shared["code"] == "fetch_failed"
    # The body's words too, as each user's own message has them (it was "HTTP 503").
    assert (
        shared["cause"] == f"the API at {world.sandbox.url} failed: HTTP 503: service unavailable"
    )
    assert not [event for event in cycle if event["event"] == "user_failing"]

    assert failed["message"].startswith(f"fetch_failed {shared['users']}; every request failed")
    assert "/api/v1.1/users/" not in failed["message"]
    assert len(failed["message"]) < 200
    assert daemon.stop() == 0

"""The fence holds across a write's own retries (issue 15, item 2).

An intent is committed through the session that holds the lock, so an instance
that lost it sends nothing. A write answered 429 is sent again after its wait,
long enough for another instance to take over; the re-send goes through the
same fence, or the old instance could repeat an old write over the new one's.
"""

from __future__ import annotations

import asyncio

import pytest

from syncd.desired.loading import load_desired
from syncd.engine.reconcile import connect, converge, planning
from syncd.errors import StateError
from syncd.state.postgres_backend import instance_name
from tests.postgres import Cluster
from tests.world import World


def test_a_write_is_not_sent_again_once_the_lock_session_is_gone(
    pg_world: World, postgres_cluster: Cluster
):
    assert pg_world.database is not None
    database = pg_world.database.name
    cut: list[int] = []

    def start_throttling(_plan: object) -> bool:
        # Every write is answered 429 "wait 1 s": the client waits, then sends again.
        pg_world.sandbox.set_faults({"throttle_rate": 1.0, "throttle_wait": 1})
        return True

    def on_response(method: str, status: int | None, *_: object) -> None:
        if method != "GET" and status == 429 and not cut:  # the session ends in the wait
            cut.extend(postgres_cluster.terminate(database, instance_name("apply")))

    async def apply() -> None:
        desired = load_desired(pg_world.desired_file)
        async with connect(pg_world.settings(), on_response) as connection:
            await converge(
                connection,
                planning(desired),
                command="apply",
                deletion_limit=10,
                confirm=start_throttling,
            )

    with pytest.raises(StateError):
        asyncio.run(apply())
    assert len(cut) == 1
    writes = [r for r in pg_world.sandbox.stats()["requests"] if r["method"] != "GET"]
    # janedoe's first write, answered 429; after the wait it is not sent again.
    assert writes == [
        {"method": "PATCH", "path": "/api/v1.1/users/{username}/", "status": 429, "count": 1}
    ]

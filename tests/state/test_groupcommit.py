"""The group commit on SQLite: a commit waits for its fsync on a thread, not on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.core.plan import AddEmail
from syncd.errors import StateError
from syncd.state.audit import AuditTrail
from syncd.state.groupcommit import ThreadedGroupCommit, group_commit
from syncd.state.statefile import SqliteDatabase, open_cache, open_state

#: Long enough for any loaded machine; a commit that blocks the loop fails the test, not hangs it.
PATIENCE = 30.0


class HeldCommits(SqliteDatabase):
    """syncd.db whose commits wait, on the commit thread, until the test lets them go."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db.db, db.name)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.commits = 0

    def commit(self) -> None:
        if threading.current_thread().name == "syncd-group-commit":
            self.entered.set()
            assert self.release.wait(PATIENCE), "the commit was never let go"
            self.commits += 1
        super().commit()


def adding(n: int) -> AddEmail:
    return AddEmail(f"user{n}", f"u{n}@example.com")


@contextlib.contextmanager
def committing(
    tmp_path: Path, held: bool = False
) -> Iterator[tuple[SqliteDatabase, ThreadedGroupCommit, AuditTrail]]:
    """syncd.db (its commits held, with `held`), its group commit opened and an apply's
    audit trail; closed at the end."""
    history = open_state(tmp_path / "syncd.db")
    history = HeldCommits(history) if held else history
    cache = open_cache(tmp_path / "cache.db")
    audit = AuditTrail(history, {})
    audit.begin_run("apply")
    commits = group_commit(history, cache)
    assert isinstance(commits, ThreadedGroupCommit)
    commits.open()
    try:
        yield history, commits, audit
    finally:
        history.close()
        cache.close()


def durable_intents(state: Path) -> int:
    reader = open_state(state / "syncd.db")
    try:
        return int(reader.execute("SELECT count(*) FROM open_intents").fetchone()[0])
    finally:
        reader.close()


def test_intents_that_arrive_during_a_commit_go_in_the_next_group(tmp_path: Path):
    with committing(tmp_path, held=True) as (history, commits, audit):
        assert isinstance(history, HeldCommits)

        async def apply() -> None:
            commits.submit(lambda: audit.intent(adding(1)))
            first = asyncio.create_task(commits.durable())
            # The event loop runs while the commit is in flight: it would hang here otherwise.
            assert await asyncio.to_thread(history.entered.wait, PATIENCE)
            intents = [commits.submit(lambda n=n: audit.intent(adding(n))) for n in (2, 3)]
            waiting = [asyncio.create_task(commits.durable()) for _ in intents]
            await asyncio.sleep(0)
            assert not first.done()
            history.release.set()
            await asyncio.gather(first, *waiting)
            assert [intent.result() for intent in intents] == [2, 3]
            await commits.close()

        asyncio.run(apply())
        # The first, the two that came during it as one group, and the close's.
        assert history.commits == 3
        assert durable_intents(tmp_path) == 3


def test_a_read_no_longer_awaited_is_dropped_and_the_apply_still_closes(tmp_path: Path):
    with committing(tmp_path, held=True) as (history, commits, _):
        assert isinstance(history, HeldCommits)

        async def apply() -> None:
            first = asyncio.create_task(commits.durable())
            assert await asyncio.to_thread(history.entered.wait, PATIENCE)
            read = asyncio.wrap_future(commits.submit(lambda: 1))  # queued behind the commit
            read.cancel()  # as a task cancelled at shutdown leaves it
            history.release.set()
            await first
            await asyncio.wait_for(commits.close(), PATIENCE)  # the thread lived on

        asyncio.run(apply())


def test_after_a_failed_write_no_intent_is_made_durable(tmp_path: Path):
    with committing(tmp_path) as (history, commits, audit):

        def broken() -> None:
            history.execute("INSERT INTO no_such_table VALUES (1)")

        async def apply() -> None:
            failed = commits.submit(broken)
            commits.submit(lambda: audit.intent(adding(1)))
            with pytest.raises(StateError, match="no such table"):
                await commits.durable()  # so the applier sends nothing more
            assert isinstance(failed.exception(), StateError)
            with pytest.raises(StateError, match="no such table"):
                await commits.close()

        asyncio.run(apply())
        assert durable_intents(tmp_path) == 1  # close() still kept what was written


def test_between_its_groups_an_apply_leaves_the_state_to_other_writers(tmp_path: Path):
    # `syncd suspend` during an apply writes the same syncd.db; the apply reads it
    # before each user's writes. A transaction held open from commit to commit kept
    # the write lock for the whole apply: the suspension waited for the end of the
    # apply (or failed, "database is locked") and its users were written meanwhile.
    def another_writer() -> None:
        # Another process's connection, as `syncd suspend` opens it.
        with contextlib.closing(sqlite3.connect(tmp_path / "syncd.db", timeout=10)) as db:
            db.execute("CREATE TABLE told (what TEXT)")
            db.commit()

    with committing(tmp_path) as (_, commits, audit):

        async def apply() -> None:
            commits.submit(lambda: audit.intent(adding(1)))
            await commits.durable()  # the request would be in flight now
            await asyncio.to_thread(another_writer)
            commits.submit(lambda: audit.intent(adding(2)))
            await commits.durable()
            await commits.close()

        asyncio.run(apply())
        assert durable_intents(tmp_path) == 2

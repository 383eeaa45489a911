"""Group commit: one COMMIT per database for the rows of many concurrent writes.

While a run applies, a transaction stays open on each database: intents and
outcomes in the history, cache updates in the cache (their own `atomic()`
blocks become savepoints). `durable()` commits everything written so far and
opens the next transactions; the callers that ask in the same turn of the
event loop share one commit. An intent is durable before its request is sent
(on disk: syncd.db commits with synchronous=FULL, so each commit syncs the
WAL; PostgreSQL flushes its own); an outcome becomes durable with the next
intent or at `close()`.

On SQLite the cache is a file of its own, committed before the history: an
outcome is never on disk without the cache update its answer allows. A crash
in between leaves the intent open, and the next run reports the write as
interrupted and reads the account again, whatever the cache says. So a crash
can lose a recorded outcome, never an intent, and never makes the cache look
more certain than the audit trail. While the transactions are open, each
database makes its commits as cheap as it can without making them less
durable (`Database.many_commits`: on SQLite, the WAL checkpoints move to a
thread).
On PostgreSQL both are one database, and so one transaction: the same rule,
kept by the engine.

On PostgreSQL this commit is also the fence (syncd.state.postgres_backend):
the one session that holds the lock commits every intent, so an instance that
has lost its session cannot make an intent durable, and sends no write.
"""

from __future__ import annotations

import asyncio
import contextlib

from syncd.errors import StateError
from syncd.state.backend import Database


class GroupCommit:
    def __init__(self, history: Database, cache: Database) -> None:
        # In commit order; one handle when both live in one database.
        self._databases = (cache,) if cache is history else (cache, history)
        self._pending: asyncio.Future[None] | None = None
        self._many = contextlib.ExitStack()

    def open(self) -> None:
        """Start the transactions, once each database has shown it takes writes."""
        for db in self._databases:
            if not db.in_transaction:
                db.check_writable()
        for db in self._databases:
            self._many.enter_context(db.many_commits())
        try:
            self._begin()
        except BaseException:
            self._many.close()
            raise

    def _begin(self) -> None:
        for db in self._databases:
            if not db.in_transaction:
                db.begin()

    async def durable(self) -> None:
        """Return once everything written so far is committed."""
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            loop.call_soon(self._commit)
        # Shielded: a cancelled waiter must not cancel the commit the others share.
        await asyncio.shield(self._pending)

    def _commit(self) -> None:
        pending, self._pending = self._pending, None
        assert pending is not None
        try:
            for db in self._databases:
                db.commit_and_begin()
        except StateError as error:
            pending.set_exception(error)
        else:
            pending.set_result(None)

    def close(self) -> None:
        """Commit what is left and leave the transactions closed."""
        with self._many:
            for db in self._databases:
                db.commit()

"""Group commit: one COMMIT per database for the rows of many concurrent writes.

While a run applies, a transaction stays open on each database: intents and
outcomes in the history, cache updates in the cache (their own `atomic()`
blocks become savepoints). The applier hands each of these writes (and
any read of the databases meanwhile) to `submit()`, and `durable()` returns
once everything submitted so far is committed; an intent is durable before
its request is sent (on disk: syncd.db commits with synchronous=FULL, so
each commit syncs the WAL; PostgreSQL flushes its own); an outcome becomes
durable with the next intent or at `close()`.

On SQLite the writes and the commits run on a thread of their own, which has
the run's two connections to itself from `open()` to `close()`: the event
loop never touches them meanwhile. A commit there waits for an fsync, and
while it does the other users' requests keep flowing and the next intents
queue up; when it returns, its waiters go on, and everything queued meanwhile
is written and committed as the next group (at most one commit in flight).
Between groups it holds no transaction (the next job begins one): another
process may write the state meanwhile (`syncd suspend`, which the apply reads
before each user's writes), not only after the apply.
On PostgreSQL the writes run at once on the event loop and the callers that
ask in the same turn of it share one commit (its one session is also the
event loop's, which asks through it whether the lock is still held).

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

On PostgreSQL this commit is also the fence: see syncd.state.postgres_backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from syncd.errors import StateError
from syncd.state.backend import Database

T = TypeVar("T")


def group_commit(history: Database, cache: Database) -> GroupCommit:
    """The group commit for an apply: on a thread where the connections allow it."""
    if history.commits_on_a_thread and cache.commits_on_a_thread:
        return ThreadedGroupCommit(history, cache)
    return GroupCommit(history, cache)


class GroupCommit:
    """Writes and commits on the event loop, one commit per turn of it."""

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

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run `job`, which uses the databases, inside the open transactions; its result."""
        written: Future[T] = Future()
        written.set_result(job())  # its error is raised here, to the caller
        return written

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

    async def close(self) -> None:
        """Commit what is left and leave the transactions closed."""
        with self._many:
            for db in self._databases:
                db.commit()


#: What the thread is asked: a write (the job and its result), a commit, or to close.
_Request = tuple[Callable[[], object] | None, Future[object]]


def _close() -> None:
    """The request to commit for the last time and stop (never run)."""


class ThreadedGroupCommit(GroupCommit):
    """Writes and commits on a thread, one commit at a time, each for all that queued up.

    After a failed write or commit no commit is made durable any more (each
    `durable()` raises the first error), so no write is sent on a state that
    may not hold its intent; `close()` still commits what it can, and raises it.
    """

    def __init__(self, history: Database, cache: Database) -> None:
        super().__init__(history, cache)
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="syncd-group-commit", daemon=True)
        self._failed: Exception | None = None  # the thread's alone
        self._open = True  # whether the transactions are; the thread's alone

    def open(self) -> None:
        super().open()
        self._thread.start()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        written: Future[T] = Future()
        self._requests.put((job, written))  # type: ignore[arg-type]  # a Future[T] is one
        return written

    async def durable(self) -> None:
        committed: Future[object] = Future()
        self._requests.put((None, committed))
        # Shielded: a cancelled waiter must not cancel the commit the others share.
        await asyncio.shield(asyncio.wrap_future(committed))

    async def close(self) -> None:
        closed: Future[object] = Future()
        self._requests.put((_close, closed))
        try:
            await asyncio.shield(asyncio.wrap_future(closed))
        finally:
            # Cancelled or not, the connections are the event loop's again only then.
            self._thread.join()
            self._many.close()

    def _serve(self) -> None:
        closing = False
        while not closing:
            batch = [self._requests.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._requests.get_nowait())
            waiters: list[Future[object]] = []
            for job, future in batch:
                if not future.set_running_or_notify_cancel():
                    continue  # a read the event loop stopped waiting for
                if job is None or job is _close:
                    closing = closing or job is _close
                    waiters.append(future)
                else:
                    self._run(job, future)
            if waiters:
                self._commit_for(waiters, closing)

    def _run(self, job: Callable[[], object], written: Future[object]) -> None:
        try:
            if not self._open:  # SQLite's BEGIN IMMEDIATE: the write lock until the commit
                self._begin()
                self._open = True
            written.set_result(job())
        except Exception as error:  # raised to the event loop by the next durable() or close()
            self._failed = self._failed or error
            written.set_exception(error)

    def _commit_for(self, waiters: list[Future[object]], closing: bool) -> None:
        try:
            if self._failed is not None and not closing:
                raise self._failed
            for db in self._databases:
                db.commit()
            self._open = False
            if self._failed is not None:
                raise self._failed
        except Exception as error:
            self._failed = self._failed or error
            for waiter in waiters:
                waiter.set_exception(self._failed)
        else:
            for waiter in waiters:
                waiter.set_result(None)

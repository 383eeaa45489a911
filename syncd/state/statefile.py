"""The SQLite state file: where it lives, how it is opened, and its tables.

One file in the state directory (design.md section 5), created with mode 0600
in a directory of mode 0700 and never opened through a link (see
syncd.privatefiles), in WAL mode so that `syncd status` can read while
a run writes. Every module that stores something (the live cache, later the
audit trail and run records) gets its tables from `open_state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from syncd.errors import CacheError
from syncd.privatefiles import private_directory, private_file

SCHEMA = """
-- The live-state cache (syncd.state.cache). A part that is not cached has a NULL
-- fetch time. The profile is in columns and the addresses a JSON array of
-- [email, verified, primary]: reading 10,000 users this way takes half the
-- time of parsing the API's JSON objects again.
CREATE TABLE IF NOT EXISTS live_accounts (
    username TEXT PRIMARY KEY,
    profile_fetched_at REAL,
    full_name TEXT,
    location TEXT,
    company TEXT,
    profile_url TEXT,
    gravatar_url TEXT,
    email TEXT,
    emails_fetched_at REAL,
    emails TEXT
);
-- The cache's first format. A cache is disposable: dropping it costs one cold plan.
DROP TABLE IF EXISTS live_users;

CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    source TEXT,
    revision TEXT,
    result TEXT,
    counts TEXT
);

CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    event TEXT NOT NULL,
    intent_seq INTEGER,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    before TEXT,
    after TEXT,
    result TEXT,
    status INTEGER,
    message TEXT,
    source TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_user ON audit (user, timestamp);
CREATE INDEX IF NOT EXISTS audit_by_intent ON audit (intent_seq);

-- What `syncd run` last said about itself (next run, failures, last good
-- revision), for `syncd status`: one row per key, the value JSON.
CREATE TABLE IF NOT EXISTS daemon_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- The audit trail is append-only: history is never rewritten.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


def open_state(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) the state file, private to its owner."""
    claim_database(path)
    try:
        connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
        db = sqlite_utils.Database(connection)
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
        db.conn.executescript(SCHEMA)
    except (OSError, sqlite3.Error) as error:
        raise CacheError(f"cannot open the state file {path}: {error}") from None
    return db


def claim_database(path: Path) -> None:
    """Make sure a SQLite file and its directory are private (syncd.privatefiles), or refuse.

    The file is created 0600 from its first byte, so SQLite gives its -wal and
    -shm files the same mode; those, when they exist, are checked too: a link
    planted as `syncd.db-wal` would be followed by SQLite.
    """
    private_directory(path.parent)
    private_file(path)
    for companion in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            private_file(path.with_name(path.name + companion), create=False)


@contextlib.contextmanager
def savepoint(db: sqlite_utils.Database) -> Iterator[None]:
    """All of the block's writes or none of them, inside the open transaction if any.

    sqlite-utils' atomic() does the same with a random savepoint name (an
    os.urandom call and two more statements per block): for the two rows of
    every write of an apply, a fixed name nested as SQLite allows is enough.
    """
    if not db.conn.in_transaction:
        with db.atomic():
            yield
        return
    db.conn.execute("SAVEPOINT syncd")
    try:
        yield
    except BaseException:
        # An error such as a trigger's RAISE(ROLLBACK) can end the transaction itself.
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK TO syncd")
            db.conn.execute("RELEASE syncd")
        raise
    db.conn.execute("RELEASE syncd")


class GroupCommit:
    """One COMMIT for the rows of many concurrent writes.

    While a run applies, a transaction stays open: intents, outcomes and cache
    updates are written into it (their own `db.atomic()` blocks become
    savepoints). `durable()` commits everything written so far and opens the
    next transaction; the callers that ask in the same turn of the event loop
    share one commit. An intent is durable before its request is sent, as
    before; an outcome becomes durable with the next intent or at `close()`.
    A crash can lose a recorded outcome, never an intent: the next run then
    reports that write as interrupted and reads the account again. Two commits
    per write cost more than the rest of the audit trail together.
    """

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self._pending: asyncio.Future[None] | None = None

    def open(self) -> None:
        if not self.db.conn.in_transaction:
            self.db.begin()

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
            self.db.commit()
            self.db.begin()
        except sqlite3.Error as error:
            pending.set_exception(CacheError(f"cannot write the state file: {error}"))
        else:
            pending.set_result(None)

    def close(self) -> None:
        """Commit what is left and leave the transaction closed."""
        try:
            self.db.commit()
        except sqlite3.Error as error:
            raise CacheError(f"cannot write the state file: {error}") from None

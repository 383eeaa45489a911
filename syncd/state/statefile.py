"""The SQLite files of the state directory: where they live, how they are opened, their tables.

Two files (design.md section 5), each created with mode 0600 in a directory of
mode 0700, in WAL mode so that `syncd status` can read while a run writes:

    syncd.db  runs, the audit trail, what the daemon says about itself: history,
              never disposable
    cache.db  the live-state cache: disposable, deleting it costs one cold read

They are apart so that deleting "the cache" can never delete the history. Both
are never opened through a link (see syncd.privatefiles). Every error of either
file reaches the user as one StateError that names the file and the cause (disk
full, read-only, corrupt), whichever statement met it. Each is opened as a
`SqliteDatabase`, the SQLite side of syncd.state.backend's `Database`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from syncd.errors import StateError
from syncd.privatefiles import private_directory, private_file
from syncd.state.backend import SQLITE, Database, Rows, newer_schema
from syncd.state.checkpoints import checkpointing

STATE_NAME = "syncd.db"
CACHE_NAME = "cache.db"

CACHE_SCHEMA = """
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
"""

STATE_SCHEMA = """
-- The live-state cache lived here before it moved to cache.db; a cache is
-- disposable, and history must not share a file with it.
DROP TABLE IF EXISTS live_accounts;
DROP TABLE IF EXISTS live_users;

-- Who ran each run: the OS user, the user behind sudo, the host, syncd's version,
-- the process (columns added to older files by _add_columns).
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    source TEXT,
    revision TEXT,
    result TEXT,
    counts TEXT,
    os_user TEXT,
    sudo_user TEXT,
    host TEXT,
    version TEXT
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

-- Writes the server accepted and did not keep (syncd.core.not_kept): the plan
-- sends them again only when the desired or the live value changes. sent_key
-- is the address sent, lower-cased, for an added address; '' for a field.
CREATE TABLE IF NOT EXISTS not_kept (
    username TEXT NOT NULL,
    field TEXT NOT NULL,
    sent_key TEXT NOT NULL,
    sent TEXT NOT NULL,
    kept TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (username, field, sent_key)
);

-- The daemon's users in error (syncd.state.user_failures): since when, how
-- many cycles in a row, and when it reads the user again (NULL: next cycle).
CREATE TABLE IF NOT EXISTS user_failures (
    username TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    since TEXT NOT NULL,
    failures INTEGER NOT NULL,
    retry_at REAL
);

-- Which version of this schema the file has (see SCHEMA_VERSION): one row.
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL,
    applied_at TEXT NOT NULL
);

-- The audit trail is append-only: history is never rewritten.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


def describe(error: sqlite3.Error) -> str:
    """SQLite's words for what went wrong, without the class name."""
    return str(error) or error.__class__.__name__


class NamedConnection(sqlite3.Connection):
    """A connection whose every failed statement raises a StateError naming its file.

    sqlite-utils sends every statement through `execute` (BEGIN and COMMIT
    included), so this one place turns "database or disk is full" anywhere in
    a run into one line that says which file, instead of a traceback.
    """

    path = "?"

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as error:
            raise state_error(self.path, error) from None
        except UnicodeEncodeError:  # a lone surrogate in a value: not text SQLite takes
            raise StateError(f"state file {self.path}: a value is not valid text") from None

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.Error as error:
            raise state_error(self.path, error) from None


def state_error(path: str | Path, error: sqlite3.Error | OSError) -> StateError:
    cause = describe(error) if isinstance(error, sqlite3.Error) else error.strerror or str(error)
    return StateError(f"state file {path}: {cause}")


#: Columns that files made by an older syncd lack: (table, column, type).
ADDED_COLUMNS = (
    ("runs", "os_user", "TEXT"),
    ("runs", "sudo_user", "TEXT"),
    ("runs", "host", "TEXT"),
    ("runs", "version", "TEXT"),
    ("runs", "pid", "INTEGER"),
)


#: The schema's version, kept in the table schema_version. Version 1 is the
#: schema above with every column of ADDED_COLUMNS: files older than the table
#: get it by _add_columns, which is what migrating them to version 1 takes.
SCHEMA_VERSION = 1


def open_state(path: Path) -> SqliteDatabase:
    """Open (creating if needed) syncd.db, the runs and the audit trail, private to its owner."""
    db = _open(path, STATE_SCHEMA)
    try:
        _add_columns(db, ADDED_COLUMNS)
        _record_version(db, path)
    except StateError:
        db.close()
        raise
    return SqliteDatabase(db, path)


def _add_columns(db: sqlite_utils.Database, columns: tuple[tuple[str, str, str], ...]) -> None:
    """Bring a file made by an older syncd up to the schema: history is kept, never rebuilt."""
    for table, column, kind in columns:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _record_version(db: sqlite_utils.Database, path: Path) -> None:
    # Written only when it changes: a dry run may read a file it may not write.
    (version,) = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    if version is not None and version > SCHEMA_VERSION:
        raise newer_schema(f"file {path}", version, SCHEMA_VERSION)
    if version is None or version < SCHEMA_VERSION:
        with db.atomic():
            db.execute("DELETE FROM schema_version")
            db.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                [SCHEMA_VERSION, datetime.now(UTC).isoformat(timespec="seconds")],
            )


def open_cache(path: Path) -> SqliteDatabase:
    """Open (creating if needed) cache.db, the live-state cache, private to its owner."""
    return SqliteDatabase(_open(path, CACHE_SCHEMA), path)


def _open(path: Path, schema: str) -> sqlite_utils.Database:
    claim_database(path)
    try:
        connection = sqlite3.connect(
            path, timeout=30, check_same_thread=False, factory=NamedConnection
        )
    except (OSError, sqlite3.Error) as error:
        raise state_error(path, error) from None
    connection.path = str(path)
    try:
        db = sqlite_utils.Database(connection)
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
        db.conn.executescript(schema)
    except StateError:
        connection.close()
        raise
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


class SqliteDatabase(Database):
    """One SQLite file as a syncd.state.backend Database, through sqlite-utils."""

    dialect = SQLITE

    def __init__(self, db: sqlite_utils.Database, path: Path | str) -> None:
        self.db = db
        self.name = str(path)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        # sqlite-utils commits a write made outside a transaction at once.
        return self.db.execute(sql, parameters)

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.atomic():
            self.db.conn.executemany(sql, rows)

    def advance_identity(self, table: str, column: str) -> None:
        pass  # AUTOINCREMENT numbers after the largest number ever used

    def insert(self, sql: str, parameters: Sequence[Any], key: str) -> int:
        # The row id: the INTEGER PRIMARY KEY that `key` names in our tables.
        rowid = self.db.execute(sql, parameters).lastrowid
        assert rowid is not None
        return rowid

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """All of the block's writes or none of them, inside the open transaction if any.

        sqlite-utils' atomic() does the same with a random savepoint name (an
        os.urandom call and two more statements per block): for the two rows of
        every write of an apply, a fixed name nested as SQLite allows is enough.
        """
        conn = self.db.conn
        if not conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("SAVEPOINT syncd")
        try:
            yield
        except BaseException:
            # An error such as a trigger's RAISE(ROLLBACK) can end the transaction itself.
            if conn.in_transaction:
                conn.execute("ROLLBACK TO syncd")
                conn.execute("RELEASE syncd")
            raise
        conn.execute("RELEASE syncd")

    @property
    def in_transaction(self) -> bool:
        return self.db.conn.in_transaction

    def begin(self) -> None:
        self.db.begin()

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        self.db.rollback()

    def many_commits(self) -> contextlib.AbstractContextManager[None]:
        # The checkpoints, and their fsyncs, on a thread (syncd.state.checkpoints).
        return checkpointing(self.db.conn, self.name)

    def check_writable(self) -> None:
        # Setting user_version to itself is a write that changes nothing.
        if self.in_transaction:
            return
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        self.db.begin()
        try:
            self.db.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            self.db.execute("ROLLBACK")

    def has_table(self, name: str) -> bool:
        found = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]
        ).fetchone()
        return found is not None

    def close(self) -> None:
        self.db.close()

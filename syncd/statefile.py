"""The SQLite state file: where it lives, how it is opened, and its tables.

One file in the state directory (design.md section 5), created with mode 0600
in a directory of mode 0700, in WAL mode so that `syncd status` can read while
a run writes. Every module that stores something (the live cache, later the
audit trail and run records) gets its tables from `open_state`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import sqlite_utils

from syncd.errors import CacheError

SCHEMA = """
CREATE TABLE IF NOT EXISTS live_users (
    username TEXT PRIMARY KEY,
    user_json TEXT,
    user_fetched_at REAL,
    emails_json TEXT,
    emails_fetched_at REAL
);

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
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Create the file ourselves so it is 0600 from its first byte; SQLite
        # gives the -wal and -shm files the same mode. Only when it is missing:
        # closing a descriptor drops every POSIX lock this process holds on the
        # file, those of a connection already open on it included, and a reader
        # in another process would then rebuild the WAL index under it.
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
        db = sqlite_utils.Database(connection)
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
        db.conn.executescript(SCHEMA)
    except (OSError, sqlite3.Error) as error:
        raise CacheError(f"cannot open the state file {path}: {error}") from None
    return db

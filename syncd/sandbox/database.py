"""The sandbox's SQLite file (`--db`): its state, loaded at start, written through.

Plain sqlite3, three tables (accounts, emails, grants). Every successful write
of the API is mirrored here at once (a `store.Journal`), so a sandbox stopped
at any moment restarts with what its clients saw. Passwords and tokens are
kept in clear: this is a test server's fixture data, not a credential store;
the file is still created with mode 0600.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Final

from syncd.errors import SyncdError
from syncd.sandbox.store import Account, Email, Grant, Snapshot

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    date_joined TEXT NOT NULL,
    full_name TEXT NOT NULL,
    location TEXT NOT NULL,
    company TEXT NOT NULL,
    profile_url TEXT NOT NULL,
    gravatar_email TEXT NOT NULL,
    is_active INTEGER NOT NULL,
    password TEXT
);
CREATE TABLE IF NOT EXISTS emails (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    address TEXT NOT NULL,
    verified INTEGER NOT NULL,
    is_primary INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS emails_by_account ON emails (account_id);
CREATE TABLE IF NOT EXISTS grants (
    token TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    scopes TEXT NOT NULL
);
"""


class SandboxDatabase:
    """A `store.Journal` backed by one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fresh = not path.exists()
            if fresh:
                # Created 0600 before SQLite opens it: it holds tokens and passwords.
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            # The server thread is not the thread that opened the file; the event
            # loop serialises all use, so sharing the connection is safe.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise SyncdError(f"{path}: sandbox database version {version} is unknown")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as error:
            raise SyncdError(f"{path}: cannot open the sandbox database: {error}") from None

    def close(self) -> None:
        self._db.close()

    def load(self) -> Snapshot | None:
        """The state stored in the file, or None when it holds none yet."""
        try:
            return self._load()
        except sqlite3.Error as error:
            raise SyncdError(f"{self.path}: cannot read the sandbox database: {error}") from None

    def _load(self) -> Snapshot | None:
        rows = self._db.execute(
            "SELECT id, username, date_joined, full_name, location, company, profile_url,"
            " gravatar_email, is_active, password FROM accounts ORDER BY id"
        ).fetchall()
        if not rows:
            return None
        accounts = {
            row[0]: Account(
                id=row[0],
                username=row[1],
                date_joined=row[2],
                full_name=row[3],
                location=row[4],
                company=row[5],
                profile_url=row[6],
                gravatar_email=row[7],
                is_active=bool(row[8]),
                password=row[9],
            )
            for row in rows
        }
        for account_id, address, verified, primary in self._db.execute(
            "SELECT account_id, address, verified, is_primary FROM emails ORDER BY seq"
        ):
            accounts[account_id].emails.append(Email(address, bool(verified), bool(primary)))
        grants = tuple(
            Grant(token, username, frozenset(scopes.split()))
            for token, username, scopes in self._db.execute(
                "SELECT token, username, scopes FROM grants ORDER BY rowid"
            )
        )
        return Snapshot(tuple(accounts.values()), grants)

    def replace(self, snapshot: Snapshot) -> None:
        # The connection is in autocommit mode, so a batch needs its own BEGIN.
        self._db.execute("BEGIN")
        try:
            self._db.execute("DELETE FROM emails")
            self._db.execute("DELETE FROM accounts")
            self._db.execute("DELETE FROM grants")
            self._db.executemany(
                "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        a.id,
                        a.username,
                        a.date_joined,
                        a.full_name,
                        a.location,
                        a.company,
                        a.profile_url,
                        a.gravatar_email,
                        int(a.is_active),
                        a.password,
                    )
                    for a in snapshot.accounts
                ),
            )
            self._db.executemany(
                "INSERT INTO emails (account_id, address, verified, is_primary)"
                " VALUES (?, ?, ?, ?)",
                (
                    (a.id, e.address, int(e.verified), int(e.primary))
                    for a in snapshot.accounts
                    for e in a.emails
                ),
            )
            self._db.executemany(
                "INSERT INTO grants VALUES (?, ?, ?)",
                ((g.token, g.username, " ".join(sorted(g.scopes))) for g in snapshot.grants),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def save_profile(self, account: Account) -> None:
        self._db.execute(
            "UPDATE accounts SET full_name = ?, location = ?, company = ?, profile_url = ?,"
            " gravatar_email = ? WHERE id = ?",
            (
                account.full_name,
                account.location,
                account.company,
                account.profile_url,
                account.gravatar_email,
                account.id,
            ),
        )

    def add_email(self, account: Account, email: Email) -> None:
        self._db.execute(
            "INSERT INTO emails (account_id, address, verified, is_primary) VALUES (?, ?, ?, ?)",
            (account.id, email.address, int(email.verified), int(email.primary)),
        )

    def delete_email(self, account: Account, email: Email) -> None:
        self._db.execute(
            "DELETE FROM emails WHERE account_id = ? AND address = ?", (account.id, email.address)
        )

"""The live-state cache: the last GET answers per user, with when they were fetched.

Disposable by design (design.md section 5): deleting it costs one cold refresh.
Profiles and email lists are stored and aged separately because a user may
manage only one of them. Timestamps come from the caller, so this module reads
no clock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

import sqlite_utils

from syncd.errors import CacheError
from syncd.live import (
    LiveAccount,
    LiveEmail,
    LiveProfile,
    ShapeError,
    emails_json,
    parse_emails,
    parse_user,
    user_json,
)

#: Rows written per transaction: large enough to amortise the commit.
BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class CachedAccount:
    account: LiveAccount
    profile_fetched_at: float | None
    emails_fetched_at: float | None

    def fresh_profile(self, now: float, ttl: float) -> LiveProfile | None:
        if self.profile_fetched_at is None or now - self.profile_fetched_at > ttl:
            return None
        return self.account.profile

    def fresh_emails(self, now: float, ttl: float) -> tuple[LiveEmail, ...] | None:
        if self.emails_fetched_at is None or now - self.emails_fetched_at > ttl:
            return None
        return self.account.emails


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What was just learnt of one account; a None part is left as it is in the cache."""

    account: LiveAccount
    fetched_at: float


class LiveCache:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def read(self, usernames: Iterable[str]) -> dict[str, CachedAccount]:
        """The cached accounts among `usernames`; an unreadable row is treated as absent."""
        try:
            # Iterated, not fetched whole: 100,000 rows of JSON need not all be in memory.
            rows = self.db.execute(
                "SELECT username, user_json, user_fetched_at, emails_json, emails_fetched_at"
                " FROM live_users WHERE username IN (SELECT value FROM json_each(?))",
                [json.dumps(list(usernames))],
            )
            cached = {}
            for username, profile, profile_at, emails, emails_at in rows:
                try:
                    account = LiveAccount(
                        username,
                        parse_user(username, json.loads(profile)) if profile else None,
                        parse_emails(json.loads(emails)) if emails else None,
                    )
                except (ValueError, ShapeError):
                    continue  # a damaged entry costs a refetch, nothing more
                cached[username] = CachedAccount(
                    account,
                    profile_at if account.profile else None,
                    emails_at if account.emails is not None else None,
                )
        except sqlite3.Error as error:
            raise CacheError(f"cannot read the live-state cache: {error}") from None
        return cached

    def save(self, snapshots: Iterable[Snapshot]) -> None:
        """Store what was fetched, one transaction per batch."""
        batch: list[Snapshot] = []
        for snapshot in snapshots:
            batch.append(snapshot)
            if len(batch) >= BATCH_SIZE:
                self._save_batch(batch)
                batch = []
        if batch:
            self._save_batch(batch)

    def _save_batch(self, batch: list[Snapshot]) -> None:
        try:
            with self.db.atomic():
                for snapshot in batch:
                    self.put(snapshot)
        except sqlite3.Error as error:
            raise CacheError(f"cannot write the live-state cache: {error}") from None

    def put(self, snapshot: Snapshot) -> None:
        """Store one snapshot inside the caller's transaction."""
        account, at = snapshot.account, snapshot.fetched_at
        if account.profile is None and account.emails is None:
            return
        profile = (
            json.dumps(user_json(account.profile, account.username)) if account.profile else None
        )
        emails = json.dumps(emails_json(account.emails)) if account.emails is not None else None
        # COALESCE keeps the part that was not fetched this time.
        self.db.execute(
            "INSERT INTO live_users VALUES (?, ?, ?, ?, ?) ON CONFLICT(username) DO UPDATE SET"
            " user_json = COALESCE(excluded.user_json, user_json),"
            " user_fetched_at = COALESCE(excluded.user_fetched_at, user_fetched_at),"
            " emails_json = COALESCE(excluded.emails_json, emails_json),"
            " emails_fetched_at = COALESCE(excluded.emails_fetched_at, emails_fetched_at)",
            [
                account.username,
                profile,
                at if profile else None,
                emails,
                at if emails else None,
            ],
        )

    def replace_emails(self, username: str, emails: tuple[LiveEmail, ...]) -> None:
        """New content for a cached email list, keeping its fetch time (its age is unchanged)."""
        self.db.execute(
            "UPDATE live_users SET emails_json = ? WHERE username = ?"
            " AND emails_fetched_at IS NOT NULL",
            [json.dumps(emails_json(emails)), username],
        )

    def forget(self, username: str) -> None:
        """Drop what is known of a user, so the next plan reads it again."""
        with self.db.atomic():
            self.db.execute("DELETE FROM live_users WHERE username = ?", [username])

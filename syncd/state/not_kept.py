"""The writes the server did not keep, remembered in syncd.db so that they are not sent again.

Not in the disposable cache: losing them would cost a write per such field,
sent again to the same effect, not only a read. One row per API, user, field
and (for an added address) the address sent; a newer record replaces an older.
What one API did not keep says nothing of another (syncd.core.api_url).
A record ends when the desired or the live value changes (the plan no longer
matches it: syncd.core.not_kept) or after `ttl` seconds (SYNCD_NOT_KEPT_TTL):
an older one is not read, and is deleted when a newer is saved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from syncd.core.not_kept import NotKept
from syncd.state.backend import Database


class NotKeptRecords:
    def __init__(self, db: Database, api: str, ttl: float | None = None) -> None:
        self.db = db
        #: The API these records are of, in syncd.core.api_url's normal form.
        self.api = api
        self.ttl = ttl

    def _oldest_kept(self) -> str:
        if self.ttl is None:
            return ""
        return datetime.fromtimestamp(time.time() - self.ttl, UTC).isoformat(timespec="seconds")

    def load(self, usernames: Iterable[str]) -> dict[str, list[NotKept]]:
        """The records of these users, by user."""
        rows = self.db.execute(
            "SELECT username, field, sent, kept FROM not_kept"
            f" WHERE api = ? AND username IN ({self.db.dialect.json_values})"
            " AND recorded_at >= ?",
            [self.api, json.dumps(list(usernames)), self._oldest_kept()],
        )
        records: dict[str, list[NotKept]] = {}
        for username, field, sent, kept in rows:
            records.setdefault(username, []).append(NotKept(username, field, sent, kept))
        return records

    def save(self, records: Iterable[NotKept]) -> None:
        """Remember these, inside the caller's transaction (the write's outcome)."""
        records = tuple(records)
        if not records:
            return  # the outcome of almost every write: no clock read for it
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.db.execute("DELETE FROM not_kept WHERE recorded_at < ?", [self._oldest_kept()])
        for record in records:
            user, field, sent_key = record.key
            self.db.execute(
                "INSERT INTO not_kept (api, username, field, sent_key, sent, kept, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (api, username, field, sent_key)"
                " DO UPDATE SET sent = excluded.sent, kept = excluded.kept,"
                " recorded_at = excluded.recorded_at",
                [self.api, user, field, sent_key, record.sent, record.kept, now],
            )

"""The `suspensions` table: the users `syncd suspend` left alone, until when, and who said so.

Read at the start of every daemon cycle and again before each user's writes
(one indexed query), so that a suspension said from any host (PostgreSQL)
or any process reaches a running daemon before its next write. `--all` is
kept as the user "*" (syncd.core.suspension.EVERYONE).
"""

from __future__ import annotations

from datetime import UTC, datetime

from syncd.core.suspension import EVERYONE, Suspension
from syncd.core.vocabulary import SuspensionSource
from syncd.state.backend import Database


class SuspensionTable:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> dict[str, Suspension]:
        if not self.db.has_table("suspensions"):  # a read-only state from before them
            return {}
        rows = self.db.execute(
            "SELECT username, reason, until, suspended_by FROM suspensions ORDER BY username"
        )
        return {
            user: Suspension(reason, until, by, SuspensionSource.CLI)
            for user, reason, until, by in rows
        }

    def holds(self, user: str, now: float) -> bool:
        """Whether `syncd suspend` holds `user` (or everyone) at `now`: one indexed query."""
        row = self.db.execute(
            "SELECT 1 FROM suspensions WHERE username IN (?, ?) AND (until IS NULL OR until > ?)",
            [user, EVERYONE, now],
        ).fetchone()
        return row is not None

    def suspend(self, users: list[str], suspension: Suspension) -> None:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        with self.db.atomic():
            for user in users:
                self.db.execute(
                    "INSERT INTO suspensions (username, reason, until, suspended_by, since)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET"
                    " reason = excluded.reason, until = excluded.until,"
                    " suspended_by = excluded.suspended_by, since = excluded.since",
                    [user, suspension.reason, suspension.until, suspension.by, since],
                )

    def resume(self, users: list[str] | None) -> list[str]:
        """Drop the suspensions of `users` (None: every one); the users that had one."""
        with self.db.atomic():
            held = self.all()
            gone = sorted(held if users is None else set(users) & held.keys())
            for user in gone:
                self.db.execute("DELETE FROM suspensions WHERE username = ?", [user])
        return gone

    def drop_ended(self, now: float) -> dict[str, Suspension]:
        """Forget the suspensions that ended before `now`; the ones forgotten."""
        with self.db.atomic():
            ended = {u: s for u, s in self.all().items() if not s.holds(now)}
            for user in ended:
                self.db.execute("DELETE FROM suspensions WHERE username = ?", [user])
        return ended

"""The daemon's users in error: what failed, since when, and when each is tried again.

One user's failure must not delay the others (design.md section 3): a user
that failed is retried with its own backoff, doubling and capped at the drift
window, while the rest go on at the normal interval. Until its retry is due
the daemon does not read it, and the plan carries its last error instead.
`syncd status` lists these rows; the daemon writes them once per cycle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.state.backend import Database


@dataclass(frozen=True, slots=True)
class FailingUser:
    username: str
    code: str
    message: str
    #: When the user started failing (ISO 8601, UTC), and cycles failed in a row.
    since: str
    failures: int
    #: When the daemon reads it again (Unix time); None: at the next cycle.
    retry_at: float | None


class UserFailures:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> dict[str, FailingUser]:
        rows = self.db.execute(
            "SELECT username, code, message, since, failures, retry_at FROM user_failures"
            " ORDER BY username"
        )
        return {row[0]: FailingUser(*row) for row in rows}

    def update(
        self,
        now: float,
        failed: Mapping[str, tuple[str, str, bool]],
        fine: Iterable[str],
        retry_delay: Callable[[int], float],
    ) -> dict[str, FailingUser]:
        """Record a cycle: `failed` users (code, message, whether to back off) and the
        users that were `fine`; returns the failing users as they stand now."""
        known = self.all()
        at = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        with self.db.atomic():
            for username in fine:
                if username in known:
                    self.db.execute("DELETE FROM user_failures WHERE username = ?", [username])
                    del known[username]
            for username, (code, message, back_off) in failed.items():
                before = known.get(username)
                failures = 1 if before is None else before.failures + 1
                since = at if before is None else before.since
                retry_at = now + retry_delay(failures) if back_off else None
                known[username] = FailingUser(username, code, message, since, failures, retry_at)
                self.db.execute(
                    "INSERT INTO user_failures (username, code, message, since, failures,"
                    " retry_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET"
                    " code = excluded.code, message = excluded.message,"
                    " failures = excluded.failures, retry_at = excluded.retry_at",
                    [username, code, message, since, failures, retry_at],
                )
        return known

    def forget_except(self, usernames: Iterable[str]) -> None:
        """Drop the users no longer in the desired state."""
        self.db.execute(
            f"DELETE FROM user_failures WHERE username NOT IN ({self.db.dialect.json_values})",
            [json.dumps(list(usernames))],
        )

    def clear(self) -> None:
        """Forget every failure: SIGHUP reads every user again, those in error too."""
        self.db.execute("DELETE FROM user_failures")

"""The daemon's users in error: what failed, since when, and when each is tried again.

One user's failure must not delay the others (design.md section 3): a user
that failed is retried with its own backoff, doubling and capped at the drift
window, while the rest go on at the normal interval. Until its retry is due
the daemon does not read it, and the plan carries its last error instead.
`syncd status` lists these rows; the daemon writes them once per cycle.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from syncd.core.problem import Problem
from syncd.core.vocabulary import Code
from syncd.state.backend import Database


class UserFailures:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self, limit: int | None = None) -> dict[str, Problem]:
        """The users in error by name; the first `limit` of them when given (a page)."""
        sql = (
            "SELECT username, code, message, since, failures, retry_at FROM user_failures"
            " ORDER BY username"
        )
        rows = (
            self.db.execute(sql) if limit is None else self.db.execute(f"{sql} LIMIT ?", [limit])
        )
        return {
            user: Problem(user, Code(code), message, since=since, failures=n, retry_at=retry_at)
            for user, code, message, since, n, retry_at in rows
        }

    def count(self) -> int:
        (count,) = self.db.execute("SELECT COUNT(*) FROM user_failures").fetchone()
        return int(count)

    def of(self, username: str) -> Problem | None:
        """One user's error, if it is in error."""
        row = self.db.execute(
            "SELECT code, message, since, failures, retry_at FROM user_failures"
            " WHERE username = ?",
            [username],
        ).fetchone()
        if row is None:
            return None
        code, message, since, failures, retry_at = row
        return Problem(
            username, Code(code), message, since=since, failures=failures, retry_at=retry_at
        )

    def update(
        self,
        now: float,
        failed: Iterable[Problem],
        fine: Iterable[str],
        retry_delay: Callable[[Problem], float | None],
    ) -> dict[str, Problem]:
        """Record a cycle: the `failed` users' problems and the users that were `fine`;
        returns the failing users as they stand now. `retry_delay` says, of a problem
        with its count of failures, when to read the user again (None: next cycle)."""
        known = self.all()
        at = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        with self.db.atomic():
            for username in fine:
                if username in known:
                    self.db.execute("DELETE FROM user_failures WHERE username = ?", [username])
                    del known[username]
            for problem in failed:
                username, code, message = problem.user, problem.code, problem.message
                before = known.get(username)
                failures = 1 if before is None else before.failures + 1
                since = at if before is None else before.since
                counted = dataclasses.replace(problem, since=since, failures=failures)
                delay = retry_delay(counted)
                retry_at = None if delay is None else now + delay
                known[username] = dataclasses.replace(counted, retry_at=retry_at)
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

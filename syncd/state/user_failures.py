"""The daemon's users in error: what failed, since when, and when each is tried again.

One user's failure must not delay the others (design.md section 3): a user
that failed is retried with its own backoff, doubling and capped at the drift
window, while the rest go on at the normal interval. Until its retry is due
the daemon does not read it, and the plan carries its last error instead.
`syncd status` lists these rows; the daemon writes them once per cycle. They
are kept per API (syncd.core.api_url): one API's failures hold back no user of
another.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from syncd.core.problem import Problem
from syncd.core.vocabulary import Code
from syncd.state.backend import Database
from syncd.state.schema import has_column

#: This API's failures, each row as `_problem` takes it.
_SELECT = (
    "SELECT username, code, message, since, failures, retry_at FROM user_failures WHERE api = ?"
)


def _problem(
    user: str, code: str, message: str, since: str, failures: int, retry_at: float | None
) -> Problem:
    return Problem(user, Code(code), message, since=since, failures=failures, retry_at=retry_at)


class UserFailures:
    def __init__(self, db: Database, api: str) -> None:
        self.db = db
        #: The API these failures are of, in syncd.core.api_url's normal form.
        self.api = api

    @functools.cached_property
    def _kept(self) -> bool:
        """False in a read-only state (`syncd status`, the pages) from before the
        failures were kept, or before they were kept per API: then none are known."""
        return has_column(self.db, "user_failures", "api")

    def all(self, limit: int | None = None) -> dict[str, Problem]:
        """The users in error by name; the first `limit` of them when given (a page)."""
        if not self._kept:
            return {}
        sql = f"{_SELECT} ORDER BY username"
        rows = (
            self.db.execute(sql, [self.api])
            if limit is None
            else self.db.execute(f"{sql} LIMIT ?", [self.api, limit])
        )
        return {row[0]: _problem(*row) for row in rows}

    def count(self) -> int:
        if not self._kept:
            return 0
        (count,) = self.db.execute(
            "SELECT COUNT(*) FROM user_failures WHERE api = ?", [self.api]
        ).fetchone()
        return int(count)

    def of(self, username: str) -> Problem | None:
        """One user's error, if it is in error."""
        if not self._kept:
            return None
        row = self.db.execute(f"{_SELECT} AND username = ?", [self.api, username]).fetchone()
        return None if row is None else _problem(*row)

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
                    self.db.execute(
                        "DELETE FROM user_failures WHERE api = ? AND username = ?",
                        [self.api, username],
                    )
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
                    "INSERT INTO user_failures (api, username, code, message, since, failures,"
                    " retry_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (api, username)"
                    " DO UPDATE SET code = excluded.code, message = excluded.message,"
                    " failures = excluded.failures, retry_at = excluded.retry_at",
                    [self.api, username, code, message, since, failures, retry_at],
                )
        return known

    def forget_except(self, usernames: Iterable[str]) -> None:
        """Drop the users no longer in the desired state, and every other API's failures:
        the daemon reconciles one API, and `syncd status` shows its failures alone."""
        self.db.execute(
            "DELETE FROM user_failures WHERE api <> ?"
            f" OR username NOT IN ({self.db.dialect.json_values})",
            [self.api, json.dumps(list(usernames))],
        )

    def clear(self) -> None:
        """Forget every failure: SIGHUP reads every user again, those in error too."""
        self.db.execute("DELETE FROM user_failures WHERE api = ?", [self.api])

"""The live-state cache: the last GET answers per user, with when they were fetched.

Disposable by design (design.md section 5): deleting it costs one cold refresh.
Profiles and email lists are stored and aged separately because a user may
manage only one of them. Each answer is kept under the API that gave it
(syncd.core.api_url): a cache opened for one API never sees another's answers,
so that switching URLs cannot make a plan say "no changes" from the wrong
server. Timestamps come from the caller, so this module reads no clock.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from syncd.core.live import LiveAccount, LiveEmail, LiveProfile
from syncd.state.backend import Database
from syncd.state.schema import has_column

#: Rows written per transaction: large enough to amortise the commit.
BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What was just learnt of one account; a None part is left as it is in the cache."""

    account: LiveAccount
    fetched_at: float


@dataclass(frozen=True, slots=True)
class Cached:
    """A cached account and when each of its parts was read (None: not returned)."""

    account: LiveAccount
    profile_read_at: float | None = None
    emails_read_at: float | None = None


class LiveCache:
    def __init__(self, db: Database, api: str, *, keeps_answers: bool = True) -> None:
        self.db = db
        #: The API whose answers these are, in syncd.core.api_url's normal form.
        self.api = api
        #: False: `save` keeps nothing (a plan beside the active instance, which may
        #: run as a role that may only read).
        self.keeps_answers = keeps_answers

    def read_fresh(self, usernames: Iterable[str], now: float, ttl: float) -> dict[str, Cached]:
        """The cached accounts among `usernames`, each part only if it is at most `ttl` old.

        A part that is older, or not cached, is None; a row that cannot be read
        is left out, so it costs a refetch and nothing more.
        """
        oldest = now - ttl
        # Iterated, not fetched whole: 100,000 rows need not all be in memory.
        rows = self.db.execute(
            "SELECT username, profile_fetched_at, full_name, location, company,"
            " profile_url, gravatar_url, email, emails_fetched_at, emails"
            " FROM live_accounts WHERE api = ?"
            f" AND username IN ({self.db.dialect.json_values})",
            [self.api, json.dumps(list(usernames))],
        )
        cached = {}
        for username, profile_read, *profile, emails_read, emails in rows:
            # Rows are written only by `put`, from values already checked;
            # these checks are for a file damaged some other way.
            profile_at = profile_read if _fresh(profile_read, oldest) else None
            emails_at = emails_read if _fresh(emails_read, oldest) else None
            try:
                account = LiveAccount(
                    username,
                    None if profile_at is None else _profile(profile),
                    None if emails_at is None else _emails(emails),
                )
            except (ValueError, TypeError):
                continue
            cached[username] = Cached(account, profile_at, emails_at)
        return cached

    def save(self, snapshots: Iterable[Snapshot]) -> None:
        """Store what was fetched, one transaction per batch."""
        if not self.keeps_answers:
            return
        remaining = iter(snapshots)
        while batch := list(itertools.islice(remaining, BATCH_SIZE)):
            with self.db.atomic():
                for snapshot in batch:
                    self.put(snapshot)

    def put(self, snapshot: Snapshot) -> None:
        """Store one snapshot inside the caller's transaction."""
        account, at = snapshot.account, snapshot.fetched_at
        profile, emails = account.profile, account.emails
        if profile is None and emails is None:
            return
        values = _NO_PROFILE if profile is None else _profile_values(profile)
        if not self.db.dialect.text_holds_nul and any("\x00" in v for v in values if v):
            # A value PostgreSQL cannot keep as text (the addresses are JSON, escaped):
            # not cached at all, which costs a read next time and nothing else.
            self.db.execute(
                "DELETE FROM live_accounts WHERE api = ? AND username = ?",
                [self.api, account.username],
            )
            return
        self.db.execute(
            _UPSERT,
            [
                self.api,
                account.username,
                None if profile is None else at,
                *values,
                None if emails is None else at,
                None if emails is None else _emails_json(emails),
            ],
        )

    def replace_emails(self, username: str, emails: tuple[LiveEmail, ...]) -> None:
        """New content for a cached email list, keeping its fetch time (its age is unchanged)."""
        self.db.execute(
            "UPDATE live_accounts SET emails = ? WHERE api = ? AND username = ?"
            " AND emails_fetched_at IS NOT NULL",
            [_emails_json(emails), self.api, username],
        )

    def forget(self, username: str) -> None:
        """Drop what is known of a user, from every API: a write to it was interrupted,
        and the next plan must read it again whichever API it is for."""
        with self.db.atomic():
            self.db.execute("DELETE FROM live_accounts WHERE username = ?", [username])


#: In the order of LiveProfile's fields, as `read_fresh` passes them.
_PROFILE_COLUMNS = ("full_name", "location", "company", "profile_url", "gravatar_url", "email")
_NO_PROFILE = (None,) * len(_PROFILE_COLUMNS)
# A part that was not fetched this time is all NULLs, and a fetched part has
# none (each of its fields is text): COALESCE keeps the cached part whole. The
# cached row is named by its table, as PostgreSQL requires.
_UPSERT = """
INSERT INTO live_accounts (api, username, profile_fetched_at, full_name, location, company,
    profile_url, gravatar_url, email, emails_fetched_at, emails)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(api, username) DO UPDATE SET
    profile_fetched_at = COALESCE(excluded.profile_fetched_at, live_accounts.profile_fetched_at),
    full_name = COALESCE(excluded.full_name, live_accounts.full_name),
    location = COALESCE(excluded.location, live_accounts.location),
    company = COALESCE(excluded.company, live_accounts.company),
    profile_url = COALESCE(excluded.profile_url, live_accounts.profile_url),
    gravatar_url = COALESCE(excluded.gravatar_url, live_accounts.gravatar_url),
    email = COALESCE(excluded.email, live_accounts.email),
    emails_fetched_at = COALESCE(excluded.emails_fetched_at, live_accounts.emails_fetched_at),
    emails = COALESCE(excluded.emails, live_accounts.emails)
"""


def _profile_values(profile: LiveProfile) -> tuple[str, ...]:
    return tuple(getattr(profile, column) for column in _PROFILE_COLUMNS)


def _fresh(fetched_at: float | None, oldest: float) -> bool:
    return fetched_at is not None and fetched_at >= oldest


def _emails_json(emails: tuple[LiveEmail, ...]) -> str:
    return json.dumps([[e.email, e.verified, e.primary] for e in emails])


def _profile(values: list[Any]) -> LiveProfile:
    if not all(type(value) is str for value in values):
        raise TypeError("a profile column is not text")
    return LiveProfile(*values)


def _emails(text: str) -> tuple[LiveEmail, ...]:
    emails = []
    for address, verified, primary in json.loads(text):
        if type(address) is not str or type(verified) is not bool or type(primary) is not bool:
            raise TypeError("an address entry is not [text, bool, bool]")
        emails.append(LiveEmail(address, verified, primary))
    return tuple(emails)


def last_read(db: Database, api: str, username: str) -> tuple[float | None, float | None]:
    """When the profile and the addresses of `username` were last read from `api`."""
    if not has_column(db, "live_accounts", "api"):
        return None, None
    row = db.execute(
        "SELECT profile_fetched_at, emails_fetched_at FROM live_accounts"
        " WHERE api = ? AND username = ?",
        [api, username],
    ).fetchone()
    return (None, None) if row is None else (row[0], row[1])

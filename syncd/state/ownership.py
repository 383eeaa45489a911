"""The ownership ledger: the addresses syncd owns on each account, for `emails_mode: owned`.

syncd owns an address from the run that added it (after the POST succeeded), or
that read it from the API on the account (never from the cache) while it was
listed, recorded once that run is committed to its plan
(syncd.engine.reconcile.claim_ownership), until a run deletes it or reads the
account without it (reconcile.plan_from). Only those may be deleted when they
leave the list (design.md section 2.1): the owner may add a released one again,
as their own. The ledger is
history, not cache: it lives in syncd.db / PostgreSQL beside the runs, moves
with `syncd state migrate`, and survives deleting cache.db. It is kept per API
(its normalised URL, syncd.core.api_url) and user. A lost
ledger owns nothing, so deletes nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

from syncd.core.fields import email_key
from syncd.core.plan import UserEmail
from syncd.state.backend import Database


class Claim(StrEnum):
    """How syncd came to own an address."""

    ADDED = "added"
    LISTED = "listed"  # listed in the desired state while syncd read it on the account


class OwnershipLedger:
    def __init__(self, db: Database, api: str) -> None:
        self.db, self.api = db, api

    def load(self, usernames: Iterable[str]) -> dict[str, frozenset[str]]:
        """The email_keys syncd owns, by user, for these users."""
        rows = self.db.execute(
            "SELECT username, email_key FROM email_ownership"
            f" WHERE api = ? AND username IN ({self.db.dialect.json_values})",
            [self.api, json.dumps(list(usernames))],
        )
        owned: dict[str, set[str]] = {}
        for username, key in rows:
            owned.setdefault(username, set()).add(key)
        return {username: frozenset(keys) for username, keys in owned.items()}

    def holds_any(self) -> bool:
        """Whether this state holds any address as syncd's on this API: one that holds
        none (a fresh state, or another API's) cannot tell what syncd owns."""
        found = self.db.execute(
            "SELECT 1 FROM email_ownership WHERE api = ? LIMIT 1", [self.api]
        ).fetchone()
        return found is not None

    def record(self, addresses: Iterable[UserEmail], how: Claim) -> None:
        """Own these from now on, inside the caller's transaction; the first claim stays."""
        addresses = tuple(addresses)
        if not addresses:
            return
        since = _iso(time.time())
        self.db.execute_many(
            "INSERT INTO email_ownership (api, username, email_key, email, since, how)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (api, username, email_key) DO NOTHING",
            [
                (self.api, each.user, email_key(each.email), each.email, since, str(how))
                for each in addresses
            ],
        )

    def release(self, addresses: Iterable[UserEmail], claimed_before: float = math.inf) -> None:
        """Own these no more (gone from the account), inside the caller's transaction;
        those claimed from `claimed_before` on (a Unix time) are kept."""
        before = "~" if claimed_before == math.inf else _iso(claimed_before)  # "~" > any date
        self.db.execute_many(
            "DELETE FROM email_ownership"
            " WHERE api = ? AND username = ? AND email_key = ? AND since < ?",
            [(self.api, each.user, email_key(each.email), before) for each in addresses],
        )


def _iso(moment: float) -> str:
    # Text that compares as time: "2026-12-08T05:40:01.250000+00:00" (a claim of an
    # older syncd, to the second, "…:01+00:00", sorts before any moment of its second).
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")

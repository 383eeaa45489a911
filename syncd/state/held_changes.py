"""The `held_changes` table: deletions a daemon's guard held, and what the operator decided.

A set is `held` until `syncd approve` or `syncd reject`; an approved one is
given to the next cycle (then `applied`); a rejected one keeps its deletions
from being asked about again for the same revision. The daemon holds at most
one open set: the same deletions planned again keep it, other ones replace it
(`superseded`). Sets are kept per API (syncd.core.api_url): a decision about
one API's deletions lets nothing through, and holds nothing back, on another.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd.core.fields import email_key
from syncd.core.held import DeletionKey, per_user
from syncd.core.plan import DeleteEmail
from syncd.core.vocabulary import HeldStatus
from syncd.errors import UsageError
from syncd.state.backend import Database
from syncd.state.schema import has_column

_COLUMNS = "id, revision, held_at, deletions, status, decided_by, decided_at"


@dataclass(frozen=True, slots=True)
class HeldSet:
    id: str
    revision: str | None
    held_at: str
    #: (user, address as planned), in the plan's order.
    deletions: tuple[tuple[str, str], ...]
    status: HeldStatus
    decided_by: str | None = None
    decided_at: str | None = None

    def deletion_keys(self) -> set[DeletionKey]:
        return {(user, email_key(email)) for user, email in self.deletions}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "held_at": self.held_at,
            "status": str(self.status),
            "deletions": len(self.deletions),
            "per_user": per_user(self.deletion_keys()),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "approve": f"syncd approve {self.id}",
            "reject": f"syncd reject {self.id}",
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class HeldChanges:
    def __init__(self, db: Database, api: str) -> None:
        self.db = db
        #: The API these sets are of, in syncd.core.api_url's normal form.
        self.api = api

    @functools.cached_property
    def _kept(self) -> bool:
        """False in a read-only state from before the sets, or before they were per API."""
        return has_column(self.db, "held_changes", "api")

    def with_status(self, *statuses: HeldStatus) -> list[HeldSet]:
        """This API's sets in these statuses."""
        if not self._kept:
            return []
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM held_changes WHERE api = ?"
            f" AND status IN ({self.db.dialect.json_values}) ORDER BY held_at, id",
            [self.api, json.dumps([str(status) for status in statuses])],
        )
        return [_held_set(row) for row in rows]

    def rejected_for(self, revision: str | None) -> set[DeletionKey]:
        """The deletions rejected for this revision: not asked about again."""
        return {
            key
            for held in self.with_status(HeldStatus.REJECTED)
            if held.revision == revision
            for key in held.deletion_keys()
        }

    def hold(self, revision: str | None, deletions: Iterable[DeleteEmail]) -> tuple[HeldSet, bool]:
        """The open set for these deletions, and whether it is new (else: already asked)."""
        pairs = tuple((d.user, d.email) for d in deletions)
        keys = {(user, email_key(email)) for user, email in pairs}
        with self.db.atomic():
            for held in self.with_status(HeldStatus.HELD):
                if held.deletion_keys() == keys:
                    if held.revision != revision:
                        # A decision on it is about the deletions planned now.
                        self.db.execute(
                            "UPDATE held_changes SET revision = ? WHERE id = ?",
                            [revision, held.id],
                        )
                    return dataclasses.replace(held, revision=revision), False
                _set_status(self.db, held.id, HeldStatus.SUPERSEDED, None)
            made = HeldSet(uuid.uuid4().hex[:8], revision, _now(), pairs, HeldStatus.HELD)
            self.db.execute(
                "INSERT INTO held_changes (id, api, revision, held_at, deletions, status)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [made.id, self.api, revision, made.held_at, json.dumps(pairs), made.status],
            )
        return made, True

    def mark(self, sets: Iterable[HeldSet], status: HeldStatus) -> None:
        """Close decided sets (`applied`, `superseded`), keeping who decided them."""
        with self.db.atomic():
            for held in sets:
                _set_status(self.db, held.id, status, held.decided_by)


def _held_set(row: Any) -> HeldSet:
    held_id, revision, held_at, deletions, status, decided_by, decided_at = row
    pairs = tuple((user, email) for user, email in json.loads(deletions))
    return HeldSet(held_id, revision, held_at, pairs, HeldStatus(status), decided_by, decided_at)


def decide(db: Database, held_id: str, status: HeldStatus, by: str) -> HeldSet:
    """Approve or reject the open set `held_id`, of whichever API (its id is its own, and
    `syncd approve` may be run without the daemon's SYNCD_API_URL); a UsageError if
    there is none."""
    with db.atomic():
        row = db.execute(f"SELECT {_COLUMNS} FROM held_changes WHERE id = ?", [held_id]).fetchone()
        if row is None:
            raise UsageError(f"no held change set {held_id!r}: `syncd status` lists them")
        held = _held_set(row)
        if held.status != HeldStatus.HELD:
            raise UsageError(f"held change set {held_id} is {held.status} already")
        _set_status(db, held_id, status, by)
    return dataclasses.replace(held, status=status, decided_by=by, decided_at=_now())


def _set_status(db: Database, held_id: str, status: HeldStatus, by: str | None) -> None:
    db.execute(
        "UPDATE held_changes SET status = ?, decided_by = ?, decided_at = ? WHERE id = ?",
        [status, by, _now(), held_id],
    )

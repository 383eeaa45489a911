"""The `held_changes` table: deletions a daemon's guard held, and what the operator decided.

A set is `held` until `syncd approve` or `syncd reject`; an approved one is
given to the next cycle (then `applied`), for the deletions that cycle plans.
A rejection stands across revisions for as long as its deletion is planned: it
lapses when a cycle that read the user no longer plans it (the desired state
stopped asking), and a set whose deletions have all lapsed is `superseded`; a
later plan of a lapsed deletion is a new question. Every run that writes leaves
a standing rejection out (the daemon's cycles, `run --once`, `apply`); the
operator undoes one by approving the rejected set. Of two decided sets that
name the same deletion, the later decision wins: a rejection after an approval
stops the deletion. The daemon holds at most one open set: the same deletions
planned again keep it, other ones replace it (`superseded`). Sets are kept per
API (syncd.core.api_url): a decision about one API's deletions lets nothing
through, and holds nothing back, on another.

Each change of a set's status names the status it was read in, so that a
decision and a cycle that close the same set at once (two sessions on
PostgreSQL) do not both take effect: the second changes no row, and says so.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd.core.fields import email_key
from syncd.core.held import DeletionKey, Rejections, deletion_key, guarded, per_user, unread
from syncd.core.plan import DeleteEmail, Plan
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


@dataclass(frozen=True, slots=True)
class Decisions:
    """What the operator decided last about each deletion, as a cycle reads it."""

    #: The approved sets: the cycle that lets their deletions through spends them.
    approved_sets: tuple[HeldSet, ...] = ()
    #: The deletions whose last decision is an approval: let through.
    approved: frozenset[DeletionKey] = frozenset()
    #: The deletions whose last decision is a rejection that has not lapsed: left out,
    #: not asked about again, at any revision.
    rejected: frozenset[DeletionKey] = frozenset()


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

    def decisions(self) -> Decisions:
        """The approved sets, and each deletion's last decision.

        The later decision about a deletion wins, a rejection at the same second:
        a deletion approved in one set and rejected in a later one (two sets of it,
        which a cycle that raced an approval made before this was read again when
        holding) is stopped, as the operator said last.
        """
        decided = self.with_status(HeldStatus.APPROVED, HeldStatus.REJECTED)
        last: dict[DeletionKey, HeldSet] = {}
        for held in sorted(
            decided, key=lambda held: (held.decided_at or "", held.status == HeldStatus.REJECTED)
        ):
            last.update(dict.fromkeys(held.deletion_keys(), held))
        return Decisions(
            tuple(held for held in decided if held.status == HeldStatus.APPROVED),
            frozenset(key for key, held in last.items() if held.status == HeldStatus.APPROVED),
            frozenset(key for key, held in last.items() if held.status == HeldStatus.REJECTED),
        )

    def rejections(self, plan: Plan, standing: frozenset[DeletionKey] | None = None) -> Rejections:
        """The rejections that stand over a run of `plan`: of its deletions, and of the
        users it did not read (what they would plan is not known, and nothing of
        theirs lapses: HeldChanges.lapse). `standing`: the rejected deletions as the
        caller read them (else read now)."""
        if standing is None:
            standing = self.decisions().rejected
        if not standing:
            return Rejections()
        # By action, not by key: a live list holding one address in two spellings plans
        # a DeleteEmail for each, and a rejection of the address leaves out both.
        left_out = [
            action
            for action in plan.changes
            if isinstance(action, DeleteEmail) and deletion_key(action) in standing
        ]
        keys = {deletion_key(action) for action in left_out}
        unread_users, rejected = unread(plan), self.with_status(HeldStatus.REJECTED)
        for held in rejected:
            for user, email in held.deletions:
                key = (user, email_key(email))
                if user in unread_users and key in standing and key not in keys:
                    keys.add(key)
                    left_out.append(DeleteEmail(user, email))
        sets = tuple(held.id for held in rejected if held.deletion_keys() & keys)
        return Rejections(tuple(left_out), sets)

    def hold(
        self, revision: str | None, deletions: Iterable[DeleteEmail], limit: int
    ) -> tuple[HeldSet | None, bool]:
        """The open set for these deletions, and whether it is new (else: already asked).

        The decisions are read again first, in the transaction that makes the set:
        a cycle plans for a while, and an approval or a rejection given meanwhile
        counts. Deletions decided since are not held again; the rest are held only
        while they are more than `limit`. None: nothing is left to hold.
        """
        planned = tuple(deletions)
        with self.db.atomic():
            # Again while a set this one would replace was decided meanwhile (on
            # PostgreSQL, after the read): its decision counts too. Only the daemon
            # opens a set, so each pass finds fewer open ones.
            while (held := self._hold_once(revision, planned, limit)) is None:
                pass
        return held

    def _hold_once(
        self, revision: str | None, planned: tuple[DeleteEmail, ...], limit: int
    ) -> tuple[HeldSet | None, bool] | None:
        """HeldChanges.hold's answer; None when a set it would replace was decided since."""
        decided = self.decisions()
        holding, _ = guarded(planned, limit, decided.approved, decided.rejected)
        if not holding:
            return None, False
        pairs = tuple((d.user, d.email) for d in holding)
        keys = {(user, email_key(email)) for user, email in pairs}
        for held in self.with_status(HeldStatus.HELD):
            if held.deletion_keys() == keys:
                if held.revision != revision:
                    # A decision on it is about the deletions planned now.
                    self.db.execute(
                        "UPDATE held_changes SET revision = ? WHERE id = ?",
                        [revision, held.id],
                    )
                return dataclasses.replace(held, revision=revision), False
            if not _set_status(self.db, held, HeldStatus.SUPERSEDED, None):
                return None
        made = HeldSet(uuid.uuid4().hex[:8], revision, _now(), pairs, HeldStatus.HELD)
        self.db.execute(
            "INSERT INTO held_changes (id, api, revision, held_at, deletions, status)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [made.id, self.api, revision, made.held_at, json.dumps(pairs), made.status],
        )
        return made, True

    def lapse(self, planned: Iterable[DeletionKey], read: Callable[[str], bool]) -> list[HeldSet]:
        """End the rejections the desired state stopped asking for: each deletion of a
        rejected set whose user was `read` and that is not `planned`. A set left with
        none is closed as `superseded` and returned. Not a user not read: what the
        desired state asks of them is not known this cycle."""
        asked, closed = set(planned), list[HeldSet]()
        with self.db.atomic():
            for held in self.with_status(HeldStatus.REJECTED):
                kept = tuple(
                    (user, email)
                    for user, email in held.deletions
                    if not read(user) or (user, email_key(email)) in asked
                )
                if _narrow(self.db, held, kept):
                    closed.append(held)
        return closed

    def mark(self, sets: Iterable[HeldSet], status: HeldStatus) -> None:
        """Close decided sets (`applied`, `superseded`), keeping who decided them; one
        no longer in the status it was read in is left as it is now."""
        with self.db.atomic():
            for held in sets:
                _set_status(self.db, held, status, held.decided_by)


def _held_set(row: Any) -> HeldSet:
    held_id, revision, held_at, deletions, status, decided_by, decided_at = row
    pairs = tuple((user, email) for user, email in json.loads(deletions))
    return HeldSet(held_id, revision, held_at, pairs, HeldStatus(status), decided_by, decided_at)


def decide(db: Database, held_id: str, status: HeldStatus, by: str) -> HeldSet:
    """Approve or reject the open set `held_id`, or approve a rejected one, of whichever
    API (its id is its own, and `syncd approve` may be run without the daemon's
    SYNCD_API_URL); a UsageError if there is none."""
    with db.atomic():
        row = db.execute(f"SELECT {_COLUMNS} FROM held_changes WHERE id = ?", [held_id]).fetchone()
        if row is None:
            raise UsageError(f"no held change set {held_id!r}: `syncd status` lists them")
        held = _held_set(row)
        # A rejected set may still be approved: the way to let through a deletion the
        # operator rejected while the desired state asks for it (the later word wins).
        if held.status != HeldStatus.HELD and not (
            held.status == HeldStatus.REJECTED and status == HeldStatus.APPROVED
        ):
            raise UsageError(f"held change set {held_id} is {held.status} already")
        if not _set_status(db, held, status, by):
            raise UsageError(
                f"held change set {held_id} was closed by the daemon meanwhile: "
                "`syncd status` shows what it holds now"
            )
        if status == HeldStatus.REJECTED:
            _close_overridden(db, held)
        else:
            _lift_rejections(db, held)
    return dataclasses.replace(held, status=status, decided_by=by, decided_at=_now())


def _close_overridden(db: Database, rejected: HeldSet) -> None:
    """Close, as `superseded`, the approved sets of the same API whose deletions are all
    rejected now: the later word replaces them, and `syncd status` must not go on
    saying that the next cycle applies them. (One that shares only some is left to
    the guard, where the later decision about each deletion wins.)"""
    for approved in _beside(db, rejected, HeldStatus.APPROVED):
        if approved.deletion_keys() <= rejected.deletion_keys():
            _set_status(db, approved, HeldStatus.SUPERSEDED, approved.decided_by)


def _lift_rejections(db: Database, approved: HeldSet) -> None:
    """Drop the deletions now approved from the rejected sets of the same API: the
    later word replaces the rejection for good, or it would stand again, once the
    approval is spent, over a deletion the operator let through (one whose write
    failed, planned again)."""
    keys = approved.deletion_keys()
    for rejected in _beside(db, approved, HeldStatus.REJECTED):
        kept = tuple(
            pair for pair in rejected.deletions if (pair[0], email_key(pair[1])) not in keys
        )
        _narrow(db, rejected, kept)


def _beside(db: Database, held: HeldSet, status: HeldStatus) -> list[HeldSet]:
    """The sets of `held`'s API in `status`."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM held_changes WHERE status = ?"
        " AND api = (SELECT api FROM held_changes WHERE id = ?)",
        [status, held.id],
    )
    return [_held_set(row) for row in rows]


def _narrow(db: Database, rejected: HeldSet, kept: tuple[tuple[str, str], ...]) -> bool:
    """Keep only the deletions `kept` of a rejected set, the ones still rejected; with
    none left, close it as `superseded` (True: closed now)."""
    if not kept:
        return _set_status(db, rejected, HeldStatus.SUPERSEDED, rejected.decided_by)
    if kept != rejected.deletions:
        # The record of what was rejected keeps what still stands.
        db.execute(
            "UPDATE held_changes SET deletions = ? WHERE id = ? AND status = ?",
            [json.dumps(kept), rejected.id, rejected.status],
        )
    return False


def _set_status(db: Database, held: HeldSet, status: HeldStatus, by: str | None) -> bool:
    """Move `held` from the status it was read in to `status`; False: it was not in it."""
    moved = db.execute(
        "UPDATE held_changes SET status = ?, decided_by = ?, decided_at = ?"
        " WHERE id = ? AND status = ?",
        [status, by, _now(), held.id, held.status],
    ).rowcount
    return moved == 1

"""The daemon's deletion guard: hold the deletions past the limit, apply the rest.

`apply` stays all-or-nothing (exit 3); a daemon cannot ask, so its cycle
applies what it may and keeps the deletions as one held set (syncd.core.held
decides, syncd.state.held_changes keeps the sets) until `syncd approve` or
`syncd reject` (design.md section 4.1). `run --once` is one such cycle, the
operator's decisions included, but past the limit it refuses, as `apply` does.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import structlog

from syncd.core.desired import DesiredState
from syncd.core.held import (
    GuardSplit,
    Rejections,
    deletion_key,
    per_user,
    split_deletions,
    unread,
)
from syncd.core.plan import DeleteEmail, Plan
from syncd.core.vocabulary import HeldStatus
from syncd.engine.reconcile import check_deletion_guard
from syncd.state.held_changes import HeldChanges, HeldSet
from syncd.visible import counted

log = structlog.get_logger("syncd.service.deletion_guard")


def revision_of(desired: DesiredState) -> str:
    """The revision a rejection holds for: git's, else the files' content.

    A file or a directory has no revision; without one a rejection would hold
    for every later version of the file, and the deletion would never be asked
    about again, however the desired state changed.
    """
    if desired.revision is not None:
        return desired.revision
    files = "\n".join(f"{source.path} {source.sha256}" for source in desired.sources)
    return "sha256:" + hashlib.sha256(files.encode()).hexdigest()[:12]


class DeletionGuard:
    """The daemon's deletion guard for one cycle: hold past the limit, apply the rest.

    Deletions of an approved set go through; those rejected are dropped at any
    revision for as long as they are planned (of the two, the operator's later
    decision); the others count against the limit, and past it are held as one set
    (the same set while the same deletions are planned, so it is asked once). The
    decisions are read when the plan is split and again when the set is held: those
    given while the cycle ran count, and deletions decided are not held again as a
    new set. A rejection lapses when a cycle that read the user no longer plans it;
    one of a user not read stands, and leaves the cycle `held` all the same. A cycle
    limited to some users (`run --once --user`) decides nothing about the others'
    sets: none of theirs lapses, closes or is spent.
    """

    def __init__(
        self,
        held: HeldChanges,
        limit: int,
        revision: str | None,
        *,
        hold: bool = True,
        users: frozenset[str] | None = None,
    ) -> None:
        self.held, self.limit, self.revision = held, limit, revision
        #: Whether deletions past the limit are held (the daemon), or refuse the cycle
        #: whole with a GuardError, as `apply` does (`run --once`).
        self.hold = hold
        #: The users the cycle is limited to (None: everyone).
        self.users = users
        #: The split of the last plan; its `rejected` are those of `rejections`.
        self.last: GuardSplit | None = None
        #: The rejections that stand: of the plan's deletions, and of its users not read.
        self.rejections = Rejections()
        # Spent by conclude(), also when the cycle was not split (observing).
        self._approved = held.with_status(HeldStatus.APPROVED)

    def split(self, plan: Plan) -> GuardSplit:
        decided = self.held.decisions()
        # A run limited to some users honours only the approvals it spends whole
        # (conclude): one that reaches past the limit waits for a cycle that covers it,
        # or its deletions sent here could be sent again on it later, unasked.
        self._approved = list(decided.approved_sets)
        beyond = {k for s in self._approved if not self._limited_to(s) for k in s.deletion_keys()}
        self.rejections = self.held.rejections(plan, decided.rejected)
        split = split_deletions(plan, self.limit, decided.approved - beyond, decided.rejected)
        # With the rejections of the users not read, which stand too (the cycle is `held`);
        # kept before refusing, for the refusal names only the deletions held.
        self.last = dataclasses.replace(split, rejected=self.rejections.deletions)
        if split.held and not self.hold:
            check_deletion_guard(dataclasses.replace(plan, changes=split.held), self.limit, "run")
        return self.last

    def conclude(self, plan: Plan) -> list[str]:
        """Record the held set and the approved ones used; what the cycle that made
        `plan` says of them.

        An approved set is given to the one cycle after it that plans, even one with
        nothing to do: kept, it would let the same deletion of a later revision past
        the guard unasked. A set it sent deletions of is `applied` (what was sent is
        audited; one that failed is not carried over); one it sent none of (no longer
        planned, or its users not read) is `superseded`, asked about again if planned.
        A set of a user outside the cycle's limit is left for a cycle that plans them.
        """
        split, said = self.last or GuardSplit(plan), list[str]()
        sent = {deletion_key(a) for a in split.now.changes if isinstance(a, DeleteEmail)}
        for approved in self._approved:
            if not self._limited_to(approved):  # not split (observing): not filtered yet
                continue
            applied = bool(approved.deletion_keys() & sent)
            self.held.mark([approved], HeldStatus.APPLIED if applied else HeldStatus.SUPERSEDED)
            log.info(
                "deletions_approved_applied" if applied else "deletions_approved_not_planned",
                held_id=approved.id,
                deletions=len(approved.deletions),
            )
        if split.rejected:
            log.info(
                "deletions_rejected_left_out",
                deletions=len(split.rejected),
                revision=self.revision,
            )
            said.append(self.rejections.note())
        self._lapse_rejected(plan)
        held: HeldSet | None = None
        new = False
        if split.held:
            held, new = self.held.hold(self.revision, split.held, self.limit)
            if held is None:
                log.info("deletions_decided_meanwhile", deletions=len(split.held))
                said.append(
                    f"not holding {counted(len(split.held), 'deletion')}: the operator decided "
                    "on them while the cycle ran, and the next cycle does as decided"
                )
        if held is None:
            self._close_unheld(split.now)
        else:
            log.warning(
                "deletions_held",
                held_id=held.id,
                new=new,
                deletions=len(held.deletions),
                limit=self.limit,
                per_user=per_user(held.deletion_keys()),
                approve=f"syncd approve {held.id}",
                reject=f"syncd reject {held.id}",
            )
            said.append(
                f"holding {counted(len(held.deletions), 'deletion')} (the limit is {self.limit}) "
                f"as set {held.id}: syncd approve {held.id}, or syncd reject {held.id}"
            )
        return said

    def _limited_to(self, held: HeldSet) -> bool:
        """Whether every user of `held` is one this cycle may plan for."""
        return self.users is None or all(user in self.users for user, _ in held.deletions)

    def _read(self, plan: Plan) -> Callable[[str], bool]:
        """Whether the cycle that made `plan` read a user: one of its users (not outside
        its limit) not in error nor suspended. Of the others, what the desired state
        asks is not known: nothing of theirs lapses or closes."""
        not_read = unread(plan)
        return lambda user: user not in not_read and (self.users is None or user in self.users)

    def _lapse_rejected(self, plan: Plan) -> None:
        """End the rejections of deletions this cycle's plan no longer makes, of users
        it read: the desired state stopped asking, so planned again later they are a
        new question, not still rejected."""
        planned = {deletion_key(a) for a in plan.changes if isinstance(a, DeleteEmail)}
        for closed in self.held.lapse(planned, self._read(plan)):
            log.info("deletions_rejected_not_planned", held_id=closed.id)

    def _close_unheld(self, plan: Plan) -> None:
        """Close the open sets a cycle that holds nothing no longer asks about: the
        desired state keeps the addresses (the commit was fixed) or the limit allows
        the deletions. Left open, a set would keep the guard blocked until someone
        decided on deletions nobody plans. Not a set with a user this cycle did not
        read (in error, suspended, outside its limit): what it would plan for them is
        not known."""
        read = self._read(plan)
        for held in self.held.with_status(HeldStatus.HELD):
            if all(read(user) for user, _ in held.deletions):
                self.held.mark([held], HeldStatus.SUPERSEDED)
                log.info("deletions_held_not_planned", held_id=held.id)

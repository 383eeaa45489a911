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

import structlog

from syncd.core.desired import DesiredState
from syncd.core.held import GuardSplit, deletion_key, per_user, split_deletions, unread
from syncd.core.plan import DeleteEmail, Plan
from syncd.core.vocabulary import HeldStatus
from syncd.engine.reconcile import check_deletion_guard
from syncd.state.held_changes import HeldChanges, HeldSet, Rejections
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
    one of a user not read stands, and leaves the cycle `held` all the same.
    """

    def __init__(
        self, held: HeldChanges, limit: int, revision: str | None, *, hold: bool = True
    ) -> None:
        self.held, self.limit, self.revision = held, limit, revision
        #: Whether deletions past the limit are held (the daemon), or refuse the cycle
        #: whole with a GuardError, as `apply` does (`run --once`).
        self.hold = hold
        self.last: GuardSplit | None = None
        self.rejections = Rejections()
        #: The rejected deletions of users this cycle did not read: not in its plan.
        self.rejected_unread: tuple[DeleteEmail, ...] = ()
        # Spent by conclude(), also when the cycle was not split (observing).
        self._approved = held.with_status(HeldStatus.APPROVED)

    def split(self, plan: Plan) -> GuardSplit:
        decided = self.held.decisions()
        self._approved = list(decided.approved_sets)
        split = split_deletions(plan, self.limit, decided.approved, decided.rejected)
        if split.held and not self.hold:
            check_deletion_guard(dataclasses.replace(plan, changes=split.held), self.limit, "run")
        self.rejections = self.held.rejections(plan, decided.rejected)
        planned = set(split.rejected)
        self.rejected_unread = tuple(a for a in self.rejections.deletions if a not in planned)
        self.last = dataclasses.replace(split, rejected=self.rejections.deletions)
        return self.last

    def conclude(self, plan: Plan) -> list[str]:
        """Record the held set and the approved ones used; what the cycle that made
        `plan` says of them.

        An approved set is given to the one cycle after it that plans, even one with
        nothing to do: kept, it would let the same deletion of a later revision past
        the guard unasked. A set it sent deletions of is `applied` (what was sent is
        audited; one that failed is not carried over); one it sent none of (no longer
        planned, or its users not read) is `superseded`, asked about again if planned.
        """
        split, said = self.last or GuardSplit(plan), list[str]()
        sent = {deletion_key(a) for a in split.now.changes if isinstance(a, DeleteEmail)}
        for approved in self._approved:
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
            said.append(
                f"{counted(len(split.rejected), 'deletion')} rejected left out "
                f"({self.revision}): at any revision while the desired state asks for them; "
                "planned after it stopped, asked about again; "
                + " or ".join(f"syncd approve {held_id}" for held_id in self.rejections.sets)
                + " lets them through"
            )
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

    def _lapse_rejected(self, plan: Plan) -> None:
        """End the rejections of deletions this cycle's plan no longer makes, of users
        it read: the desired state stopped asking, so planned again later they are a
        new question, not still rejected."""
        planned = {deletion_key(a) for a in plan.changes if isinstance(a, DeleteEmail)}
        for closed in self.held.lapse(planned, unread(plan)):
            log.info("deletions_rejected_not_planned", held_id=closed.id)

    def _close_unheld(self, plan: Plan) -> None:
        """Close the open sets a cycle that holds nothing no longer asks about: the
        desired state keeps the addresses (the commit was fixed) or the limit allows
        the deletions. Left open, a set would keep the guard blocked until someone
        decided on deletions nobody plans. Not a set with a user this cycle did not
        read (in error, suspended): what it would plan for them is not known."""
        not_read = unread(plan)
        for held in self.held.with_status(HeldStatus.HELD):
            if not not_read & {user for user, _ in held.deletions}:
                self.held.mark([held], HeldStatus.SUPERSEDED)
                log.info("deletions_held_not_planned", held_id=held.id)

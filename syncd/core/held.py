"""Held deletions: what a daemon's cycle applies now when its deletions exceed the limit.

`apply` is all-or-nothing (the guard refuses the whole plan, exit 3). A daemon
cannot ask, so it applies the rest of the plan and holds the deletions as one
set for `syncd approve` or `syncd reject` (design.md section 4.1). This module
is the pure decision; the sets themselves live in syncd.state.held_changes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from syncd.core.fields import email_key
from syncd.core.plan import DeleteEmail, Plan
from syncd.visible import counted

#: A deletion as the sets name it: the user and the address as compared.
DeletionKey = tuple[str, str]


def deletion_key(action: DeleteEmail) -> DeletionKey:
    return action.user, email_key(action.email)


@dataclass(frozen=True, slots=True)
class GuardSplit:
    """What a cycle sends now, and what it holds or leaves out."""

    #: The plan to apply: every change but the deletions held or rejected.
    now: Plan
    #: The deletions over the limit, held for a decision (empty: none held).
    held: tuple[DeleteEmail, ...] = ()
    #: The deletions rejected and still planned, or of a user not read (whose rejection
    #: stands: syncd.state.held_changes): neither sent nor asked about again.
    rejected: tuple[DeleteEmail, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejections:
    """The rejected deletions a run leaves out, and the sets that rejected them."""

    #: The plan's deletions whose last decision is a rejection, then those of the users
    #: it did not read (not planned, but asked for as far as is known: they stand too).
    deletions: tuple[DeleteEmail, ...] = ()
    sets: tuple[str, ...] = ()

    @property
    def approvals(self) -> list[str]:
        """The commands that let them through."""
        return [f"syncd approve {held_id}" for held_id in self.sets]

    def note(self) -> str:
        """What a run says of them: how many, which sets, and how to let them through."""
        if not self.deletions:
            return ""
        return (
            f"left out: {counted(len(self.deletions), 'deletion')} rejected (set "
            f"{', '.join(self.sets)}), while the desired state asks for them; "
            f"{' or '.join(self.approvals)} lets them through"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "deletions": [action.to_json() for action in self.deletions],
            "sets": list(self.sets),
            "approve": self.approvals,
        }


def split_deletions(
    plan: Plan,
    limit: int,
    approved: Iterable[DeletionKey] = (),
    rejected: Iterable[DeletionKey] = (),
) -> GuardSplit:
    """The plan a daemon's cycle applies: deletions of an approved set go through, those
    rejected (at any revision, until the rejection lapses) are dropped, and the others
    count against `limit`; past it they are all held (never some of them: which ones
    would be arbitrary)."""
    deletions = (action for action in plan.changes if isinstance(action, DeleteEmail))
    held, no = guarded(deletions, limit, approved, rejected)
    left_out = {*held, *no}
    if not left_out:
        return GuardSplit(plan)
    # replace(), not a new Plan: whatever else the plan says is kept as it is.
    now = dataclasses.replace(
        plan, changes=tuple(action for action in plan.changes if action not in left_out)
    )
    return GuardSplit(now, held, no)


def guarded(
    deletions: Iterable[DeleteEmail],
    limit: int,
    approved: Iterable[DeletionKey],
    rejected: Iterable[DeletionKey],
) -> tuple[tuple[DeleteEmail, ...], tuple[DeleteEmail, ...]]:
    """Of `deletions`, those held (neither approved nor rejected, and more than `limit`
    of them) and those rejected, each in their order."""
    approved_keys, rejected_keys = set(approved), set(rejected)
    no: list[DeleteEmail] = []
    counting: list[DeleteEmail] = []
    for action in deletions:
        if (key := deletion_key(action)) not in approved_keys:
            (no if key in rejected_keys else counting).append(action)
    return (tuple(counting) if len(counting) > limit else ()), tuple(no)


def unread(plan: Plan) -> set[str]:
    """The users a run did not read (in error, waiting for their retry, suspended)."""
    return {problem.user for problem in plan.errors} | {user for user, _ in plan.suspended}


def per_user(deletions: Iterable[DeletionKey]) -> dict[str, int]:
    """How many deletions each user has in a set, by user."""
    return dict(sorted(Counter(user for user, _ in deletions).items()))

"""The plan: desired + live → the changes that converge them, as frozen values.

`build_plan` is a pure function (no I/O, no clock). Its result is a tuple of
actions in a stable order (by user, then profile update, additions and
deletions, each sorted) plus warnings and errors, so that the same input always
gives the same plan whatever the order of users or addresses in the files.
Dry run and apply read the same values.

Rules (design.md section 2): only stated things are managed; `gravatar_email`
is compared by the digest inside `gravatar_url`; addresses compare
case-insensitively; the primary address is never deleted. A user's
`emails_mode` (section 2.1) says which unlisted addresses may be deleted:
all (`exact`), none (`additive`), or those syncd owns (`owned`), which the
caller passes in (the ownership ledger, syncd.state.ownership); an unlisted
address it does not own is its owner's, shown as not managed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from syncd.core.desired import DesiredState, DesiredUser, EmailsMode
from syncd.core.fields import PROFILE_FIELDS, email_key, gravatar_matches
from syncd.core.live import LiveAccount
from syncd.core.not_kept import EMAILS, NotKept
from syncd.core.problem import Problem
from syncd.core.suspension import NONE, Suspension, Suspensions
from syncd.core.vocabulary import READ_ERRORS, ActionName, Code

PLAN_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    #: None when the current value cannot be read (gravatar_email is write-only).
    before: str | None
    after: str


@dataclass(frozen=True, slots=True)
class UpdateProfile:
    user: str
    changes: tuple[FieldChange, ...]
    action = ActionName.UPDATE_PROFILE

    def body(self) -> dict[str, str]:
        """The PATCH body."""
        return {change.field: change.after for change in self.changes}

    def describe(self) -> str:
        return f"{self.user}: update {', '.join(c.field for c in self.changes)}"

    def to_json(self) -> dict[str, Any]:
        fields = {c.field: {"before": c.before, "after": c.after} for c in self.changes}
        return {"user": self.user, "action": self.action, "fields": fields}


@dataclass(frozen=True, slots=True)
class AddEmail:
    user: str
    email: str
    action = ActionName.ADD_EMAIL

    def describe(self) -> str:
        return f"{self.user}: add {self.email}"

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "action": self.action, "email": self.email}


@dataclass(frozen=True, slots=True)
class DeleteEmail:
    user: str
    email: str
    action = ActionName.DELETE_EMAIL

    def describe(self) -> str:
        return f"{self.user}: delete {self.email}"

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "action": self.action, "email": self.email}


Action = UpdateProfile | AddEmail | DeleteEmail


@dataclass(frozen=True, slots=True)
class UserEmail:
    """An address of a user's account, for the ownership ledger and the plan's notes."""

    user: str
    email: str

    def describe(self) -> str:
        # Not "never listed": a state without the daemon's ledger (Code.OWNERSHIP_UNKNOWN)
        # cannot know that; what it knows is that it holds no claim.
        return f"{self.user}: {self.email} is not managed (no claim of syncd's in this state)"

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "email": self.email}


@dataclass(frozen=True, slots=True)
class SharedFailure:
    """One failure that struck every user the run tried to read: reported once."""

    code: Code
    cause: str
    users: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"user": None, "code": self.code, "message": self.cause, "users": list(self.users)}


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Action, ...]
    warnings: tuple[Problem, ...] = ()
    errors: tuple[Problem, ...] = ()
    #: How many users the plan covers (read or not): the desired state's.
    users: int = 0
    #: Unlisted addresses of `owned` users that syncd does not own: never deleted.
    unmanaged: tuple[UserEmail, ...] = ()
    #: Listed addresses of `owned` users found on the account, not yet in the
    #: ledger: syncd owns them from now on (the applier records them).
    claims: tuple[UserEmail, ...] = ()
    #: Addresses syncd owns that the account no longer has: owned no more, so that
    #: the owner adding one again makes it theirs (the applier releases them).
    releases: tuple[UserEmail, ...] = ()
    #: Users left alone (not read, not written), and those whose suspension ended,
    #: each with its suspension, by user.
    suspended: tuple[tuple[str, Suspension], ...] = ()
    suspension_ended: tuple[tuple[str, Suspension], ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.changes

    @property
    def all_suspended(self) -> bool:
        """Whether every user is suspended: the plan read nobody."""
        return bool(self.suspended) and len(self.suspended) >= self.users

    @property
    def unreadable(self) -> list[str]:
        """The users whose live state could not be read."""
        return sorted({e.user for e in self.errors if e.code in READ_ERRORS})

    @property
    def complete(self) -> bool:
        """Whether every user was read and compared: only then may it say "match"."""
        return not self.errors

    @property
    def ownership_unknown(self) -> bool:
        """Whether deletions of addresses syncd owns cannot be shown (Code.OWNERSHIP_UNKNOWN)."""
        return any(warning.code is Code.OWNERSHIP_UNKNOWN for warning in self.warnings)

    def users_with_changes(self) -> list[str]:
        return sorted({action.user for action in self.changes})

    def count(self, action_type: type[Action]) -> int:
        return sum(isinstance(action, action_type) for action in self.changes)

    def shared_failures(self) -> tuple[SharedFailure, ...]:
        """The errors that every read met alike, one entry per cause."""
        causes: dict[tuple[Code, str], list[str]] = {}
        for error in self.errors:
            if error.shared:
                causes.setdefault((error.code, error.cause), []).append(error.user)
        return tuple(
            SharedFailure(code, cause, tuple(users)) for (code, cause), users in causes.items()
        )

    def own_errors(self) -> tuple[Problem, ...]:
        """The errors that are this user's own, each reported for its user."""
        return tuple(error for error in self.errors if not error.shared)

    def summary(self) -> dict[str, int]:
        return {
            "users": self.users,
            "users_changed": len(self.users_with_changes()),
            "users_unreadable": len(self.unreadable),
            "users_suspended": len(self.suspended),
            ActionName.UPDATE_PROFILE: self.count(UpdateProfile),
            ActionName.ADD_EMAIL: self.count(AddEmail),
            ActionName.DELETE_EMAIL: self.count(DeleteEmail),
            "warnings": len(self.warnings),
            "errors": len(self.errors),
        }

    def to_json(self, source: Mapping[str, Any]) -> dict[str, Any]:
        """The `plan --output json` contract of design.md section 4.

        A shared failure is one entry of `errors`, with `"user": null` and the
        users it struck in `users`; every other error names its user.
        """
        document: dict[str, Any] = {
            "format_version": PLAN_FORMAT_VERSION,
            "source": dict(source),
            "changes": [action.to_json() for action in self.changes],
            "warnings": [w.to_json() for w in self.warnings],
            "errors": [shared.to_json() for shared in self.shared_failures()]
            + [e.to_json() for e in self.own_errors()],
            "suspended": [s.to_json(user) for user, s in self.suspended],
            "suspension_ended": [s.to_json(user) for user, s in self.suspension_ended],
            "summary": self.summary(),
        }
        if self.unmanaged:  # only where `emails_mode: owned` leaves an address alone
            document["unmanaged_emails"] = [note.to_json() for note in self.unmanaged]
        return document


def _profile_changes(
    desired: DesiredUser, live: LiveAccount, not_kept: Sequence[NotKept]
) -> tuple[tuple[FieldChange, ...], list[NotKept]]:
    """The fields to change, and the ones that would change to no effect (not kept)."""
    if live.profile is None:
        return (), []
    changes = []
    futile = []
    for field in PROFILE_FIELDS:
        if field not in desired.profile:
            continue
        wanted = desired.profile[field]
        if field == "gravatar_email":
            differs = not gravatar_matches(wanted, live.profile.gravatar_url)
            before = None
        else:
            before = live.profile.value(field)
            differs = before != wanted
        if not differs:
            continue
        record = next(
            (n for n in not_kept if n.matches_profile(field, wanted, live.profile)), None
        )
        if record is not None:
            futile.append(record)
        else:
            changes.append(FieldChange(field, before, wanted))
    return tuple(changes), futile


@dataclass(slots=True)
class _Found:
    """What the users come to, user after user, but their errors."""

    actions: list[Action]
    warnings: list[Problem]
    unmanaged: list[UserEmail]
    claims: list[UserEmail]
    releases: list[UserEmail]


def _email_changes(
    desired: DesiredUser,
    live: LiveAccount,
    not_kept: Sequence[NotKept],
    owned: frozenset[str],
    found: _Found,
) -> list[NotKept]:
    """Adds to `found` what the user's addresses come to; returns the additions the server
    is known not to keep. `owned`: the email_keys of the addresses syncd owns on this account.
    """
    if desired.emails is None or live.emails is None:
        return []
    mode = desired.mode
    if owned:  # in any mode: a user `exact` for a while may be `owned` again later
        gone = owned - {email_key(e.email) for e in live.emails}
        found.releases.extend(UserEmail(desired.username, key) for key in sorted(gone))
    if mode is not EmailsMode.OWNED and desired.emails == tuple(e.email for e in live.emails):
        return []  # the usual case, and exactly equal is equal by email_key too
    wanted = {email_key(address): address for address in desired.emails}
    keyed = [(email_key(e.email), e) for e in live.emails]
    present = dict(keyed)
    missing, extra = wanted.keys() - present.keys(), present.keys() - wanted.keys()
    if mode is EmailsMode.OWNED:
        listed = sorted(wanted.keys() & present.keys() - owned)
        found.claims.extend(UserEmail(desired.username, present[key].email) for key in listed)
    # An address the server keeps in another form: adding it again would add the
    # same again, and deleting the other form would undo what was just added.
    futile = [
        record
        for record in not_kept
        if record.field == EMAILS
        and email_key(record.sent) in missing
        and email_key(record.kept) in extra
    ]
    missing -= {email_key(record.sent) for record in futile}
    extra -= {email_key(record.kept) for record in futile}
    found.actions.extend(AddEmail(desired.username, wanted[key]) for key in sorted(missing))
    # Every live spelling of an address not wanted: a server that holds one address
    # twice keeps the other after one DELETE (sorted: a stable sort keeps the list's order).
    for key, email in sorted((pair for pair in keyed if pair[0] in extra), key=itemgetter(0)):
        if mode is EmailsMode.ADDITIVE:
            continue  # nothing is ever deleted
        if mode is EmailsMode.OWNED and key not in owned:
            found.unmanaged.append(UserEmail(desired.username, email.email))
        elif live.may_be_primary(email.email):
            found.warnings.append(
                Problem(
                    desired.username,
                    Code.PRIMARY_EMAIL_NOT_DESIRED,
                    f"{email.email} {_primary_how(email.primary, live)} and is not in the "
                    "desired list; the API cannot delete a primary address, so it is left "
                    "in place",
                )
            )
        else:
            found.actions.append(DeleteEmail(desired.username, email.email))
    return futile


def _primary_how(marked: bool, live: LiveAccount) -> str:
    if marked:
        return "is the primary address"
    if live.profile is not None:
        return "is the primary address (the profile's email; the address list marks none)"
    return "may be the primary address (the address list marks none; the profile was not read)"


def build_plan(
    desired: DesiredState,
    live: Mapping[str, LiveAccount | Problem],
    not_kept: Mapping[str, Sequence[NotKept]] | None = None,
    owned: Mapping[str, frozenset[str]] | None = None,
    suspensions: Suspensions = NONE,
) -> Plan:
    """Everything that must change for the live accounts to match the desired state.

    A desired user missing from `live` is an error: the caller fetches every
    user it plans for. A user that could not be read is an error too, never a
    warning: a plan that did not read a user cannot say it matches. `not_kept`
    holds, by user, the writes the server accepted and did not keep; `owned`,
    by user, the email_keys of the addresses syncd owns (none when absent: a
    lost ledger deletes nothing). A user in `suspensions` (syncd.core.suspension,
    worked out for a `now` by the caller) is listed and neither read nor
    planned: as if it were absent, not an error.
    """
    not_kept = not_kept or {}
    owned = owned or {}
    found = _Found([], [], [], [], [])
    errors: list[Problem] = []
    for user in sorted(desired.users, key=lambda u: u.username):
        if user.username in suspensions:
            continue
        state = live.get(user.username)
        if state is None:
            errors.append(Problem(user.username, Code.FETCH_FAILED, "live state was not read"))
        elif isinstance(state, Problem):
            errors.append(state)
        else:
            records = not_kept.get(user.username, ())
            profile_changes, futile = _profile_changes(user, state, records)
            if profile_changes:
                found.actions.append(UpdateProfile(user.username, profile_changes))
            owns = owned.get(user.username, frozenset())
            futile += _email_changes(user, state, records, owns, found)
            # A write the server is known not to keep (while both the desired and
            # the live value are the recorded ones) is an error, not an action.
            errors.extend(
                Problem(user.username, Code.DOES_NOT_CONVERGE, record.message())
                for record in futile
            )
    return Plan(
        tuple(found.actions),
        tuple(found.warnings),
        tuple(errors),
        len(desired.users),
        tuple(found.unmanaged),
        tuple(found.claims),
        tuple(found.releases),
        tuple(sorted(suspensions.active.items())),
        tuple(sorted(suspensions.ended.items())),
    )

"""What the status pages show: one frozen value per page, each section from one function.

The pages (syncd.service.ui renders them) read the state as `syncd status` and
`syncd audit` do, read-only, through syncd.state and syncd.service.status: a
standby shows the state that the instances share. Lists are cut to a page
(the first IN_ERROR_SHOWN users in error, with their count; the last
AUDIT_SHOWN events), so that a page costs the same for 10 users as for 100,000.

The operator's sections (held deletions with the command that approves them,
each user's changes pending after the daemon's last cycle) come from the
state modules that keep them, one function each; the suspensions are those
of `syncd status`.
"""

from __future__ import annotations

import itertools
import math
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.core.desired import DesiredState, DesiredUser
from syncd.core.fields import PROFILE_FIELDS
from syncd.core.live import LiveAccount
from syncd.core.problem import Problem
from syncd.core.vocabulary import ActionName, HeldStatus
from syncd.errors import StateError
from syncd.service.status import (
    api_shown,
    desired_suspensions,
    gather_status,
    suspension_shown,
)
from syncd.settings import Settings
from syncd.state.audit_queries import EventFilter, query_events
from syncd.state.backend import Database, StateStore
from syncd.state.cache import Cached, LiveCache
from syncd.state.daemon_state import read_daemon_state
from syncd.state.held_changes import HeldChanges
from syncd.state.pending import pending_for
from syncd.state.suspensions import SuspensionTable
from syncd.state.user_failures import UserFailures
from syncd.visible import quoted

#: Users in error listed on `/`; the page says how many there are in all.
IN_ERROR_SHOWN = 100
#: Runs listed on `/`.
RUNS_SHOWN = 10
#: Audit events listed on `/audit` by default, and at most.
AUDIT_SHOWN = 100
AUDIT_MOST = 1000
#: Audit events listed on a user's page.
USER_AUDIT_SHOWN = 20
#: Users with pending changes listed on `/`.
PENDING_SHOWN = 100


@dataclass(frozen=True, slots=True)
class PendingChange:
    """One change a cycle planned and did not make, as the plan describes it."""

    user: str
    #: The plan's words, e.g. "update full_name: 'Jane' -> 'Jane Doe'".
    text: str


@dataclass(frozen=True, slots=True)
class HeldDeletion:
    """Deletions a tripped guard holds until someone approves or rejects them."""

    id: str
    user: str
    email: str
    since: str | None

    @property
    def approve_command(self) -> str:
        return f"syncd approve {self.id}"


@dataclass(frozen=True, slots=True)
class HomePage:
    #: Who serves the page: this host, why it stands by (the lock's holder, or an
    #: unreachable database; None: it is the active instance), and the instance that
    #: holds the lock, as the state names it (None: nobody).
    host: str
    standby_reason: str | None
    active: str | None
    #: syncd.service.status's report, as `syncd status --output json` has it.
    status: Mapping[str, Any]
    in_error_count: int
    pending: tuple[PendingChange, ...]
    held: tuple[HeldDeletion, ...]


@dataclass(frozen=True, slots=True)
class FieldRow:
    """One field of a user, as the desired state says it and as the API last answered."""

    name: str
    #: None: the desired state does not manage it.
    desired: str | None
    #: None: not read (or not returned).
    live: str | None


@dataclass(frozen=True, slots=True)
class UserPage:
    username: str
    #: Whether the desired state (as this instance last read it) names the user;
    #: None when this instance has read none (a standby, a daemon just started).
    desired_known: bool | None
    fields: tuple[FieldRow, ...]
    profile_read_at: float | None
    emails_read_at: float | None
    pending: tuple[PendingChange, ...]
    events: tuple[Mapping[str, Any], ...]
    error: Problem | None
    #: The user's suspension (`syncd suspend`, or `suspend:`), as `syncd status` shows it.
    suspension: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    where: EventFilter
    limit: int
    events: tuple[Mapping[str, Any], ...]


def home_page(store: StateStore, settings: Settings, standby: tuple[bool, str] | None) -> HomePage:
    """The home page; `standby` as syncd.service.metrics keeps it (None: active)."""
    status = gather_status(store, settings, RUNS_SHOWN, in_error=IN_ERROR_SHOWN)
    daemon = status["daemon"]
    db = store.history
    api = api_shown(read_daemon_state(db), settings)
    count = UserFailures(db, api).count()
    return HomePage(
        socket.gethostname(),
        None if standby is None else standby[1],
        daemon["active"] or (f"pid {daemon['pid']}" if daemon["pid"] else None),
        status,
        count,
        pending_changes(db, limit=PENDING_SHOWN),
        held_deletions(db, api),
    )


def user_page(
    store: StateStore, desired: DesiredState | None, username: str, settings: Settings
) -> UserPage:
    """The user's page, with what is kept of it for the API the daemon runs against."""
    db = store.history
    daemon = read_daemon_state(db)
    api = api_shown(daemon, settings)
    users = () if desired is None else desired.users
    wanted = next((user for user in users if user.username == username), None)
    cached = _cached(store, username, api)
    account = None if cached is None else cached.account
    events = query_events(db, EventFilter(users=(username,)), limit=USER_AUDIT_SHOWN)
    error = UserFailures(db, api).of(username)
    return UserPage(
        username,
        None if desired is None else wanted is not None,
        _fields(wanted, account),
        None if cached is None else cached.profile_read_at,
        None if cached is None else cached.emails_read_at,
        pending_changes(db, user=username),
        tuple(reversed(events)),  # newest first
        error,
        suspension_shown(SuspensionTable(db).all(), username, desired_suspensions(daemon)),
    )


def audit_page(store: StateStore, where: EventFilter, limit: int = AUDIT_SHOWN) -> AuditPage:
    events = query_events(store.history, where, limit=min(limit, AUDIT_MOST))
    return AuditPage(where, limit, tuple(reversed(events)))


# -- what the operator decides, and what the last cycle left --------------------


def pending_changes(
    db: Database, *, user: str | None = None, limit: int = PENDING_SHOWN
) -> tuple[PendingChange, ...]:
    """The changes the daemon's last cycle planned and did not make (of `user` only,
    when given), as syncd.state.pending keeps them: the first `limit`."""
    stored = pending_for(db, None if user is None else (user,))
    changes = (
        PendingChange(name, _described(change))
        for name, entry in sorted(stored.items())
        for change in entry["changes"]
    )
    return tuple(itertools.islice(changes, limit))


def held_deletions(db: Database, api: str) -> tuple[HeldDeletion, ...]:
    """Deletions held by a tripped guard, waiting for `syncd approve` (or approved and
    not yet applied)."""
    held = HeldChanges(db, api).with_status(HeldStatus.HELD, HeldStatus.APPROVED)
    return tuple(
        HeldDeletion(held_set.id, user, email, held_set.held_at)
        for held_set in held
        for user, email in held_set.deletions
    )


def _described(change: Mapping[str, Any]) -> str:
    """A stored change in the plan's words."""
    if change["action"] == ActionName.UPDATE_PROFILE:
        return "; ".join(
            f"{name}: {quoted(values['before'])} → {quoted(values['after'])}"
            for name, values in change["fields"].items()
        )
    verb = "add" if change["action"] == ActionName.ADD_EMAIL else "delete"
    return f"{verb} {change['email']}"


# -- a user's values ------------------------------------------------------------


def _cached(store: StateStore, username: str, api: str) -> Cached | None:
    """What the cache holds of the user, however old (the page says when it was read)."""
    try:
        with store.session() as session:
            found = LiveCache(session.cache, api).read_fresh([username], time.time(), math.inf)
    except StateError:  # no cache yet (a first cycle), or one being replaced: not read
        return None
    return found.get(username)


def _fields(wanted: DesiredUser | None, account: LiveAccount | None) -> tuple[FieldRow, ...]:
    profile = None if account is None else account.profile
    rows = []
    for name in PROFILE_FIELDS:
        desired = None if wanted is None else wanted.profile.get(name)
        # gravatar_email is write-only: the API returns its URL, shown beside it.
        live_name = "gravatar_url" if name == "gravatar_email" else name
        live = None if profile is None else profile.value(live_name)
        rows.append(FieldRow(name, desired, live))
    if profile is not None:
        rows.append(FieldRow("email (primary)", None, profile.email))
    emails = None if account is None else account.emails
    rows.append(
        FieldRow(
            "emails",
            _lines(None if wanted is None else wanted.emails),
            _lines(None if emails is None else [e.email for e in emails]),
        )
    )
    return tuple(rows)


def _lines(values: Sequence[str] | None) -> str | None:
    # Not a newline: a page shows a control character as its escape, as syncd prints it.
    return None if values is None else ", ".join(values)

"""The desired state: what operators say each account must look like.

These are the values the planner reads. They are built by `syncd.desired.loading` from
YAML files, after every rule of design.md section 2 has been checked, so a
DesiredState is always valid. The profile holds only the fields that are
managed (absent = unmanaged; `""` or null = must be empty); `emails` is None
when the addresses are not managed, otherwise the set that `emails_mode` reads.

A user as written (design.md section 2.1) names its `groups` and what it
`ignore`s; syncd.desired.inheritance resolves it against `defaults` and the
groups, and the resolved user keeps, in `inherited`, where each value it did
not write itself came from. Those Origins are one object per key of a group or
of the defaults, shared by every user that inherits it, and the tuple of them
is shared by users alike: 100,000 users cost a pointer each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from syncd.core.suspension import Suspension
from syncd.errors import UsageError


@dataclass(frozen=True, order=True, slots=True)
class Location:
    """Where something was written: for messages that point back into the files."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class EmailsMode(StrEnum):
    """How `emails` is read: the exact set, only additions, or deletions of syncd's own."""

    EXACT = "exact"
    ADDITIVE = "additive"
    OWNED = "owned"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an inherited value was written: `key` of `layer` ("defaults" or "group NAME")."""

    key: str
    layer: str
    location: Location

    def __str__(self) -> str:
        return f"{self.layer} ({self.location})"


@dataclass(frozen=True, slots=True)
class DesiredUser:
    username: str
    profile: Mapping[str, str] = field(default_factory=dict)
    emails: tuple[str, ...] | None = None
    location: Location | None = field(default=None, compare=False)
    #: None: not stated (exact); resolved users have the effective mode when one is set.
    emails_mode: EmailsMode | None = None
    groups: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    #: Where the values the user did not write itself came from (shared, see above).
    inherited: tuple[Origin, ...] = field(default=(), compare=False)

    @property
    def mode(self) -> EmailsMode:
        return self.emails_mode or EmailsMode.EXACT

    def origin(self, key: str) -> Origin | None:
        """Where the value of `key` came from; None when the user wrote it itself."""
        return next((origin for origin in self.inherited if origin.key == key), None)

    #: `suspend:` in the file: not read, not written while it holds.
    suspend: Suspension | None = None


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file the desired state was read from, for the audit trail."""

    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Scope:
    """The users a run is limited to: `--user`, `--group` (either one), less `--exclude`."""

    users: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.users or self.exclude or self.groups)

    def to_json(self) -> dict[str, list[str]]:
        return {
            "users": list(self.users),
            "exclude": list(self.exclude),
            "groups": list(self.groups),
        }

    def unknown(self, state: DesiredState) -> list[str]:
        """What the scope names that the state does not have, said for a message."""
        names = set(state.usernames())
        unknown = [f"user {name!r}" for name in (*self.users, *self.exclude) if name not in names]
        return unknown + [f"group {name!r}" for name in self.groups if name not in state.groups]

    def admits(self, user: DesiredUser) -> bool:
        if user.username in self.exclude:
            return False
        if not (self.users or self.groups):
            return True
        return user.username in self.users or any(g in self.groups for g in user.groups)


@dataclass(frozen=True, slots=True)
class DesiredState:
    users: tuple[DesiredUser, ...]
    sources: tuple[SourceFile, ...] = ()
    revision: str | None = None
    #: The groups declared, whether or not a user is in them.
    groups: tuple[str, ...] = ()
    #: The users this state was limited to, if it was (`select`).
    scope: Scope | None = None

    def usernames(self) -> list[str]:
        return [user.username for user in self.users]

    def select(self, scope: Scope) -> DesiredState:
        """The same state limited to the users in `scope`, each name of which it must have."""
        if not scope:
            return self
        if unknown := scope.unknown(self):
            raise UsageError(f"not in the desired state: {', '.join(unknown)}")
        kept = tuple(user for user in self.users if scope.admits(user))
        return DesiredState(kept, self.sources, self.revision, self.groups, scope)

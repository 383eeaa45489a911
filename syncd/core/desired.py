"""The desired state: what operators say each account must look like.

These are the values the planner reads. They are built by `syncd.desired.loading` from
YAML files, after every rule of design.md section 2 has been checked, so a
DesiredState is always valid. The profile holds only the fields that the file
states (absent = unmanaged; `""` or null = must be empty); `emails` is None
when the file does not manage the addresses, otherwise the exact set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from syncd.core.suspension import Suspension


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was written: for messages that point back into the files."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class DesiredUser:
    username: str
    profile: Mapping[str, str] = field(default_factory=dict)
    emails: tuple[str, ...] | None = None
    location: Location | None = field(default=None, compare=False)
    #: `suspend:` in the file: not read, not written while it holds.
    suspend: Suspension | None = None


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file the desired state was read from, for the audit trail."""

    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class DesiredState:
    users: tuple[DesiredUser, ...]
    sources: tuple[SourceFile, ...] = ()
    revision: str | None = None

    def usernames(self) -> list[str]:
        return [user.username for user in self.users]

    def only(self, usernames: set[str]) -> DesiredState:
        """The same state restricted to some users (`--user`)."""
        kept = tuple(user for user in self.users if user.username in usernames)
        return DesiredState(kept, self.sources, self.revision)

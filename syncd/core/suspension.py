"""Suspensions: users that syncd neither reads nor writes for a while, and why.

A suspension comes from the desired state (`suspend: {reason, until}`) or from
`syncd suspend` (kept in the state, syncd.state.suspensions); to the plan they
are the same thing. `until` is Unix time (None: until resumed), so that
whether one still holds is a comparison with the `now` the caller passes in:
the core reads no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd.core.vocabulary import SuspensionSource

#: The user name a suspension of every user (`syncd suspend --all`) is kept under.
EVERYONE = "*"


@dataclass(frozen=True, slots=True)
class Suspension:
    reason: str
    #: When it ends, Unix time; None: until `syncd resume` (or the key is removed).
    until: float | None = None
    #: Who said it: "os_user@host" for the CLI, the file:line:col of the key for YAML.
    by: str | None = None
    source: SuspensionSource = SuspensionSource.YAML

    def holds(self, now: float) -> bool:
        return self.until is None or now < self.until

    def until_text(self) -> str | None:
        if self.until is None:
            return None
        return datetime.fromtimestamp(self.until, UTC).isoformat(timespec="seconds")

    def to_json(self, user: str) -> dict[str, Any]:
        return {
            "user": user,
            "reason": self.reason,
            "until": self.until_text(),
            "by": self.by,
            "source": str(self.source),
        }

    def describe(self) -> str:
        end = self.until_text()
        return f"{self.reason} (until {end or 'resumed'}, by {self.by or self.source})"


@dataclass(frozen=True, slots=True)
class Suspensions:
    """Which users a plan leaves alone now, and whose suspension has ended."""

    active: Mapping[str, Suspension]
    ended: Mapping[str, Suspension]

    def __contains__(self, user: object) -> bool:
        return user in self.active


NONE = Suspensions({}, {})


def suspensions_at(
    now: float,
    usernames: Iterable[str],
    from_yaml: Mapping[str, Suspension],
    from_cli: Mapping[str, Suspension],
) -> Suspensions:
    """Each user's suspension at `now`: the CLI's (its own, else `--all`'s), else the YAML's.

    A user is suspended while either holds; the operator's word is shown first
    because it is the newer decision. One that has ended is listed as ended
    while nothing else holds the user.
    """
    if not from_yaml and not from_cli:
        return NONE
    everyone = from_cli.get(EVERYONE)
    active: dict[str, Suspension] = {}
    ended: dict[str, Suspension] = {}
    for user in usernames:
        candidates = [
            s for s in (from_cli.get(user), everyone, from_yaml.get(user)) if s is not None
        ]
        holding = next((s for s in candidates if s.holds(now)), None)
        if holding is not None:
            active[user] = holding
        elif candidates:
            ended[user] = candidates[0]
    return Suspensions(active, ended)

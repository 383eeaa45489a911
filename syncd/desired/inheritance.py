"""Defaults and groups: what users inherit, and the problems of inheriting it.

A user as written holds its own keys, the names of its groups and the keys it
ignores. Resolving it (design.md section 2.1) takes each key it did not write
from its groups, then from `defaults`; two of its groups that set a key to
different values are a problem naming both places, never a silent order; and
an ignored key is managed by nobody. `defaults` and each group are declared
once across all the files (Layers finds them).

Users alike resolve alike: what a user inherits depends only on its groups,
its ignored keys and which keys it wrote, so that is worked out once for each
such combination and shared, down to the tuple of Origins.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from syncd.core.desired import DesiredUser, EmailsMode, Location, Origin
from syncd.desired.duplicates import each_place
from syncd.errors import Problem

EMAILS_MODE: Final = "emails_mode"
#: Where a user (its name, its place) wrote the n-th name of its `groups`, if that can be found.
Locate = Callable[[str, Location | None, int], Location | None]
#: The key of `defaults` among the layers: no group name, so a group may be called defaults.
DEFAULTS: Final = "(defaults)"


@dataclass(frozen=True, slots=True)
class Layer:
    """`defaults` or one group: the keys it sets, each with where it was written."""

    name: str  # "defaults", or "group NAME"
    values: Mapping[str, str]
    origins: Mapping[str, Origin]

    @classmethod
    def of(cls, name: str, values: Mapping[str, str], places: Mapping[str, Location]) -> Layer:
        origins = {key: Origin(key, name, places[key]) for key in values}
        return cls(name, dict(values), origins)


@dataclass(frozen=True, slots=True)
class Naming:
    """A user of a file that is not valid, as far as its groups go: what it names, what it sets.

    Such a user is not resolved, but an unknown group it names, or two of its
    groups that disagree, are problems known at once, reported with the others.
    """

    username: str
    location: Location
    groups: tuple[str | None, ...]  # None: not a group name (said where it is written)
    own: frozenset[str]  # the keys it sets or ignores of those its groups may set


@dataclass(frozen=True, slots=True)
class _Inheritance:
    profile: Mapping[str, str]  # the profile keys inherited (a user's own come on top)
    mode: EmailsMode | None  # inherited, or None
    origins: tuple[Origin, ...]
    #: Said of each user that inherits this, with the index in its `groups` of the
    #: group the problem is about (None: the user's own place).
    problems: tuple[tuple[str, int | None], ...]


class Layers:
    """The defaults and groups of every file, and where each was declared.

    A group that is itself invalid (None for its layer) or declared twice is
    known, but what it sets is not: no conflict is found with it. While some
    file could not be read as far as its groups (`complete` is False), no
    group is said to be unknown.
    """

    def __init__(self) -> None:
        self.defaults: Layer | None = None
        self.groups: dict[str, Layer] = {}
        self.invalid: set[str] = set()
        self.declared: dict[str, list[Location]] = {}
        self.complete = True
        self._resolved: dict[tuple[object, ...], _Inheritance] = {}

    def add(self, key: str, layer: Layer | None, place: Location) -> None:
        """`key` is "defaults" or the group's name; a second declaration is a problem."""
        places = self.declared.setdefault(key, [])
        places.append(place)
        if key == DEFAULTS:
            self.defaults = layer if len(places) == 1 else self.defaults
        elif layer is None or len(places) > 1:
            self.groups.pop(key, None)
            self.invalid.add(key)
        else:
            self.groups[key] = layer

    def duplicates(self) -> Iterator[Problem]:
        for key, places in self.declared.items():
            if len(places) > 1:
                what = (
                    "'defaults' declared twice" if key == DEFAULTS else f"duplicate group {key!r}"
                )
                yield from each_place(what, places)

    def resolve(
        self, users: Iterable[DesiredUser], locate: Locate
    ) -> tuple[list[DesiredUser], list[Problem]]:
        """The users with what they inherit, and the problems of those who cannot.

        `locate` finds where a user wrote the n-th of its groups (an unknown
        group is reported there); if it cannot, at the user.
        """
        resolved: list[DesiredUser] = []
        problems: list[Problem] = []
        for user in users:
            if self.defaults is None and not user.groups and not user.ignore:
                resolved.append(user)  # written in full: nothing to do, nothing copied
                continue
            own = frozenset(user.profile) | ({EMAILS_MODE} if user.emails_mode else set())
            inheritance = self._inheritance(user.groups, user.ignore, own)
            if inheritance.problems:
                problems += self._said(user.username, user.location, inheritance, locate)
                continue
            resolved.append(_apply(user, inheritance))
        return resolved, problems

    def problems_of(self, namings: Iterable[Naming], locate: Locate) -> Iterator[Problem]:
        """The problems of the groups of users that are not valid (see Naming)."""
        for naming in namings:
            inheritance = self._inheritance(naming.groups, (), naming.own)
            yield from self._said(naming.username, naming.location, inheritance, locate)

    def _inheritance(
        self, groups: tuple[str | None, ...], ignore: tuple[str, ...], own: frozenset[str]
    ) -> _Inheritance:
        key = (groups, ignore, own)
        inheritance = self._resolved.get(key)
        if inheritance is None:
            inheritance = self._resolved[key] = self._inherit(groups, ignore, own)
        return inheritance

    @staticmethod
    def _said(
        username: str, location: Location | None, inheritance: _Inheritance, locate: Locate
    ) -> Iterator[Problem]:
        for message, index in inheritance.problems:
            place = location or Location("<desired state>", 1, 1)
            if index is not None:
                place = locate(username, location, index) or place
            text = f"user {username!r}: {message}"
            yield Problem(place.path, place.line, place.column, text)

    def _inherit(
        self, groups: tuple[str | None, ...], ignore: tuple[str, ...], own: frozenset[str]
    ) -> _Inheritance:
        taken: dict[str, Origin] = {}
        values: dict[str, str] = {}
        problems: list[tuple[str, int | None]] = []
        # A key the user ignores is taken from no layer: its groups cannot disagree on it.
        skipped = own.union(ignore)
        for index, name in enumerate(groups):
            layer = self.groups.get(name) if name is not None else None
            if layer is None:
                if name is not None and name not in self.invalid and self.complete:
                    known = [*self.groups, *self.invalid]
                    problems.append((_unknown_group(name, known), index))
                continue
            for key, value in layer.values.items():
                if key in skipped:
                    continue
                if key not in taken:
                    taken[key], values[key] = layer.origins[key], value
                elif values[key] != value:
                    first, second = taken[key], layer.origins[key]
                    message = (
                        f"{first.layer} ({first.location}) and {second.layer} "
                        f"({second.location}) set {key} to different values; "
                        "set it on the user, or in one of them"
                    )
                    problems.append((message, None))
        if self.defaults is not None:
            for key, value in self.defaults.values.items():
                if key not in skipped and key not in taken:
                    taken[key], values[key] = self.defaults.origins[key], value
        mode = values.pop(EMAILS_MODE, None)
        return _Inheritance(
            values,
            None if mode is None else EmailsMode(mode),
            tuple(taken.values()),
            tuple(problems),
        )


def _apply(user: DesiredUser, inheritance: _Inheritance) -> DesiredUser:
    # A key both set and ignored is refused by the format: the user's own keys
    # are all managed, and go on top.
    profile = {**inheritance.profile, **user.profile}
    emails = None if "emails" in user.ignore else user.emails
    # Built, not dataclasses.replace(): that took half the time of resolving 100,000 users.
    return DesiredUser(
        user.username,
        profile,
        emails,
        user.location,
        user.emails_mode or inheritance.mode,
        user.groups,
        user.ignore,
        inheritance.origins,
        suspend=user.suspend,
    )


def _unknown_group(name: str, groups: list[str]) -> str:
    close = difflib.get_close_matches(name, groups, n=1)
    if close:
        return f"unknown group {name!r} (did you mean {close[0]!r}?)"
    declared = ", ".join(sorted(groups)) or "none"
    return f"unknown group {name!r}; groups declared: {declared}"

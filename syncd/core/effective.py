"""The effective desired state, as `syncd render` shows it: after defaults, groups and ignore.

What syncd will manage for each user, written out in full (the plain per-user
form that `syncd import` writes too), as YAML or as JSON; with `explain`, where
each value came from: the user itself, one of its groups, or the defaults.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from syncd.core.desired import DesiredState, DesiredUser, Location
from syncd.core.fields import PROFILE_FIELDS
from syncd.visible import visible


def _values(user: DesiredUser) -> Iterator[tuple[str, Any]]:
    """The user's managed keys and their effective values, in the format's order."""
    for key in PROFILE_FIELDS:
        if key in user.profile:
            yield key, user.profile[key]
    if user.emails_mode is not None:
        yield "emails_mode", str(user.emails_mode)
    if user.emails is not None:
        yield "emails", list(user.emails)
    if user.suspend is not None:  # left out, the rendered file would have syncd write to it
        until = user.suspend.until_text()
        yield "suspend", {"reason": user.suspend.reason} | ({"until": until} if until else {})


#: Where a user wrote its own `key`, if that can be found (syncd.desired.loading.own_places).
Place = Callable[[DesiredUser, str], Location | None]


def _origin(user: DesiredUser, key: str, place: Place | None) -> tuple[str, str]:
    """Who set `key` for the user, and where: the user's own value, or else the user."""
    origin = user.origin(key)
    if origin is not None:
        return origin.layer, str(origin.location)
    where = (place and place(user, key)) or user.location
    return "user", str(where) if where else "?"


def to_json(
    state: DesiredState, *, explain: bool = False, place: Place | None = None
) -> dict[str, Any]:
    users: dict[str, Any] = {}
    for user in sorted(state.users, key=lambda u: u.username):
        entry: dict[str, Any] = {}
        for key, value in _values(user):
            if explain:
                origin, at = _origin(user, key, place)
                entry[key] = {"value": value, "origin": origin, "at": at}
            else:
                entry[key] = value
        if explain and user.ignore:
            entry["ignore"] = list(user.ignore)
        users[user.username] = entry
    return {"version": 1, "users": users}


def _scalar(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar. What does not print is
    # escaped (as `syncd import` writes it): the reader refuses a raw line
    # separator (U+2028), which a value may hold, written "\\L".
    return visible(json.dumps(value, ensure_ascii=False))


def to_yaml(state: DesiredState) -> str:
    """The effective state in the plain per-user form: a valid desired-state file."""
    lines = ["version: 1", "users:" if state.users else "users: {}"]
    for user in sorted(state.users, key=lambda u: u.username):
        values = list(_values(user))
        lines.append(f"  {user.username}:" if values else f"  {user.username}: {{}}")
        for key, value in values:
            if key == "suspend":
                pairs = ", ".join(f"{name}: {_scalar(text)}" for name, text in value.items())
                lines.append(f"    {key}: {{{pairs}}}")
            elif key != "emails":
                lines.append(f"    {key}: {_scalar(value)}")
            elif value:
                lines.append("    emails:")
                lines += [f"      - {_scalar(address)}" for address in value]
            else:
                lines.append("    emails: []")
    return "\n".join(lines) + "\n"


def explain_lines(state: DesiredState, place: Place | None = None) -> Iterator[str]:
    """`alice.location = "Berlin"  group berlin (groups.yaml:4:15)`, a line a value."""
    for user in sorted(state.users, key=lambda u: u.username):
        for key, value in _values(user):
            origin, at = _origin(user, key, place)
            shown = json.dumps(value, ensure_ascii=False)
            yield f"{user.username}.{key} = {shown}  {origin} ({at})"
        for key in user.ignore:
            yield f"{user.username}.{key}: ignored, not managed"

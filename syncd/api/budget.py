"""What a server says about its rate limit: the header fields of three conventions, read as one.

    RateLimit-Limit: 300        the IETF httpapi draft up to -06, which API
    RateLimit-Remaining: 120    gateways send today; Reset is in seconds
    RateLimit-Reset: 1

    X-RateLimit-Limit: 5000     the older convention with the same three numbers;
    X-RateLimit-Remaining: 4987 its Reset is seconds or, as GitHub sends it, a
    X-RateLimit-Reset: 1372700873  Unix time (any value past 2001 is taken as one)

    RateLimit-Policy: "day";q=1000;w=86400   the draft from -07 on: Structured
    RateLimit: "day";r=50;t=7200             Fields, a list of named quotas

When an answer carries more than one, the later draft is read first, then the
earlier, then the X- fields. Of several quotas in one `RateLimit` field, the
one with the fewest requests left binds. A field that does not parse is as if
it were absent: a server's odd header must never fail a request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

#: A Reset larger than this (2001-09-09 as a Unix time) is a moment, not a delay.
_UNIX_TIME: Final = 1_000_000_000
#: And larger than this, a moment in milliseconds (some gateways send that).
_UNIX_TIME_MS: Final = 1_000_000_000_000
#: When a server sends Remaining without Reset: assume its window is one second.
DEFAULT_RESET: Final = 1.0

_INTEGER: Final = re.compile(r"\s*(\d{1,15})\s*")
_NUMBER: Final = re.compile(r"\s*(\d{1,15}(?:\.\d{1,9})?)\s*")
# One member of a Structured Field list: a token or a quoted string, then ;key=value params.
_MEMBER: Final = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[A-Za-z*][\w:./*%+-]*)((?:\s*;[^,;]*)*)\s*')


@dataclass(frozen=True, slots=True)
class Budget:
    """A server's rate limit as one answer told it."""

    #: Requests the server will still take in the current window.
    remaining: int
    #: Seconds from this answer until the quota is whole again.
    reset: float
    #: Requests a window allows, when the server says.
    limit: int | None = None


def read_budget(headers: Mapping[str, str], now: float) -> Budget | None:
    """The budget an answer's `headers` tell (`now`: the wall clock, for Unix times), or None."""
    return (
        _structured(headers)
        or _draft(headers, "RateLimit-", now)
        or _draft(headers, "X-RateLimit-", now)
    )


def _draft(headers: Mapping[str, str], prefix: str, now: float) -> Budget | None:
    remaining = _integer(headers.get(prefix + "Remaining"))
    if remaining is None:
        return None
    reset = _reset(headers.get(prefix + "Reset"), now)
    return Budget(
        remaining,
        DEFAULT_RESET if reset is None else reset,
        _integer(headers.get(prefix + "Limit")),
    )


def _reset(value: str | None, now: float) -> float | None:
    match = _NUMBER.fullmatch(value) if value is not None else None
    if match is None:
        return None
    seconds = float(match.group(1))
    if seconds > _UNIX_TIME_MS:
        seconds = seconds / 1000 - now
    elif seconds > _UNIX_TIME:
        seconds -= now
    return max(0.0, seconds)


def _integer(value: str | None) -> int | None:
    match = _INTEGER.fullmatch(value) if value is not None else None
    return int(match.group(1)) if match else None


def _structured(headers: Mapping[str, str]) -> Budget | None:
    """The later draft: `RateLimit: "name";r=…;t=…`, limits from `RateLimit-Policy`."""
    field = headers.get("RateLimit")
    if field is None:
        return None
    quotas = dict(_members(headers.get("RateLimit-Policy", "")))
    found: list[Budget] = []
    for name, params in _members(field):
        remaining = _integer(params.get("r"))
        if remaining is None:
            continue
        reset = _integer(params.get("t"))
        policy = quotas.get(name, {})
        limit = _integer(policy.get("q", policy.get("l")))  # "l" before draft -08
        found.append(Budget(remaining, DEFAULT_RESET if reset is None else reset, limit))
    return min(found, key=lambda budget: budget.remaining, default=None)


def _members(field: str) -> list[tuple[str, dict[str, str]]]:
    """The members of a Structured Field list, each a name and its parameters (RFC 8941)."""
    members = []
    for part in _split_outside_quotes(field):
        match = _MEMBER.fullmatch(part)
        if match is None:
            continue
        name = match.group(1).strip('"')
        params: dict[str, str] = {}
        for param in match.group(2).split(";")[1:]:
            key, _, value = param.partition("=")
            params[key.strip()] = value.strip()
        members.append((name, params))
    return members


def _split_outside_quotes(field: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for character in field[:4096]:  # a header of more is not a rate limit
        if character == '"':
            quoted = not quoted
        if character == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(character)
    parts.append("".join(current))
    return parts

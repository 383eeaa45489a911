"""Malformed answers, on request: what a client must refuse to take as data.

A test mode of the sandbox (`"malformed": {"janedoe": "doc-missing-comma"}` in
the body of `POST /_sandbox/reset`): GET calls for that user are answered with
the named kind of broken answer instead of the truth. Writes are answered
normally, so a client that wrongly acted on such an answer would show in the
write counts. The catalogue starts with the API document's own examples, which
are not valid JSON. A few kinds (ODD) are well formed but odd: a client must act
on them correctly, not refuse them.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Final


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str = "application/json"
    #: Which GET route is broken: "user", "emails" or both.
    route: str = "both"
    extra_headers: tuple[tuple[str, str], ...] = ()


def _json(value: object, route: str = "both") -> Answer:
    return Answer(json.dumps(value).encode(), route=route)


def _user(username: object, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 2,
        "username": username,
        "url": f"https://www.docker.io/api/v1.1/users/{username}/",
        "date_joined": "2014-02-12T17:58:01.431312Z",
        "type": "User",
        "full_name": "Jane Doe",
        "location": "San Francisco, CA",
        "company": "Success, Inc.",
        "profile_url": "https://docker.io/",
        "gravatar_url": "https://secure.gravatar.com/avatar/0212b397124be4acd4e7dea9aa357.jpg",
        "email": "jane.doe@example.com",
        "is_active": True,
    }
    base.update(fields)
    return base


def _user_without(key: str) -> Callable[[str], Answer]:
    return lambda u: _json({k: v for k, v in _user(u).items() if k != key}, route="user")


_EMAIL = {"email": "jane.doe@example.com", "verified": True, "primary": True}
_OLD = {"email": "old@example.com", "verified": False, "primary": False}


@cache
def _gzip_bomb(mebibytes: int = 512) -> bytes:
    """~0.5 MB of gzip that inflates to `mebibytes` MiB of zeros: under any cap on raw
    bytes, far over any cap on the body. Made in a quarter of a second: after a full
    flush zlib starts afresh, so every MiB after the first compresses to the same bytes."""
    block = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    first = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()[:-8]  # the last block, without the trailer of 2 MiB
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(block, crc)
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return first + again * (mebibytes - 1) + end + trailer


_KINDS: Final[dict[str, Callable[[str], Answer | tuple[Answer, ...]]]] = {
    # The API document's GET user example: no comma between gravatar_url and email.
    "doc-missing-comma": lambda u: Answer(
        (
            f'{{"id": 2, "username": "{u}", "full_name": "Jane Doe", "gravatar_url": '
            '"https://secure.gravatar.com/avatar/0212b397124be4acd4e7dea9aa357.jpg?s=80&r=g&d=mm"'
            '"email": "jane.doe@example.com", "is_active": true}'
        ).encode(),
        route="user",
    ),
    # The PATCH example's body style: a trailing comma.
    "doc-trailing-comma": lambda u: Answer(
        f'{{"username": "{u}", "company": "Retired",}}'.encode(), route="user"
    ),
    "html-error-page": lambda u: Answer(
        b"<html><body><h1>Bad Gateway</h1></body></html>", "text/html"
    ),
    "html-login-page": lambda u: Answer(
        b"<!DOCTYPE html><title>Sign in</title><form>...</form>", "text/html"
    ),
    "empty-body": lambda u: Answer(b""),
    "truncated-json": lambda u: Answer(f'{{"id": 2, "username": "{u}", "full'.encode()),
    "json-null": lambda u: _json(None),
    "json-string": lambda u: _json("ok"),
    "json-number": lambda u: _json(42),
    "user-is-a-list": lambda u: _json([_user(u)], route="user"),
    "user-without-username": _user_without("username"),
    # A documented key absent is no value (null is: empty), whichever key it is.
    **{
        f"user-without-{key.replace('_', '-')}": _user_without(key)
        for key in ("full_name", "location", "company", "profile_url", "gravatar_url", "email")
    },
    # The list marks no primary and the profile, which would name it, lacks `email`.
    "unmarked-primary-and-no-profile-email": lambda u: (
        _user_without("email")(u),
        _json([{**_EMAIL, "primary": False}, _OLD], route="emails"),
    ),
    "user-for-someone-else": lambda u: _json(_user("someone_else"), route="user"),
    "username-not-a-string": lambda u: _json(_user(12), route="user"),
    "full-name-is-a-number": lambda u: _json(_user(u, full_name=5), route="user"),
    "location-is-an-object": lambda u: _json(_user(u, location={"city": "x"}), route="user"),
    "emails-is-an-object": lambda u: _json({"emails": [_EMAIL]}, route="emails"),
    "email-is-a-string": lambda u: _json(["jane.doe@example.com"], route="emails"),
    "email-without-verified": lambda u: _json(
        [{"email": "jane.doe@example.com", "primary": True}], route="emails"
    ),
    "primary-is-a-string": lambda u: _json(
        [{"email": "jane.doe@example.com", "verified": True, "primary": "true"}], route="emails"
    ),
    "two-primaries": lambda u: _json(
        [_EMAIL, {"email": "other@example.com", "verified": True, "primary": True}],
        route="emails",
    ),
    "email-is-empty": lambda u: _json(
        [{"email": "", "verified": True, "primary": True}], route="emails"
    ),
    # One address twice, in two spellings (ODD): a DELETE for one leaves the other.
    "one-address-twice": lambda u: _json(
        [_EMAIL, _OLD, {**_OLD, "email": "OLD@example.com"}], route="emails"
    ),
    "huge-body": lambda u: Answer(b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
    "deeply-nested": lambda u: Answer(b"[" * 100_000 + b"]" * 100_000),
    "not-utf8": lambda u: Answer(b'{"username": "\xff\xfe"}'),
    "bad-gzip": lambda u: Answer(
        b"this is not gzip", extra_headers=(("content-encoding", "gzip"),)
    ),
    "gzip-bomb": lambda u: Answer(_gzip_bomb(), extra_headers=(("content-encoding", "gzip"),)),
    # Values the API took once that a desired state may not ask for (ODD): a client
    # reads them as data; `syncd import` leaves them out of its file.
    "profile-url-not-http": lambda u: _json(_user(u, profile_url="javascript:alert(1)"), "user"),
    "email-not-an-address": lambda u: _json([_EMAIL, {**_OLD, "email": "not-an-email"}], "emails"),
}

#: The kinds a client must act on correctly (not refuse: they are well formed).
ODD: Final = frozenset({"one-address-twice", "profile-url-not-http", "email-not-an-address"})
#: The kinds a client must refuse.
KINDS: Final = tuple(sorted(_KINDS.keys() - ODD))


def answer_for(kind: str, username: str, route: str) -> Answer | None:
    """The broken answer of `kind` for a GET on `route` ("user"/"emails"), or None."""
    made = _KINDS[kind](username)
    answers = made if isinstance(made, tuple) else (made,)
    return next((a for a in answers if a.route in ("both", route)), None)


def check_kinds(mapping: object) -> dict[str, str]:
    """The `malformed` setting of a reset body: {username: kind}; ValueError if not."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise ValueError("malformed: expected an object of username → kind")
    for username, kind in mapping.items():
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ValueError(f"malformed: unknown kind {kind!r} for {username!r}")
    return {str(user): str(kind) for user, kind in mapping.items()}

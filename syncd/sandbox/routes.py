"""The five calls of the accounts API over HTTP: routes, authentication, bodies, errors.

Every request is checked in the order the real API answers: a username that
cannot exist does not match the route (404, as Django's URL patterns would),
then credentials (401, with both a Basic and a Bearer challenge), permission
and scope (403), the user's existence (404), and last the body (413 when over
64 KiB, 400 when unreadable or invalid). Every error body is JSON
`{"detail": "..."}`; nothing a client sends is answered with a 5xx.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Final
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from syncd.core import fields
from syncd.sandbox.runtime import ABANDONED, Sandbox
from syncd.sandbox.store import (
    EMAIL_READ,
    EMAIL_WRITE,
    PROFILE_READ,
    PROFILE_WRITE,
    InvalidInput,
    Principal,
    StoreError,
    UnknownAddress,
    UnknownUser,
    forbidden_message,
)

USER_PATH: Final = "/api/v1.1/users/{username}/"
EMAILS_PATH: Final = "/api/v1.1/users/{username}/emails/"
MAX_BODY_BYTES: Final = 64 * 1024
_MAX_FORM_FIELDS: Final = 100
# Challenges for both schemes the API accepts, one header each (RFC 9110 11.6.1).
CHALLENGES: Final = ('Basic realm="docker.io"', 'Bearer realm="docker.io"')
# Host headers used to build `url`; anything odder falls back to the socket address.
_HOST: Final = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")

Endpoint = Callable[[Request], Awaitable[Response]]


class Refusal(Exception):
    """An answer other than success, raised anywhere below an endpoint."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    if status == 401:
        for challenge in CHALLENGES:
            response.headers.append("WWW-Authenticate", challenge)
    return response


_STORE_STATUS: Final[dict[type[StoreError], int]] = {
    UnknownUser: 404,
    UnknownAddress: 404,
    InvalidInput: 400,
}


def answering_errors(endpoint: Endpoint) -> Endpoint:
    """`endpoint`, with a Refusal or a StoreError raised in it answered as its status."""

    @wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Refusal as refusal:
            return error_response(refusal.status, refusal.detail, refusal.headers)
        except StoreError as error:
            return error_response(_STORE_STATUS.get(type(error), 400), str(error))

    return answer


def base_url(scope: Scope) -> str:
    """Scheme and host the client used, for the `url` field of the user object."""
    host = ""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
            break
    if not _HOST.fullmatch(host):
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope['scheme']}://{host}"


class AccountsApi:
    """Endpoints of the accounts API, reading the sandbox's current state on each call."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def routes(self) -> list[Route]:
        return [
            Route(USER_PATH, answering_errors(self.user), methods=["GET", "PATCH"]),
            Route(EMAILS_PATH, answering_errors(self.emails), methods=["GET", "POST", "DELETE"]),
        ]

    async def user(self, request: Request) -> Response:
        write = request.method == "PATCH"
        username = self._authorize(request, PROFILE_WRITE if write else PROFILE_READ)
        store = self.sandbox.store
        account = store.account(username)
        if write:
            account = store.update_profile(username, await read_body(request))
        return JSONResponse(account.user_object(base_url(request.scope)))

    async def emails(self, request: Request) -> Response:
        method = request.method
        read = method in ("GET", "HEAD")
        username = self._authorize(request, EMAIL_READ if read else EMAIL_WRITE)
        store = self.sandbox.store
        store.account(username)
        if read:
            return JSONResponse([e.as_json() for e in store.emails(username)])
        body = await read_body(request)
        if method == "POST":
            return JSONResponse(store.add_email(username, body).as_json(), status_code=201)
        store.delete_email(username, body)
        return Response(status_code=204)

    def _authorize(self, request: Request, scope: str) -> str:
        """The username of the path once the credentials may use `scope` on it."""
        username: str = request.path_params["username"]
        if not fields.is_valid_username(username):
            raise Refusal(404, "not found")
        principal = self.authenticate(request.headers.get("authorization"))
        if principal is None:
            raise Refusal(401, "authentication credentials were missing or wrong")
        if not principal.may(scope, username):
            raise Refusal(403, forbidden_message(scope))
        return username

    def authenticate(self, header: str | None) -> Principal | None:
        """Who the Authorization header names, or None when nobody."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and value:
            return self.sandbox.principal_for_token(value)
        if scheme == "basic" and value:
            try:
                pair = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                return None
            username, colon, password = pair.partition(":")
            if not colon:
                return None
            return self.sandbox.store.principal_for_password(username, password)
        return None


async def read_body(request: Request) -> dict[str, object]:
    """The body of a write as a mapping: JSON object or form fields; empty is {}."""
    raw = await read_raw_body(request, MAX_BODY_BYTES)
    if not raw.strip():
        return {}
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        return _parse_form(raw)
    # A body without a Content-Type is read as JSON, which is what clients send.
    if media_type in ("", "application/json") or media_type.endswith("+json"):
        return parse_json_object(raw)
    raise Refusal(
        400, "unsupported content type: use application/json or application/x-www-form-urlencoded"
    )


async def read_raw_body(request: Request, limit: int) -> bytes:
    """The body's bytes, or a 413 as soon as it is known to exceed `limit`."""
    too_large = Refusal(413, f"request body larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refusal(ABANDONED, "the client went away before sending the whole body") from None
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, object]:
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_object_without_duplicates)
    except UnicodeDecodeError:
        raise Refusal(400, "the body is not UTF-8") from None
    except (ValueError, RecursionError) as error:
        # ValueError covers JSONDecodeError, duplicate keys and over-long integers.
        raise Refusal(400, f"the body is not valid JSON: {str(error)[:200]}") from None
    if not isinstance(data, dict):
        raise Refusal(400, "the body must be a JSON object")
    return data


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ValueError("a key appears more than once")
    return data


def _parse_form(raw: bytes) -> dict[str, object]:
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise Refusal(400, "the form body is not percent-encoded UTF-8") from None
    except ValueError as error:
        raise Refusal(400, f"the form body is not valid: {str(error)[:200]}") from None
    data: dict[str, object] = dict(pairs)
    if len(data) != len(pairs):
        raise Refusal(400, "a form field appears more than once")
    return data

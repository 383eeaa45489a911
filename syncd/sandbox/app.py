"""The sandbox as one ASGI application: the API behind faults and counting, plus control routes.

Every request outside `/_sandbox/` passes through fault injection (in the
order syncd.sandbox.faults says) and is counted (syncd.sandbox.runtime.Stats);
under a global rate limit every answer carries the bucket's RateLimit header
fields (syncd.sandbox.ratelimit). In the stats, `path` is the route template
(or "(other)" for paths no route matches) and a dropped connection counts with
status 0; `since_mark` starts afresh at `POST /_sandbox/mark` or a reset.
`/_sandbox/stats` (GET), `/_sandbox/reset`, `/_sandbox/faults` and `/_sandbox/mark` (POST) are
neither faulted nor counted, and need no credentials: the sandbox is a loopback test tool, and
anyone who can reach it can read and reset it. Do not expose it beyond
loopback.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd.errors import SyncdError
from syncd.sandbox import malformed
from syncd.sandbox.faults import Ambiguity, FaultConfig, retry_after_header
from syncd.sandbox.routes import (
    EMAILS_PATH,
    USER_PATH,
    AccountsApi,
    answering_errors,
    error_response,
    parse_json_object,
    read_raw_body,
)
from syncd.sandbox.runtime import DROPPED, Sandbox, config_from_reset

CONTROL_PREFIX: Final = "/_sandbox/"
#: Reset bodies may carry a whole seed, so they get more room than API bodies.
MAX_RESET_BYTES: Final = 64 * 1024 * 1024
_WRITES: Final = frozenset({"PATCH", "POST", "DELETE"})
_USER_ROUTE: Final = re.compile(r"/api/v1\.1/users/[^/]+/")
_EMAILS_ROUTE: Final = re.compile(r"/api/v1\.1/users/[^/]+/emails/")
OTHER_ROUTE: Final = "(other)"
# The same body for every injected 5xx, so that a client cannot tell an
# ambiguous write (applied) from an injected error (not applied).
_FAULT_DETAIL: Final = {500: "internal server error", 503: "service unavailable"}


class DroppedConnection(Exception):
    """Raised after an applied write so that uvicorn closes the connection unanswered."""


class OneLineForDroppedConnections(logging.Filter):
    """Turns uvicorn's traceback for a `DroppedConnection` into one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        if exc_info and isinstance(exc_info[1], DroppedConnection):
            record.msg = "syncd sandbox: dropped a connection after applying a write (fault)"
            record.args = ()
            record.exc_info = None
        return True


def route_of(path: str) -> str:
    """The route template that counts `path` in the stats (bounded, unlike raw paths)."""
    if _USER_ROUTE.fullmatch(path):
        return USER_PATH
    if _EMAILS_ROUTE.fullmatch(path):
        return EMAILS_PATH
    return OTHER_ROUTE


def _user_of(path: str) -> str:
    """The username in an API path; "" in any other."""
    return path.split("/")[4] if route_of(path) != OTHER_ROUTE else ""


async def _http_error(request: Request, exc: Exception) -> Response:
    # Starlette's own 404 (no route) and 405 (method), as JSON like every other error.
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)


async def _disconnection(receive: Receive) -> None:
    """Return when the client has gone; what is left of the request body is dropped.

    Only once the app has answered: it has read all of the body it wants.
    """
    while (await receive())["type"] != "http.disconnect":
        pass


def _trickling(send: Send, receive: Receive, pause: float) -> Send:
    """`send`, with every body sent one byte at a time, `pause` seconds apart.

    It stops when the client goes away: uvicorn drops what is sent to a closed
    connection without a word, and a trickle of minutes would hold the server.
    """

    async def trickle(message: Message) -> None:
        if message["type"] != "http.response.body" or not message.get("body"):
            await send(message)
            return
        gone = asyncio.ensure_future(_disconnection(receive))
        try:
            body: bytes = message["body"]
            more = message.get("more_body", False)
            for index in range(len(body)):
                if gone.done():
                    return
                last = index == len(body) - 1
                chunk = body[index : index + 1]
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": more or not last}
                )
                if not last:
                    await asyncio.wait({gone}, timeout=pause)
        finally:
            gone.cancel()

    return trickle


def _telling(send: Send, headers: dict[str, str]) -> Send:
    """`send`, with `headers` added to the answer, whatever it is (the global limit's fields)."""
    extra = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers.items()
    ]

    async def tell(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return tell


class SandboxApp:
    """The ASGI entry point that uvicorn serves."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        routes = [
            *AccountsApi(sandbox).routes(),
            Route(f"{CONTROL_PREFIX}stats", self.stats, methods=["GET"]),
            Route(f"{CONTROL_PREFIX}reset", answering_errors(self.reset), methods=["POST"]),
            Route(f"{CONTROL_PREFIX}faults", answering_errors(self.set_faults), methods=["POST"]),
            Route(f"{CONTROL_PREFIX}mark", self.mark, methods=["POST"]),
        ]
        inner = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
        # Every path of the API ends with "/": a missing one is the client's bug
        # to see (404), not something to paper over with a redirect.
        inner.router.redirect_slashes = False
        self.inner: ASGIApp = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.inner(scope, receive, send)
            return
        # Held for the whole request: a reset meanwhile starts counting afresh.
        stats = self.sandbox.stats
        stats.entered()
        status = DROPPED
        set_cookie = self.sandbox.faults.config.set_cookie
        with_cookie = any(name == b"cookie" for name, _ in scope["headers"])

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if set_cookie:
                    cookie = (b"set-cookie", b"sandbox_session=%d; Path=/" % id(scope))
                    message = {**message, "headers": [*message.get("headers", []), cookie]}
            await send(message)

        try:
            await self._faulted(scope, receive, recording_send)
        except DroppedConnection:
            status = DROPPED
            raise
        finally:
            route = route_of(scope["path"])
            stats.record(scope["method"], route, status, with_cookie=with_cookie)

    async def _faulted(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.sandbox.faults
        if delay := faults.latency():
            await asyncio.sleep(delay)
        budget = faults.global_budget()
        if budget is not None:
            send = _telling(send, budget.headers(faults.config.rate_limit_headers))
            if not budget.allowed:
                wait = retry_after_header(faults.config.retry_after, budget.retry_after)
                await error_response(429, "rate limit exceeded", wait)(scope, receive, send)
                return
        credential = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                credential = value.decode("latin-1")
        retry_after = faults.retry_after(credential)
        if retry_after is not None:
            config = faults.config
            told = retry_after_header(config.retry_after, retry_after) | dict(
                config.throttle_headers
            )
            status = config.throttle_status
            detail = "rate limit exceeded" if status == 429 else _FAULT_DETAIL[status]
            await error_response(status, detail, told)(scope, receive, send)
            return
        if faults.config.trickle_ms:
            send = _trickling(send, receive, faults.config.trickle_ms / 1000)
        if scope["method"] == "GET" and self.sandbox.config.malformed:
            broken = self._malformed_answer(scope["path"])
            if broken is not None:
                await broken(scope, receive, send)
                return
        unanswered = faults.config.unanswered_writes_of
        if unanswered and scope["method"] in _WRITES and _user_of(scope["path"]) == unanswered:
            while (await receive())["type"] != "http.disconnect":
                pass  # its body: then nothing until the client gives up
            return  # uvicorn sends nothing to a client that has gone
        injected = faults.injected_error()
        if injected is not None:
            await error_response(injected, _FAULT_DETAIL[injected])(scope, receive, send)
            return
        if scope["method"] not in _WRITES or not faults.config.ambiguous_rate:
            await self.inner(scope, receive, send)
            return
        # Hold the answer back until it is known whether the applied write is
        # to be answered truly, with a 500, or not at all.
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.inner(scope, receive, hold)
        applied = bool(held) and 200 <= held[0]["status"] < 300
        how = faults.ambiguity() if applied else None
        if how is Ambiguity.ANSWER_500:
            await error_response(500, _FAULT_DETAIL[500])(scope, receive, send)
        elif how is Ambiguity.DROP:
            # uvicorn answers 500 itself if the app fails before starting a
            # response; after the start it closes the connection, so the client
            # sees a status line and then no body: a transport error.
            headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            raise DroppedConnection
        else:
            for message in held:
                await send(message)

    def _malformed_answer(self, path: str) -> Response | None:
        """In the malformed test mode, the broken answer for this GET, if its user has one."""
        route = "emails" if _EMAILS_ROUTE.fullmatch(path) else "user"
        username = _user_of(path)
        kind = self.sandbox.config.malformed.get(username)
        answer = malformed.answer_for(kind, username, route) if kind else None
        if answer is None:
            return None
        return Response(
            answer.body,
            headers=dict(answer.extra_headers),
            media_type=answer.content_type,
        )

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.sandbox.stats.as_json())

    async def mark(self, request: Request) -> Response:
        """Start `since_mark` afresh: what a client sends next is timed on its own."""
        self.sandbox.stats.mark()
        return JSONResponse({"marked": True})

    async def set_faults(self, request: Request) -> Response:
        """Replace the faults only, keeping the accounts (e.g. to check the truth after chaos)."""
        try:
            body = parse_json_object(await read_raw_body(request, MAX_RESET_BYTES))
            self.sandbox.set_faults(FaultConfig.from_mapping(body))
        except (ValueError, TypeError) as error:
            return error_response(400, str(error))
        return JSONResponse({"faults": "set"})

    async def reset(self, request: Request) -> Response:
        """Start over: from the initial state, or from the configuration in the body."""
        try:
            raw = await read_raw_body(request, MAX_RESET_BYTES)
            if raw.strip():
                body = parse_json_object(raw)
                config = config_from_reset(body, self.sandbox.initial.db_path)
                self.sandbox.reset(config)
            else:
                self.sandbox.reset()
        except (ValueError, SyncdError) as error:
            return error_response(400, str(error))
        return JSONResponse({"users": len(self.sandbox.store)})

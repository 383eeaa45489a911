"""The accounts API client: async, bounded, retrying only what is safe.

Each request goes out on a lane (a one-connection httpx transport no other
request uses meanwhile) when the rate control allows, within SYNCD_TIMEOUT. A
POST is never retried here: the applier re-reads and adds only what is missing.
Every failure is an ApiError naming the user, the method and the path, or
ApiUnreachable when no request can succeed; a body that is not the JSON the API
document promises is a MalformedResponse, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import structlog

from syncd.api.control import RateControl
from syncd.api.credentials import Credential
from syncd.api.inflating import read_capped
from syncd.api.retrying import LONG_WAIT, RetryPolicy, read_retry_after, retry_reason
from syncd.api.transport import Lane, check_trust_files, explain_failure, proxy_for, tls_context
from syncd.core.live import (
    LiveEmail,
    LiveProfile,
    ShapeError,
    parse_email,
    parse_emails,
    parse_user,
)
from syncd.errors import (
    ApiError,
    ApiUnreachable,
    CredentialError,
    CredentialRefused,
    HttpStatusError,
    MalformedResponse,
    MissingCredential,
    NotSent,
    TimedOut,
    TransportError,
    excerpt,
    status_error,
)
from syncd.redaction import basic_secrets, redacted
from syncd.settings import Settings

if TYPE_CHECKING:
    import ssl

    # Imported at the first request: a warm plan sends none, and httpx is slow to import.
    import httpx

#: Attempts in a row without an answer, for two requests or more, that make the API unreachable.
UNREACHABLE_AFTER = 5

T = TypeVar("T")
#: Called after every request with its method, status (None: no answer) and duration.
ResponseObserver = Callable[[str, int | None, float], None]
#: Called before each retry with its method and reason (syncd.api.retrying.RETRY_REASONS).
RetryObserver = Callable[[str, str], None]

log = structlog.get_logger("syncd.api")


class AccountsClient(contextlib.AbstractAsyncContextManager["AccountsClient"]):
    """Calls of the accounts API v1.1, each made with the credential of its user."""

    def __init__(
        self,
        settings: Settings,
        credential_for: Callable[[str], Credential | None],
        retry: RetryPolicy | None = None,
        on_response: ResponseObserver | None = None,
        on_retry: RetryObserver | None = None,
    ) -> None:
        settings.check_transport()
        # How requests travel (proxy, roots of trust): refused now, in one line, if they cannot.
        self._proxy = proxy_for(settings)
        self._proxy_secrets = basic_secrets(self._proxy)  # its Proxy-Authorization
        check_trust_files(settings)
        self._credential_for = credential_for
        #: When to send again: also the applier's, for the writes it retries itself.
        self.retry = retry or RetryPolicy()
        self._on_response = on_response or (lambda method, status, seconds: None)
        self._on_retry = on_retry or (lambda method, reason: None)
        self._settings = settings
        #: The base URL every call goes to, for messages.
        self.api_url = settings.api_url
        #: The process's rate control for this API, shared with the clients before this one.
        self.rate_control = RateControl.shared(settings)
        # Made at the first request: a warm plan sends none, and loading the roots is not free.
        self._tls: ssl.SSLContext | None = None
        self._lanes: list[Lane] = []  # free, the last returned last
        self._made: list[Lane] = []  # all, closed at the end
        self._connections: weakref.WeakSet[object] = weakref.WeakSet()
        #: Awaited before a write is sent again after a wait: the applier's group
        #: commit, which on PostgreSQL goes through the session that holds the lock,
        #: so an instance that lost it (and with it the right to write) sends nothing.
        self.fence: Callable[[], Awaitable[None]] | None = None
        #: Requests sent, by method: how runs prove "0 requests" or "2 GETs per user".
        self.requests: Counter[str] = Counter()
        #: Requests answered with a success: none of many means the API is failing.
        self.succeeded = 0
        #: Requests the API answered itself, a refusal (4xx) included: none of many
        #: means it is down (no answer, or only 5xx), not that one user's token is.
        self.answered = 0
        # Which requests' attempts in a row got no answer (a 5xx, or its head, is an answer).
        self._unanswered: list[tuple[str, str, str]] = []
        #: Set once no request can succeed: every later one raises it again, unsent.
        self.unreachable: ApiUnreachable | None = None

    async def __aexit__(self, *exc_info: object) -> None:
        lanes, self._made, self._lanes = self._made, [], []
        async with contextlib.AsyncExitStack() as closing:
            for lane in lanes:
                closing.push_async_callback(lane.aclose)

    async def get_user(self, username: str) -> LiveProfile:
        parse = partial(parse_user, username)
        return await self._call_json("GET", username, _path(username), parse)

    async def get_emails(self, username: str) -> tuple[LiveEmail, ...]:
        return await self._call_json("GET", username, _path(username, "emails/"), parse_emails)

    async def update_profile(self, username: str, body: dict[str, str]) -> LiveProfile:
        parse = partial(parse_user, username)
        return await self._call_json("PATCH", username, _path(username), parse, body)

    async def add_email(self, username: str, address: str) -> LiveEmail:
        path, body = _path(username, "emails/"), {"email": address}
        return await self._call_json("POST", username, path, parse_email, body)

    async def delete_email(self, username: str, address: str) -> None:
        await self._call("DELETE", username, _path(username, "emails/"), {"email": address})

    async def _call_json(
        self,
        method: str,
        username: str,
        path: str,
        parse: Callable[[object], T],
        body: dict[str, str] | None = None,
    ) -> T:
        raw = await self._call(method, username, path, body)
        try:
            return parse(json.loads(raw))
        except ShapeError as error:  # a ValueError: first
            detail = f"unexpected answer: {error}"
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            detail = f"answer is not valid JSON: {raw.decode('utf-8', 'replace')}"
        detail = self._credential(username, method, path).scrub(detail, self._proxy_secrets)
        raise MalformedResponse(username, method, path, excerpt(detail))

    async def _call(
        self, method: str, username: str, path: str, body: dict[str, str] | None
    ) -> bytes:
        attempt, reached = 0, None  # the last error of an attempt that may have arrived
        while True:
            attempt += 1
            try:
                return await self._send_once(method, username, path, body)
            except ApiUnreachable as stop:  # from this attempt's error, unless one arrived
                raise ApiUnreachable(str(stop)) from (None if reached else stop.__cause__)
            except ApiError as error:
                reached = reached if isinstance(error, NotSent) else error
                if method == "POST" or not error.retryable or attempt >= self.retry.attempts:
                    raise (reached or error) from None  # NotSent: no attempt connected
                delay, reason = self.retry.delay(attempt, error), retry_reason(error)
                (log.warning if delay >= LONG_WAIT else log.debug)(  # long: not a hang
                    "api_retry",
                    user=username,
                    method=method,
                    path=path,
                    attempt=attempt,
                    reason=reason,
                    detail=error.detail,
                    delay=round(delay, 3),
                    retry_after=getattr(error, "retry_after", None),  # why: said, or our own
                )
                self._on_retry(method, reason)
                await asyncio.sleep(delay)
                if method != "GET" and self.fence is not None:
                    await self.fence()  # another instance may have taken over meanwhile

    async def _send_once(
        self, method: str, username: str, path: str, body: dict[str, str] | None
    ) -> bytes:
        if self.unreachable is not None:
            raise ApiUnreachable(str(self.unreachable)) from NotSent(username, method, path, "")
        credential = self._credential(username, method, path)
        scrub = partial(credential.scrub, also=self._proxy_secrets)  # from what is said back
        # Loaded before the turn, not after: a request sent long after its turn
        # comes closer to the next than the rate allows.
        self._tls = self._tls or tls_context(self._settings)
        await self.rate_control.admit()
        if not self._lanes:  # no more lanes than requests admitted at once
            self._made.append(Lane(self._settings, self._tls))
            self._lanes.append(self._made[-1])
        http = self._lanes.pop()
        lane_kept, status = True, None
        started = time.monotonic()
        try:
            import httpx

            self.requests[method] += 1
            # The whole exchange, connecting and the body included, rather than
            # each read: a server that trickles a byte at a time would pass those.
            headers = {"Authorization": credential.authorization()}
            async with (
                asyncio.timeout(self._settings.timeout),
                http.stream(method, self.api_url + path, headers, json=body) as response,
            ):
                self._unanswered = []  # it speaks: slow perhaps, but not unreachable
                raw = await read_capped(response, username, method, path, scrub)
            if response.status_code == 407 and self._proxy:  # never the API's: as to a CONNECT
                raise httpx.ProxyError(f"407 {response.reason_phrase}")
            status = response.status_code
            self._learn(response, time.monotonic() - started)
            self.answered += status < 500
            if status not in (200, 201, 204):
                raise _status_error(username, method, path, response, raw, scrub)
            self.succeeded += 1
            return raw
        except TimeoutError:
            self.rate_control.timed_out()
            detail = f"no complete answer within {self._settings.timeout:g} s (SYNCD_TIMEOUT)"
            raise self._no_answer(TimedOut(username, method, path, detail)) from None
        except httpx.LocalProtocolError as error:
            # Raised before sending; its text may quote a header: the class name only.
            detail = f"the request could not be sent ({error.__class__.__name__})"
            raise ApiError(username, method, path, detail) from None
        except httpx.TransportError as error:
            # httpcore 1.0.9 keeps a tunnel whose TLS handshake failed as an active
            # connection (encode/httpcore#1023), the lane's one slot lost for good:
            # the lane is not lent again, and is closed at the end.
            lane_kept = not (isinstance(error, httpx.ConnectError) and self._proxy)
            detail, hopeless = explain_failure(error, self._proxy, self.api_url)
            detail = scrub(detail)  # a reason phrase may quote a header
            unsent = isinstance(error, httpx.ConnectError | httpx.ProxyError)  # no connection
            failure = (NotSent if unsent else TransportError)(username, method, path, detail)
            stop = self._unreachable(detail) if hopeless else self._no_answer(failure)
            raise stop from (None if stop is failure else failure)
        finally:
            if lane_kept:
                self._lanes.append(http)
            self.rate_control.done(answered=status is not None)
            self._on_response(method, status, time.monotonic() - started)

    def _credential(self, username: str, method: str, path: str) -> Credential:
        try:
            credential = self._credential_for(username)
        except CredentialError as error:
            raise CredentialRefused(username, method, path, str(error)) from None
        if credential is None:
            # Never send a request without credentials: it can only earn a 401.
            detail = "no credential file for this user and no fallback token"
            raise MissingCredential(username, method, path, detail)
        return credential

    def _learn(self, response: httpx.Response, seconds: float) -> None:
        """Teach the rate control; a connection's first answer carries handshakes: no sample."""
        stream = response.extensions["network_stream"]  # httpcore's, for HTTP/1.1 and 2
        new_connection = stream not in self._connections
        self._connections.add(stream)
        self.rate_control.answered(response.status_code, response.headers, seconds, new_connection)

    def _unreachable(self, detail: str) -> ApiUnreachable:
        proxy = f" (through the proxy {redacted(self._proxy)})" if self._proxy else ""
        self.unreachable = ApiUnreachable(f"API unreachable: {self.api_url}{proxy}: {detail}")
        return self.unreachable

    def _no_answer(self, error: TransportError) -> TransportError | ApiUnreachable:
        """`error`, or ApiUnreachable once too many attempts in a row got no answer."""
        # Never one request's retries alone: a server may lose just it. A refusal saw none.
        self._unanswered.append((error.user, error.method, error.path))
        alone = len(set(self._unanswered)) == 1 and not isinstance(error, NotSent)
        if len(self._unanswered) < UNREACHABLE_AFTER or alone:
            return error
        tried = f"none of {len(self._unanswered)} attempts got an answer; the last: {error.detail}"
        return self._unreachable(tried)


def _status_error(
    username: str, method: str, path: str, answer: httpx.Response, raw: bytes, scrub: partial[str]
) -> HttpStatusError:
    status, headers, text = answer.status_code, answer.headers, raw.decode("utf-8", "replace")
    if status == 304:  # syncd asks nothing conditional: a cache between answers for the API
        text = "Not Modified, to a request that was not conditional: is a cache in the way?"
    elif 300 <= status < 400:  # never followed: say where it pointed
        where = redacted(headers.get("Location", "nowhere (no Location)"))
        text = f"redirected to {where}, which syncd does not follow: is the API URL right?"
    with contextlib.suppress(ValueError):
        parsed: Any = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
            text = parsed["detail"]
    return status_error(username, method, path, status, scrub(text), read_retry_after(headers))


def _path(username: str, below: str = "") -> str:
    return f"/api/v1.1/users/{quote(username, safe='')}/{below}"

"""The status pages over HTTP: who may look, which page, rendered by Jinja2.

The listener (syncd.service.listener) hands every GET but /metrics, /healthz
and /readyz to `StatusPages.answer`. The pages show usernames and addresses,
so they ask for SYNCD_UI_TOKEN_FILE's token (HTTP Basic with it as the
password, or a bearer header; compared in constant time) whenever one is set,
and are served without one only on a loopback address, and there only to a
request whose Host names loopback: a web page that rebinds its own name to
127.0.0.1 sends that name, and gets 421 instead of the pages. On any other
address without a token they are off: the daemon says so once in its log, and
each page answers 404 saying why.

Every value from the API or the desired state is escaped by Jinja2's
autoescape, and shown as `syncd` prints it (syncd.visible: a control
character as its escape) by the environment's `finalize`, so no template can
forget either. The Content-Security-Policy allows no script at all: the pages
refresh with a meta tag, and work the same without JavaScript.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2

from syncd.core.fields import USERNAME_PATTERN
from syncd.core.vocabulary import ActionName, WriteResult
from syncd.errors import StateError
from syncd.logs import get_logger
from syncd.secretfiles import read_secret_file
from syncd.service.admission import MAX_THREADS
from syncd.service.metrics import Metrics
from syncd.service.pages import AUDIT_MOST, AUDIT_SHOWN, audit_page, home_page, user_page
from syncd.settings import Settings, is_loopback
from syncd.state.audit_queries import EventFilter
from syncd.state.backend import StateStore, open_store
from syncd.visible import visible

log = get_logger("syncd.listener")

#: (status, body, content type, extra headers): what the listener sends.
Answer = tuple[int, bytes, str, Mapping[str, str]]

#: Seconds between two refreshes of `/` in the browser.
REFRESH_SECONDS = 30
#: Pages rendered at once: the listener's other threads stay free for the probes.
PAGE_THREADS = MAX_THREADS // 4

_HEADERS = {
    # No script, no frame, nothing fetched from elsewhere: styles are inline.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="syncd", charset="UTF-8"'}
_USER_PATH = re.compile(r"/users/([^/]*)/?")
_RESULTS = tuple(result.value for result in WriteResult if result != WriteResult.SKIPPED)


class Access(enum.Enum):
    """Who may look at the pages."""

    OPEN = enum.auto()  # anyone who reaches the loopback address
    TOKEN = enum.auto()  # whoever sends the token
    OFF = enum.auto()  # nobody


def page_access(host: str, token_set: bool) -> Access:
    """A token, once set, is always asked for; without one, only loopback serves pages."""
    if token_set:
        return Access.TOKEN
    # An empty host is every interface: not loopback.
    return Access.OPEN if host and is_loopback(host.lower()) else Access.OFF


def names_loopback(host: str | None) -> bool:
    """Whether a Host header (with or without its port) names this machine's loopback.

    The listener's own address is among these: pages are OPEN only on loopback."""
    try:
        name = urlsplit(f"//{host}").hostname if host else None
    except ValueError:  # "[::1" and the like
        return False
    return name is not None and is_loopback(name)


def authorized(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header carries the token: as Basic's password, or as a
    bearer token."""
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        sent = value
    elif scheme.lower() == "basic":
        try:
            sent = base64.b64decode(value, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(sent.encode(), token.encode())


class StatusPages:
    """The pages of one listener; `answer` is called from the listener's threads."""

    def __init__(
        self,
        access: Access,
        token: str | None,
        open_state: Callable[[], StateStore],
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.access = access
        self._token = token
        self._open_state = open_state
        # Those of the start, never reloaded: they place the state (which a reload
        # keeps); the API shown is the one the daemon records (status.api_shown).
        self._settings = settings
        self._metrics = metrics
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader("syncd.service", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            finalize=_shown,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.filters.update(when=_when, ago=_ago, unix_when=_unix_when)
        self._rendering = threading.BoundedSemaphore(PAGE_THREADS)

    @classmethod
    def from_settings(cls, settings: Settings, host: str, metrics: Metrics) -> StatusPages:
        """The pages of a listener on `host`; says once in the log when they are off."""
        token = None
        if (path := settings.ui_token_file) is not None:
            # It guards pages that others ask for: "nothing was sent with it" is not its story.
            token = read_secret_file(path, what="UI token file", refused_then="")
        access = page_access(host, token is not None)
        if access is Access.OFF:
            log.warning(
                "status_pages_off",
                reason="the listener is not on a loopback address and SYNCD_UI_TOKEN_FILE "
                "is not set",
            )
        return cls(
            access,
            token,
            lambda: open_store(settings, "pages", read_only=True),
            settings,
            metrics,
        )

    def answer(self, target: str, authorization: str | None, host: str | None) -> Answer:
        """The answer to a GET of `target` (path and query), with its Authorization and
        Host headers."""
        if self.access is Access.OFF:
            return _text(
                404,
                "not found: the status pages are off (set SYNCD_UI_TOKEN_FILE, or listen on "
                "loopback); try /metrics, /healthz or /readyz",
            )
        if self.access is Access.OPEN and not names_loopback(host):
            return _text(
                421,
                "misdirected: without SYNCD_UI_TOKEN_FILE the status pages answer only a Host "
                "of 127.0.0.1, [::1] or localhost",
            )
        if self._token is not None and not authorized(authorization, self._token):
            return _text(401, "the status pages need the token of SYNCD_UI_TOKEN_FILE", _CHALLENGE)
        if not self._rendering.acquire(blocking=False):
            return _text(503, "busy: other pages are being made; ask again", {"Retry-After": "1"})
        try:
            return self._route(target)
        finally:
            self._rendering.release()

    def _route(self, target: str) -> Answer:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        try:
            if parts.path == "/":
                with self._open_state() as store:
                    home = home_page(store, self._settings, self._metrics.standby)
                return self._page("home.html", page=home, refresh=REFRESH_SECONDS)
            if match := _USER_PATH.fullmatch(parts.path):
                name = match.group(1)
                if not USERNAME_PATTERN.fullmatch(name):
                    return _text(404, "not found: not a username (4-30 of a-z, 0-9, _)")
                with self._open_state() as store:
                    user = user_page(store, self._metrics.desired, name, self._settings)
                return self._page("user.html", page=user)
            if parts.path in ("/audit", "/audit/"):
                where, limit = _audit_filter(query)
                with self._open_state() as store:
                    audit = audit_page(store, where, limit)
                return self._page(
                    "audit.html", page=audit, actions=list(ActionName), results=_RESULTS
                )
        except _BadQuery as error:
            return _text(400, str(error))
        except StateError as error:
            return _text(503, f"the state cannot be read: {error}")
        return _text(404, "not found: try /, /users/NAME or /audit")

    def _page(self, name: str, **values: Any) -> Answer:
        standby = self._metrics.standby is not None
        html = self._templates.get_template(name).render(standby=standby, **values)
        return 200, html.encode(), "text/html; charset=utf-8", _HEADERS


class _BadQuery(ValueError):
    """A query parameter that cannot be: its message says which, and what may be."""


def _audit_filter(query: Mapping[str, list[str]]) -> tuple[EventFilter, int]:
    """`/audit?user=…&action=…&result=…&limit=…` as `syncd audit` takes them (each repeatable)."""
    users = tuple(value for value in query.get("user", []) if value)
    actions = tuple(value for value in query.get("action", []) if value)
    results = tuple(value for value in query.get("result", []) if value)
    for action in actions:
        if action not in tuple(ActionName):
            raise _BadQuery(f"action {visible(action)!r}: one of {', '.join(ActionName)}")
    for result in results:
        if result not in _RESULTS:
            raise _BadQuery(f"result {visible(result)!r}: one of {', '.join(_RESULTS)}")
    limit = AUDIT_SHOWN
    if given := query.get("limit"):
        if not given[-1].isascii() or not given[-1].isdigit() or int(given[-1]) < 1:
            raise _BadQuery(f"limit: a number from 1 to {AUDIT_MOST}")
        limit = min(int(given[-1]), AUDIT_MOST)
    return EventFilter(users=users, actions=actions, results=results), limit


def _text(status: int, text: str, headers: Mapping[str, str] | None = None) -> Answer:
    return status, f"{text}\n".encode(), "text/plain; charset=utf-8", dict(headers or {})


def _shown(value: Any) -> Any:
    """Every value a template prints: a string as `syncd` prints it (then escaped);
    None as nothing, never Python's "None" (an approval's event has no target)."""
    if value is None:
        return ""
    return visible(value) if isinstance(value, str) else value


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _unix_when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(iso: str | None) -> str:
    """How long ago an ISO 8601 moment was, in the largest unit that fits."""
    if not iso:
        return ""
    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{max(int(seconds), 0)} s ago"

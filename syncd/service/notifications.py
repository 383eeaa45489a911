"""Notifications: the daemon tells webhooks and Slack what happened, in the background.

Providers come from the settings (`[[notify]]`, or SYNCD_NOTIFY_URL). After
each cycle the daemon hands over the conditions that hold (syncd.core.conditions
keeps each to one message when it starts and one when it resolves), and keeps
the ones told in its state (`told`, `recall`): the next process on the state
(a restart, a takeover, the next `run --once`) resolves them, or stays silent
while they hold. A firing counts as told once its delivery ended (sent, or
failed after its retries), not when it is queued: one still queued when the
process dies is told again by the next (a duplicate rather than an alert lost),
and the state keeps the one of its event told before it, which the next resolves.
Messages
wait in a bounded queue per provider (the oldest is dropped when it is full)
that an asyncio task of its own delivers, with a few retries and backoff, through the daemon's
HTTP client factory (proxies, CA, timeouts, no redirects): a cycle never waits
for a receiver, and a dead one is a metric and one log line, not a failure.
A stop (SIGTERM, or the end of `run --once`) gives what is queued a few seconds
to leave, then says in the log each message it gave up on.

A webhook's body is JSON: the event, its status, the users, the changes as
the plan shows them, the revision and the instance; Slack's text is escaped
(`&`, `<`, `>`), so that a value quoted cannot ping `@channel` or disguise a
link. A webhook's is signed
`X-Syncd-Signature: t=<unix time>,sha256=<HMAC-SHA256 of "t.body">` so that a
receiver can check it and refuse replays. No message holds a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from syncd.core.conditions import Condition, Notice, transitions
from syncd.core.vocabulary import Code, NotificationEvent, RunResult
from syncd.errors import SettingsError, excerpt
from syncd.secretfiles import read_secret_file
from syncd.settings import http_url_problem
from syncd.visible import counted

if TYPE_CHECKING:
    import httpx

    from syncd.api.transport import Lane
    from syncd.service.cycle import CycleOutcome
    from syncd.service.metrics import Metrics
    from syncd.settings import NotifyProvider, Settings

log = structlog.get_logger("syncd.service.notifications")

#: Messages waiting at most; past it the oldest is dropped (and counted).
QUEUE_SIZE = 100
#: Tries of one message, and the first wait between two (doubling, with jitter).
ATTEMPTS = 3
FIRST_BACKOFF = 1.0
#: Users and changes named in one message at most: the rest is a count.
SHOWN = 50
#: Seconds a stop gives the queued messages to leave (those of `run --once`'s one
#: cycle, or told just before a SIGTERM): with the daemon's STOP_TIMEOUT for the
#: run in flight, well within systemd's TimeoutStopSec=15s and Kubernetes' grace.
DRAIN_TIMEOUT = 3.0


@dataclass
class _Provider:
    kind: str
    url: str
    secret: bytes | None
    events: frozenset[NotificationEvent]
    #: The metric's label: the type and the host, never the path (Slack's is a secret).
    label: str
    client: Lane | None = None
    #: Its own queue and task: an endpoint that hangs delays no other.
    queue: asyncio.Queue[tuple[Notice, str | None]] | None = None
    task: asyncio.Task[None] | None = None
    #: The message being sent, if any: not delivered when a stop cuts it off.
    sending: Notice | None = None


class Notifications:
    def __init__(self, settings: Settings, metrics: Metrics, instance: str) -> None:
        self.settings = settings
        self.metrics = metrics
        self.instance = instance
        self.providers = self.providers_of(settings)
        for provider in self.providers:  # at 0 from the start, as every label known then
            metrics.notifications_failed.labels(provider.label)
        self.holding: dict[NotificationEvent, Condition] = {}
        #: Firings queued or being sent, with the notifiers each still waits for: not
        #: told yet.
        self.unsent: Counter[Notice] = Counter()
        #: Of each event holding, the condition of its last firing delivered to every
        #: notifier: what `told` keeps while a newer firing is unsent (a held set
        #: replaced), so that the next process resolves the one the receivers have open.
        self.delivered: dict[NotificationEvent, Condition] = {}

    @staticmethod
    def providers_of(settings: Settings) -> list[_Provider]:
        """The notifiers `settings` name, their files read: a reload reads them again."""
        return [_provider(p) for p in settings.notify_providers]

    def renew(self, settings: Settings, providers: list[_Provider]) -> Notifications | None:
        """Send through `providers` from now on (a reload). One that sends what one of
        these sends, where it sends it, is kept with its queue; the ones left over are
        returned, to be stopped (drained as at a stop), or None when none is."""
        kept, retired = [], list(self.providers)
        for provider in providers:
            same = next((old for old in retired if _sends(old) == _sends(provider)), None)
            if same is None:
                self.metrics.notifications_failed.labels(provider.label)
            else:
                retired.remove(same)
            kept.append(same or provider)
        self.settings, self.providers = settings, kept  # new senders, the new transport
        self.start()
        if not retired:
            return None
        leaving = copy.copy(self)
        leaving.providers = retired
        return leaving

    def start(self) -> None:
        for provider in self.providers:
            if provider.task is None:
                provider.queue = asyncio.Queue(QUEUE_SIZE)
                provider.task = asyncio.create_task(self._deliver(provider))

    async def stop(self) -> None:
        """Deliver what is queued within DRAIN_TIMEOUT, then give up on the rest, each
        message given up on said in a log line."""
        queues = [p.queue for p in self.providers if p.task is not None and p.queue is not None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await asyncio.gather(*(queue.join() for queue in queues))
        for provider in self.providers:
            if provider.task is not None:
                provider.task.cancel()
                await asyncio.gather(provider.task, return_exceptions=True)
                provider.task = None
                self._given_up(provider)
            if provider.client is not None:
                await provider.client.aclose()
                provider.client = None

    def observe(
        self,
        now: Mapping[NotificationEvent, Condition],
        decided: frozenset[NotificationEvent],
        revision: str | None,
    ) -> None:
        """The conditions of a cycle: those in `decided` hold if in `now`, else resolve;
        the others (a cycle that could not tell) stay as they were. With no notifier,
        nothing is told: none is kept as told, for one added later to be told all."""
        if not self.providers:
            return
        current = {e: c for e, c in self.holding.items() if e not in decided}
        current.update({e: c for e, c in now.items() if e in decided})
        notices = transitions(self.holding, current)
        for notice in notices:
            self._enqueue(notice, revision)
        # One still holding is kept as it was told: what the state keeps changes only
        # when something is told.
        told = {n.condition.event for n in notices if n.status == "firing"}
        self.holding = {e: c if e in told else self.holding[e] for e, c in current.items()}
        self.delivered = {e: c for e, c in self.delivered.items() if e in self.holding}

    def told(self) -> dict[str, dict[str, Any]]:
        """The conditions told and not resolved, for the state (`recall` reads them):
        for an event whose firing is still queued, the one told before it, if any (the
        next process tells the queued one again)."""
        queued = {notice.condition.event for notice in self.unsent}
        told = {e: self.delivered.get(e) if e in queued else c for e, c in self.holding.items()}
        return {
            event: {"users": list(c.users), "message": c.message, "key": c.key}
            for event, c in told.items()
            if c is not None
        }

    def recall(self, told: Mapping[str, Any]) -> None:
        """Go on from the conditions another process on the state told (`told`)."""
        known = {str(event): event for event in NotificationEvent}
        self.holding = {
            known[event]: Condition(known[event], tuple(c["users"]), c["message"], key=c["key"])
            for event, c in told.items()
            if event in known  # an event a later version told, unknown here: dropped
        }
        self.delivered = dict(self.holding)

    def happened(self, condition: Condition, revision: str | None) -> None:
        """A one-shot event: told once, with no resolution."""
        self._enqueue(Notice(condition, "firing"), revision)

    def _enqueue(self, notice: Notice, revision: str | None) -> None:
        for provider in self.providers:
            queue = provider.queue
            if queue is None or notice.condition.event not in provider.events:
                continue
            if queue.full():
                self._ended(queue.get_nowait()[0])  # given up on, as after its retries
                queue.task_done()  # else a stop would wait for it
                self.metrics.notifications_failed.labels(provider.label).inc()
                log.warning("notification_dropped", provider=provider.label, size=QUEUE_SIZE)
            queue.put_nowait((notice, revision))
            if notice.status == "firing":
                self.unsent[notice] += 1

    def _ended(self, notice: Notice) -> None:
        """`notice`'s delivery ended, sent or given up on after its retries: told."""
        if notice.status != "firing":
            return
        self.unsent[notice] -= 1
        # Told once every notifier's delivery of it ended, whatever is queued behind it
        # (each queue is in order: an event's firings end in the order they were told).
        if not self.unsent[notice]:
            del self.unsent[notice]
            if notice.condition.event in self.holding:  # not resolved meanwhile
                self.delivered[notice.condition.event] = notice.condition

    async def _deliver(self, provider: _Provider) -> None:
        assert provider.queue is not None
        while True:
            notice, revision = await provider.queue.get()
            provider.sending = notice
            body = self._body(provider, notice, revision)
            try:
                await self._send(provider, body)
            except Exception as error:  # a receiver's failure is never the daemon's
                self.metrics.notifications_failed.labels(provider.label).inc()
                log.warning(
                    "notification_failed",
                    provider=provider.label,
                    condition=notice.condition.event,
                    error=str(error)[:200],
                )
            # Not when cancelled: a stop then says the message was not delivered (and
            # it stays unsent, told again by the next process).
            self._ended(notice)
            provider.sending = None
            provider.queue.task_done()

    def _given_up(self, provider: _Provider) -> None:
        """Say each message a stop left undelivered (in flight, or still queued)."""
        left = [] if provider.sending is None else [provider.sending]
        provider.sending = None
        while provider.queue is not None and not provider.queue.empty():
            left.append(provider.queue.get_nowait()[0])
        for notice in left:
            self.metrics.notifications_failed.labels(provider.label).inc()
            log.warning(
                "notification_not_delivered",
                provider=provider.label,
                condition=notice.condition.event,
                status=notice.status,
                reason=f"stopping: not delivered within {DRAIN_TIMEOUT:g} s",
            )

    async def _send(self, provider: _Provider, body: bytes) -> None:
        from syncd.api.transport import Lane, tls_context

        if provider.client is None:
            provider.client = Lane(self.settings, tls_context(self.settings), provider.url)
        delay = FIRST_BACKOFF
        for attempt in range(1, ATTEMPTS + 1):
            # identity: a reason quoted from the answer must be text, not gzip.
            headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
            if provider.secret is not None:
                headers["X-Syncd-Signature"] = sign(provider.secret, body, int(time.time()))
            try:
                async with provider.client.stream(
                    "POST", provider.url, headers, content=body
                ) as response:
                    status, said = response.status_code, await _first_bytes(response)
            except Exception:
                if attempt == ATTEMPTS:
                    raise
            else:
                if status < 300:
                    return
                if attempt == ATTEMPTS or status < 500:
                    raise RuntimeError(
                        f"HTTP {status}: {excerpt(said.decode('utf-8', 'replace'))}"
                    )
            await asyncio.sleep(delay * random.uniform(1, 1.5))
            delay *= 2

    def _body(self, provider: _Provider, notice: Notice, revision: str | None) -> bytes:
        condition = notice.condition
        users = list(condition.users)
        if provider.kind == "slack":
            who = f" ({len(users)} users: {', '.join(users[:10])})" if users else ""
            text = f"syncd {notice.status}: {condition.event}{who}. {condition.message}".strip()
            return json.dumps({"text": _slack_escaped(f"{text} [{self.instance}]")}).encode()
        document: dict[str, Any] = {
            "event": str(condition.event),
            "status": notice.status,
            "users": users[:SHOWN],
            "users_total": len(users),
            "changes": list(condition.changes[:SHOWN]),
            "message": condition.message,
            "revision": revision,
            "instance": self.instance,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return json.dumps(document, ensure_ascii=False).encode()


#: The conditions a planned cycle decides; the others only when the source is read.
_PLANNED = frozenset(
    {
        NotificationEvent.DRIFT_DETECTED,
        NotificationEvent.APPLY_FAILED,
        NotificationEvent.DOES_NOT_CONVERGE,
        NotificationEvent.GUARD_HELD,
    }
)


def conditions_of(
    outcome: CycleOutcome,
) -> tuple[dict[NotificationEvent, Condition], frozenset[NotificationEvent]]:
    """The conditions that hold after a cycle, and which ones it could tell about."""
    held: dict[NotificationEvent, Condition] = {}
    decided = {NotificationEvent.SOURCE_FAILED}
    if outcome.source_failed or outcome.warning is not None:
        held[NotificationEvent.SOURCE_FAILED] = Condition(
            NotificationEvent.SOURCE_FAILED, message=outcome.warning or outcome.message
        )
    # Only a cycle that asked the API can tell: one that read nothing (its source
    # failed, every user answered from the cache) leaves the condition as it was.
    if outcome.api_down or outcome.api_answered:
        decided.add(NotificationEvent.API_DOWN)
    if outcome.api_down:
        held[NotificationEvent.API_DOWN] = Condition(
            NotificationEvent.API_DOWN, message=outcome.message
        )
    if outcome.result == RunResult.BLOCKED:  # refused whole: the guard says why
        held[NotificationEvent.GUARD_HELD] = Condition(
            NotificationEvent.GUARD_HELD,
            tuple(sorted({change["user"] for change in outcome.refused})),
            outcome.message,
            tuple(outcome.refused),
            # Keyed as the planned cycle keys it: a set the daemon held that is still
            # `held` is not told cleared (nor again) by a cycle that refused whole.
            _sets_key(outcome.held_sets),
        )
        decided.add(NotificationEvent.GUARD_HELD)
        if outcome.drift_users is not None:  # it planned: nothing applied, all pending
            decided.add(NotificationEvent.DRIFT_DETECTED)
    elif not outcome.planned or outcome.all_suspended:
        return held, frozenset(decided)
    else:
        decided |= _PLANNED
    if outcome.pending:
        users = tuple(sorted({change["user"] for change in outcome.pending}))
        held[NotificationEvent.DRIFT_DETECTED] = Condition(
            NotificationEvent.DRIFT_DETECTED,
            users,
            f"{counted(len(outcome.pending), 'change')} pending for {counted(len(users), 'user')}",
            tuple(outcome.pending),
        )
    if outcome.held:  # `partial` too, when a user failed beside the held deletions
        users = tuple(sorted({change["user"] for change in outcome.held}))
        held[NotificationEvent.GUARD_HELD] = Condition(
            NotificationEvent.GUARD_HELD,
            users,
            outcome.message,
            tuple(outcome.held),
            _sets_key(outcome.held_sets),
        )
    for event, code in (
        (NotificationEvent.DOES_NOT_CONVERGE, Code.DOES_NOT_CONVERGE),
        (NotificationEvent.APPLY_FAILED, Code.WRITE_FAILED),
    ):
        users = tuple(sorted(name for name, p in outcome.failing.items() if p.code == code))
        if users:
            messages = [_about(u, outcome.failing[u].message) for u in users[:3]]
            held[event] = Condition(event, users, "; ".join(messages))
    return held, frozenset(decided)


def _sets_key(ids: list[str]) -> str:
    """The key of guard_held: the held sets it is about (none: the guard's refusal)."""
    return f"set{'s' if len(ids) > 1 else ''} {', '.join(ids)}" if ids else ""


def _about(user: str, message: str) -> str:
    """`message` said of `user`: a failed write's names the user already."""
    return message if message.startswith(f"{user}: ") else f"{user}: {message}"


def _slack_escaped(text: str) -> str:
    """`text` shown as written in Slack's mrkdwn: its three control characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sign(secret: bytes, body: bytes, at: int) -> str:
    """The X-Syncd-Signature of `body` sent at Unix time `at`."""
    digest = hmac.new(secret, f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},sha256={digest}"


def _sends(provider: _Provider) -> tuple[object, ...]:
    return provider.kind, provider.url, provider.secret, provider.events


def _provider(settings: NotifyProvider) -> _Provider:
    url = settings.url
    if settings.url_file is not None:
        url = read_secret_file(settings.url_file, what="notifier URL file", refused_then="")
        if (problem := http_url_problem(url)) is not None:  # as NotifyProvider checks url
            raise SettingsError(f"notifier URL file {settings.url_file}: the URL in it {problem}")
    assert url is not None  # NotifyProvider checks it
    secret = None
    if settings.secret_file is not None:
        secret = read_secret_file(
            settings.secret_file, what="notifier secret file", refused_then=""
        ).encode()
    host = urlsplit(url).hostname or "unknown"
    return _Provider(
        settings.type, url, secret, frozenset(settings.events), f"{settings.type}:{host}"
    )


#: Of a receiver's answer, what is read: enough for its reason, and a short answer read
#: whole leaves the connection open for the next message (an unread one closes it).
ANSWER_READ = 4096


async def _first_bytes(response: httpx.Response) -> bytes:
    said = b""
    async for chunk in response.aiter_raw():
        said += chunk
        if len(said) >= ANSWER_READ:
            break
    return said[:ANSWER_READ]

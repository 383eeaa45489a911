"""What a server says of its rate limit, and when the next request may start.

`read_budget` reads three conventions of rate-limit headers as one; the
`Pacer` holds each request until SYNCD_MAX_RATE, the server's budget and any
429's pause allow it. Its rules are plain methods of an injected clock; only
`turn()` waits. Why: docs/architecture.md, "How syncd paces and limits its
requests".
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import structlog

from syncd.api.retrying import LONG_WAIT
from syncd.errors import MAX_RETRY_AFTER

#: A Reset larger than this (2001-09-09 as a Unix time) is a moment, not a delay.
_UNIX_TIME: Final = 1_000_000_000
#: And larger than this, a moment in milliseconds (some gateways send that).
_UNIX_TIME_MS: Final = 1_000_000_000_000
#: When a server sends Remaining without Reset: assume its window is one second.
DEFAULT_RESET: Final = 1.0
log = structlog.get_logger("syncd.api")

_INTEGER: Final = re.compile(r"\s*(\d{1,15})\s*")
_NUMBER: Final = re.compile(r"\s*(\d{1,15}(?:\.\d{1,9})?)\s*")
# One member of a Structured Field list, between commas: a token or a quoted string,
# then its ;key=value parameters.
_MEMBER: Final = re.compile(
    r'(?:^|,)\s*("(?:[^"\\]|\\.)*"|[A-Za-z*][\w:./*%+-]*)((?:\s*;[^,;]*)*)\s*(?=,|$)'
)


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
    if (remaining := _integer(headers.get(prefix + "Remaining"))) is None:
        return None
    reset = _reset(headers.get(prefix + "Reset"), now)
    return Budget(remaining, reset, _integer(headers.get(prefix + "Limit")))


def _reset(value: str | None, now: float) -> float:
    if (match := _NUMBER.fullmatch(value or "")) is None:
        return DEFAULT_RESET
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
    quotas = dict(_members(headers.get("RateLimit-Policy", "")))
    found: list[Budget] = []
    for name, params in _members(headers.get("RateLimit", "")):
        if (remaining := _integer(params.get("r"))) is None:
            continue
        reset = _integer(params.get("t"))
        policy = quotas.get(name, {})
        limit = _integer(policy.get("q", policy.get("l")))  # "l" before draft -08
        found.append(Budget(remaining, DEFAULT_RESET if reset is None else reset, limit))
    return min(found, key=lambda budget: budget.remaining, default=None)


def _members(field: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The members of a Structured Field list, each a name and its parameters (RFC 8941)."""
    for match in _MEMBER.finditer(field[:4096]):  # a header of more is not a rate limit
        pairs = (param.partition("=") for param in match.group(2).split(";")[1:])
        yield match.group(1).strip('"'), {key.strip(): value.strip() for key, _, value in pairs}


#: Below this share of the quota left, what is left is spread until the Reset.
RESERVE = 0.5


class Pacer:
    """When requests may start: the operator's cap, the server's budget, and pauses."""

    def __init__(
        self, max_rate: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_rate = max_rate
        self._clock = clock
        #: No request starts before this moment (a 429's Retry-After).
        self.not_before = -math.inf
        self._previous = -math.inf
        # The budget as this client reckons it: what the last answer left, less what was
        # sent since, until the moment the quota is whole again (None: no budget known).
        self._left: float | None = None
        self._whole_at = -math.inf
        self._quota = 0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @property
    def rate(self) -> float | None:
        """Requests per second at most, now: the lower of the cap and the server's budget."""
        rates = [] if self.max_rate is None else [self.max_rate]
        self._renew()
        left, until_whole = self._left, self._whole_at - self._clock()
        if left is not None and left < self._quota * RESERVE and until_whole > 0:
            spread = max(left, 1) / until_whole
            # Nor is a spread of more than MAX_RETRY_AFTER between two requests kept (a Reset
            # hours or, sent by mistake, centuries away): as for a spent budget, see below.
            if 1 / spread <= MAX_RETRY_AFTER:
                rates.append(spread)
        return min(rates, default=None)

    def allowed_at(self) -> float:
        """The earliest moment the next request may start."""
        by_rate = -math.inf if (rate := self.rate) is None else self._previous + 1 / rate
        at = max(by_rate, self.not_before)
        spent = self._left is not None and self._left < 1
        # Spent: wait for the quota to be whole again, unless that is longer than syncd
        # waits; then the server's 429 says how long, and fails the user.
        if spent and self._whole_at - self._clock() <= MAX_RETRY_AFTER:
            at = max(at, self._whole_at)
        return at

    def started(self) -> None:
        """A request starts now: the next one waits its interval from now."""
        self._renew()  # one that starts as the quota is whole again spends from the new one
        if self._left is not None:
            self._left -= 1
        self._previous = self._clock()

    def heard(self, budget: Budget | None, on_their_way: int) -> None:
        """An answer told the server's budget (or none); `on_their_way` are still unanswered."""
        if budget is None:
            if self._left is not None:
                self._left = None
                self._changed.set()
            return
        # The others on their way reach the server after this answer left it: they spend first.
        self._left = budget.remaining - on_their_way
        self._whole_at = self._clock() + budget.reset
        self._quota = max(budget.limit or 0, budget.remaining, self._quota)
        self._changed.set()

    def unanswered(self) -> None:
        """A request got no answer: it may not have reached the server, so it spent nothing."""
        if self._left is not None:
            self._left += 1
            self._changed.set()

    def pause(self, seconds: float) -> None:
        """No request starts for `seconds` from now (one that asks too long is not kept)."""
        if 0 < seconds <= MAX_RETRY_AFTER:
            until = self._clock() + seconds
            if until > self.not_before:
                self.not_before = until
                self._changed.set()

    def _renew(self) -> None:
        """Once the moment has come, the quota is whole again, for a second as far as we know."""
        now = self._clock()
        if self._left is not None and now >= self._whole_at:
            if self._quota < 1:
                # Nobody said how much a window holds (Remaining 0 and no Limit): "whole"
                # would be nothing again, for ever. Forget the budget; the answers decide.
                self._left = None
                self._changed.set()
                return
            self._left = max(self._left, float(self._quota))
            self._whole_at = now + DEFAULT_RESET

    async def turn(self) -> None:
        """Wait until a request may start, and count it as started."""
        async with self._lock:  # first come, first served; only the first one sleeps
            said = False  # a long wait, once: minutes in silence look like a hang
            while (wait := (at := self.allowed_at()) - self._clock()) > 0:
                if wait >= LONG_WAIT and not said:
                    why = "Retry-After" if at == self.not_before else "RateLimit-Reset"
                    log.warning("api_wait", seconds=round(wait), why=why)
                    said = True
                self._changed.clear()
                # A new budget or pause changes the moment: look again when one comes.
                try:
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                except TimeoutError:
                    pass
            self.started()

"""Fault injection: which requests the sandbox delays, refuses or answers ambiguously.

Decisions only, no HTTP: `app` asks before each API request (latency, then
the global rate limit, then the per-credential one, then the error rate) and
after each successful write (the ambiguous rate). One `random.Random(fault_seed)`
drives every draw, so a run with the same seed and the same sequence of
requests meets the same faults; the latencies have a generator of their own,
so that adding jitter leaves the other faults where they were.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import Enum
from typing import Final

from syncd.sandbox.ratelimit import HEADER_FORMS, Budget, GlobalBucket

RETRY_AFTER_FORMS: Final = ("seconds", "date", "none")
#: What a throttled request is answered: over its rate, or the server unavailable for a while.
THROTTLE_STATUSES: Final = (429, 503)
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")

# Clients that rotate credentials must not grow the buckets without bound.
_MAX_BUCKETS: Final = 100_000


class Ambiguity(Enum):
    """How an applied write is answered: a 500, or no answer at all."""

    ANSWER_500 = "500"
    DROP = "drop"


@dataclass(frozen=True)
class FaultConfig:
    """The faults to inject; all zero means none.

    latency_ms      added to every API request before anything else: the mean, in ms
    latency_jitter_ms  each latency drawn evenly between latency_ms minus and plus this
    global_rate_limit  requests per second for all credentials together (a token bucket
                    of one second); above it 429, and RateLimit headers on every answer
    rate_limit_headers  how every answer tells the global bucket: "ietf" (RateLimit-Limit,
                    -Remaining, -Reset and -Policy), "x" (X-RateLimit-*), "structured"
                    (RateLimit and RateLimit-Policy of the later draft) or "none"
    error_rate      fraction of API requests answered 500 or 503 without doing anything
    rate_limit      requests per second per credential; above it 429 with Retry-After
    ambiguous_rate  fraction of successful writes answered 500 or dropped after applying
    fault_seed      seed of the random draws
    throttle_rate   fraction of API requests answered 429 with Retry-After, whatever the rate
    throttle_wait   the seconds that a throttled 429 asks to wait (default 1)
    throttle_status  the status of the answers that throttle_rate and rate_limit refuse:
                    429 (default) or 503 (unavailable, saying when to come back)
    throttle_headers  header fields added to those answers as given, after Retry-After
                    (so one given here replaces it): what an odd or hostile server sends
    retry_after     how a 429 says it: "seconds" (Retry-After: 1), "date" (an HTTP date
                    that many seconds ahead) or "none" (no Retry-After at all)
    trickle_ms      every answer's body is sent one byte at a time, this many ms apart
    set_cookie      every API answer sets a session cookie, as some load balancers do
                    (the stats count the requests that send one back: `with_cookie`)
    unanswered_writes_of  a username whose every write is neither applied nor answered,
                    held until the client gives up: a server that loses one request
    """

    latency_ms: float = 0
    error_rate: float = 0
    rate_limit: float = 0
    ambiguous_rate: float = 0
    fault_seed: int = 0
    throttle_rate: float = 0
    set_cookie: bool = False
    throttle_wait: float = 1
    retry_after: str = "seconds"
    trickle_ms: float = 0
    latency_jitter_ms: float = 0
    global_rate_limit: float = 0
    rate_limit_headers: str = "ietf"
    throttle_status: int = 429
    throttle_headers: Mapping[str, str] = field(default_factory=dict)
    unanswered_writes_of: str = ""

    def __post_init__(self) -> None:
        if self.throttle_status not in THROTTLE_STATUSES:
            raise ValueError("throttle_status: 429 or 503")
        _check_headers(self.throttle_headers)
        if not isinstance(self.unanswered_writes_of, str):
            raise ValueError("unanswered_writes_of: expected a username")
        if not isinstance(self.set_cookie, bool):
            raise ValueError("set_cookie: must be true or false")
        if self.retry_after not in RETRY_AFTER_FORMS:
            raise ValueError(f"retry_after: one of {', '.join(RETRY_AFTER_FORMS)}")
        if self.rate_limit_headers not in HEADER_FORMS:
            raise ValueError(f"rate_limit_headers: one of {', '.join(HEADER_FORMS)}")
        # Every field typed float (a string here: the annotations are not evaluated).
        for name in (f.name for f in fields(self) if f.type == "float"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name}: must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be a finite number >= 0")
        for name in ("error_rate", "ambiguous_rate", "throttle_rate"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name}: must be between 0 and 1")
        if isinstance(self.fault_seed, bool) or not isinstance(self.fault_seed, int):
            raise ValueError("fault_seed: must be an integer")
        if self.latency_jitter_ms > self.latency_ms:
            # Evenly on both sides of the mean, and never below zero.
            raise ValueError("latency_jitter_ms: must not exceed latency_ms")

    @classmethod
    def from_mapping(cls, data: object) -> FaultConfig:
        """From the `faults` of a reset body; ValueError names what is wrong."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError("faults: expected an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ValueError(f"faults: unknown key {unknown[0][:100]!r}")
        return cls(**data)


def _check_headers(headers: object) -> None:
    """ValueError unless `headers` are fields an answer can carry (names, latin-1 values)."""
    if not isinstance(headers, Mapping):
        raise ValueError("throttle_headers: expected an object")
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError("throttle_headers: a name is not a header field name")
        if not isinstance(value, str) or len(value) > 1000 or "\r" in value or "\n" in value:
            raise ValueError(f"throttle_headers: {name}: expected one line of text")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"throttle_headers: {name}: not latin-1") from None


class Faults:
    """The fault state of a running sandbox: the random draws and the rate buckets."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.fault_seed)
        self._latencies = random.Random(f"latency {config.fault_seed}")
        self._global = GlobalBucket(config.global_rate_limit) if config.global_rate_limit else None
        # credential -> (tokens left, time of the last refill): a token bucket
        # of `rate_limit` tokens refilled at `rate_limit` per second.
        self._buckets: dict[str, tuple[float, float]] = {}

    def latency(self) -> float:
        """Seconds to wait before handling an API request: the mean, give or take the jitter.

        Evenly spread, so that the mean is the configured one and no answer is
        slower than mean + jitter: a model of a network's round trip, not of
        its rare stalls.
        """
        mean, jitter = self.config.latency_ms, self.config.latency_jitter_ms
        if jitter:
            return self._latencies.uniform(mean - jitter, mean + jitter) / 1000
        return mean / 1000

    def global_budget(self) -> Budget | None:
        """A token of the global bucket, and where it stands; None without a global limit."""
        return None if self._global is None else self._global.take()

    def retry_after(self, credential: str) -> float | None:
        """None when `credential` may make a request now, else the seconds to wait."""
        throttle = self.config.throttle_rate
        if throttle and self._random.random() < throttle:
            return self.config.throttle_wait
        rate = self.config.rate_limit
        if not rate:
            return None
        now = time.monotonic()
        tokens, last = self._buckets.get(credential, (max(rate, 1.0), now))
        tokens = min(max(rate, 1.0), tokens + (now - last) * rate)
        if tokens >= 1:
            if len(self._buckets) >= _MAX_BUCKETS and credential not in self._buckets:
                self._buckets.clear()
            self._buckets[credential] = (tokens - 1, now)
            return None
        self._buckets[credential] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / rate))

    def injected_error(self) -> int | None:
        """500 or 503 for a request to fail without doing anything, else None."""
        rate = self.config.error_rate
        if rate and self._random.random() < rate:
            return self._random.choice((500, 503))
        return None

    def ambiguity(self) -> Ambiguity | None:
        """How to answer a write that has just been applied, or None to answer it truly."""
        rate = self.config.ambiguous_rate
        if rate and self._random.random() < rate:
            return self._random.choice((Ambiguity.ANSWER_500, Ambiguity.DROP))
        return None


def retry_after_header(form: str, seconds: float) -> dict[str, str]:
    """The Retry-After header of a 429, in the form the faults ask for (none: no header)."""
    if form == "none":
        return {}
    if form == "date":
        moment = datetime.fromtimestamp(time.time() + seconds, UTC)
        return {"Retry-After": format_datetime(moment, usegmt=True)}
    return {"Retry-After": str(math.ceil(seconds))}

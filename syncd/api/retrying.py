"""When to send a request again: the retry policy's waits, and Retry-After as a server says it."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from syncd.errors import MAX_RETRY_AFTER, ApiError, RateLimited, ServerError, TimedOut

_DELAY_SECONDS = re.compile(r"[0-9]{1,10}")
#: Seconds of a wait for the server from which it is logged as a warning, not at debug.
LONG_WAIT = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0
    #: A 429 without Retry-After waits this long first, then twice as long each time.
    rate_limited_delay: float = 1.0
    rate_limited_max_delay: float = 60.0

    def delay(self, attempt: int, error: ApiError) -> float:
        """Seconds to wait before retry number `attempt` (1-based) after `error`."""
        # A 429 or a 503 may say when to come back: sooner is wasted. More than we wait
        # is a 429's WaitTooLong, not retried, and for a 503 left to our own backoff.
        retry_after = error.retry_after if isinstance(error, RateLimited | ServerError) else None
        if retry_after is not None and retry_after <= MAX_RETRY_AFTER:
            return retry_after
        if isinstance(error, RateLimited):
            # The server is overloaded and did not say for how long: back off for real,
            # from a second, with a little jitter so that the workers do not return together.
            ceiling = self.rate_limited_delay * 2.0 ** (attempt - 1)
            return min(self.rate_limited_max_delay, ceiling) * random.uniform(1.0, 1.25)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # full jitter spreads a burst of retries


def read_retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in either form of RFC 9110: delay-seconds or an HTTP date.

    A value that is neither counts as absent: a server's odd header must never
    fail a request, only leave the wait to our own backoff.
    """
    value = headers.get("Retry-After", "").strip()
    # ASCII digits only (str.isdigit() takes "²", which float() refuses), and no more
    # than any wait could mean: 10 digits are three centuries.
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:  # a date without a zone is a TypeError, subtracted from an aware one
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # neither form, or a date past what datetime holds: our own backoff


#: Every value `retry_reason` gives: the label of syncd_http_retries_total.
RETRY_REASONS = ("timeout", "no_answer", "rate_limited", "server_error")


def retry_reason(error: ApiError) -> str:
    """Why a request is sent again, in a word."""
    if isinstance(error, TimedOut):
        return "timeout"
    if isinstance(error, RateLimited):
        return "rate_limited"
    return "server_error" if isinstance(error, ServerError) else "no_answer"

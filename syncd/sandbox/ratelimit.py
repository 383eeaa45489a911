"""The sandbox's global rate limit: one token bucket for every caller, and the headers it sends.

A real accounts API limits requests per client (an address or an account),
not per user credential, so this bucket is shared by all credentials: `rate`
tokens a second, holding at most one second's worth (at least one token).
A request that finds a token takes it; one that does not is answered 429
and takes nothing, as a server that refuses before doing any work would.

Every answer, successful or not, says where the bucket stands. The sandbox
speaks the fields of the IETF httpapi draft up to -06 by default
(`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`, with
`RateLimit-Policy`): they are what API gateways send today, and
`X-RateLimit-*`, the older convention, carries the same three numbers. The
draft's later form (`RateLimit-Policy: "name";q=…;w=…` with `RateLimit:
"name";r=…;t=…`, from -07 on) is still moving, so it is a choice for tests,
as are `X-RateLimit-*` (Reset as a Unix time, as GitHub sends it) and none.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Final

#: How the bucket is told: the draft's three fields, the X- convention, the later draft, none.
HEADER_FORMS: Final = ("ietf", "x", "structured", "none")


@dataclass(frozen=True, slots=True)
class Budget:
    """Where the bucket stands after one request: whether it was let through, and what is left."""

    allowed: bool
    #: Tokens the bucket holds when full: the quota of one window.
    limit: int
    #: Whole tokens left for the requests that follow.
    remaining: int
    #: Whole seconds until the bucket is full again (0: it is full).
    reset: int
    #: Whole seconds of one window: the time a bucket takes to fill from empty.
    window: int
    #: Seconds until the next token, for Retry-After (only when not allowed).
    retry_after: float

    def headers(self, form: str) -> dict[str, str]:
        """The header fields that say so, in `form` (one of HEADER_FORMS)."""
        if form == "ietf":
            return {
                "RateLimit-Limit": str(self.limit),
                "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset),
                "RateLimit-Policy": f"{self.limit};w={self.window}",
            }
        if form == "x":
            # A Unix time, as GitHub's X-RateLimit-Reset is: the other common reading.
            at = math.ceil(time.time() + self.reset)
            return {
                "X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(at),
            }
        if form == "structured":
            return {
                "RateLimit-Policy": f'"global";q={self.limit};w={self.window}',
                "RateLimit": f'"global";r={self.remaining};t={self.reset}',
            }
        return {}


class GlobalBucket:
    """A token bucket of `rate` tokens a second shared by every caller."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self._tokens = self.capacity
        self._last = time.monotonic()

    def take(self) -> Budget:
        """Take a token if there is one; either way, where the bucket stands then."""
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        allowed = self._tokens >= 1
        if allowed:
            self._tokens -= 1
        missing = self.capacity - self._tokens
        return Budget(
            allowed=allowed,
            limit=math.floor(self.capacity),
            remaining=math.floor(self._tokens),
            reset=math.ceil(missing / self.rate) if missing > 1e-9 else 0,
            window=math.ceil(self.capacity / self.rate),
            retry_after=0.0 if allowed else (1 - self._tokens) / self.rate,
        )

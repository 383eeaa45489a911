"""How many requests may be in flight: a limit that adapts between 1 and SYNCD_CONCURRENCY.

AIMD, as TCP's congestion window and Netflix's concurrency-limits (AIMDLimit)
move, from what the server's answers say:

- It starts at one request and grows by one with each answer (slow start:
  it doubles every round trip) until the first sign of trouble, then by one
  every `limit` answers (about one a round trip).
- It grows only while the requests in flight use at least half of it: a
  limit that is not used has not been shown to work.
- A 429 or a 503 (the server is overloaded, or this client over its rate)
  halves it; a rise in latency multiplies it by 0.9. Latency rises when a
  queue builds, at the server or in this process: the average of the last
  ten or so answers against the least such average seen (which forgets
  slowly, so a server that has become slower for good is accepted as it
  is), with a tolerance of twice as slow, which an even jitter of ±50 %
  of the mean does not reach.
- Latency is the server's signal only as far as this process is not the
  cause: a client whose own event loop is slow (CPU-bound, or starved of
  CPU) sees its answers wait for it, and fewer requests in flight would only
  leave the server idle between them. So a rise that the loop's own delay
  (`own_delay`, measured by syncd.api.control) could explain lowers nothing:
  an answer waits about two turns of the loop, and a rise to `tolerance`
  times the best is (tolerance - 1) × best.
- One decrease per round trip: the answers to requests already in flight
  when it decreased are the same congestion, not more of it.
- The answer to the first request on a new connection is not a latency
  sample: it carries the TCP and TLS handshakes.

`AdaptiveLimit` is the rule, with an injected clock; `Slots` is the gate that
requests wait at, in order, and that opens as the limit grows.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LimitRules:
    """The constants of the rule (the defaults are those the bench was run with)."""

    initial: float = 1.0
    #: Multiplied by this on a 429 or a 503.
    overload_backoff: float = 0.5
    #: Multiplied by this when answers come back `tolerance` times slower than at best.
    latency_backoff: float = 0.9
    tolerance: float = 2.0
    #: Weight of each new answer in the recent average of latency (about ten answers).
    recent_weight: float = 0.1
    #: How fast the best average forgets, per answer, towards the recent one.
    forget: float = 0.001


class AdaptiveLimit:
    """The number of requests that may be in flight, moved by what each answer says."""

    def __init__(
        self,
        maximum: int,
        rules: LimitRules | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules or LimitRules()
        self.maximum = maximum
        self.limit = min(float(maximum), max(1.0, self.rules.initial))
        self.slow_start = True
        self._clock = clock
        #: The recent average of latency, and the least of it seen (forgetting slowly).
        self.recent: float | None = None
        self.best: float | None = None
        # Decreases before this moment are the same congestion as the last one.
        self._calm_until = -math.inf
        self._calm_cause = ""  # what the last decrease was for
        #: Decreases so far, by cause: what a run can report.
        self.backoffs = collections.Counter[str]()
        #: Seconds one turn of this process's event loop takes now: its own delay.
        self.own_delay = 0.0

    @property
    def current(self) -> int:
        """Requests that may be in flight now: at least 1, at most the maximum."""
        return max(1, min(self.maximum, math.floor(self.limit)))

    def overloaded(self) -> None:
        """A 429 or a 503: halve (once per round trip)."""
        self._decrease(self.rules.overload_backoff, "overload")

    def answered(self, seconds: float | None, in_flight: int) -> None:
        """An answer that took `seconds` (None: not a sample) with `in_flight` requests out."""
        rules = self.rules
        if seconds is not None and seconds > 0:
            if self.recent is None or self.best is None:
                self.recent = self.best = seconds
            else:
                self.recent += rules.recent_weight * (seconds - self.recent)
                self.best = min(self.recent, self.best + rules.forget * (self.recent - self.best))
            rise = self.recent - self.best
            if rise > (rules.tolerance - 1) * self.best > 2 * self.own_delay:
                self._decrease(rules.latency_backoff, "latency")
                return
        if in_flight * 2 < self.current:
            return  # the limit is not used: nothing says a higher one would work
        step = 1.0 if self.slow_start else 1.0 / self.limit
        self.limit = min(float(self.maximum), self.limit + step)

    def _decrease(self, factor: float, cause: str) -> None:
        now = self._clock()
        self.slow_start = False
        # Within a round trip of a decrease, the same congestion says nothing new;
        # but a 429 after a cut for latency is the server's own word, and halves.
        if now < self._calm_until and not (cause == "overload" and self._calm_cause == "latency"):
            return
        self._calm_cause = cause
        self.limit = max(1.0, self.limit * factor)
        self.backoffs[cause] += 1
        # One round trip: what is in flight now was sent before this decrease.
        self._calm_until = now + (self.recent or 0.1)


class Slots:
    """At most `limit.current` holders at once; waiters are served in order."""

    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self.in_use < self.limit.current and not self._waiters:
            self.in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted as it was cancelled: hand the slot on
            elif waiter in self._waiters:
                # Not there if wake() came first: it drops the cancelled and grants them nothing.
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self.wake()

    def wake(self) -> None:
        """Let waiters in while the limit has room (after a release, or when it grew)."""
        while self._waiters and self.in_use < self.limit.current:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.in_use += 1

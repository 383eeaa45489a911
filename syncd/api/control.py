"""How many requests may be in flight and when each may start, taught by every answer.

`RateControl` is the process's controller per API: an AIMD limit between 1 and
SYNCD_CONCURRENCY (`AdaptiveLimit`, with the gate `Slots` that requests wait
at, in order) and the pacer (syncd.api.pacing). Why each rule is as it is:
docs/architecture.md, "How syncd paces and limits its requests".
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
import weakref
from collections.abc import Callable, Mapping

from syncd.api.pacing import Pacer, read_budget
from syncd.api.retrying import read_retry_after
from syncd.settings import Settings

#: Seconds between two measures of how long a turn of the event loop takes, and the
#: weight of each new measure in its average.
LOOP_EVERY = 0.1
LOOP_WEIGHT = 0.2


class AdaptiveLimit:
    """The number of requests that may be in flight, moved by what each answer says."""

    #: Multiplied by this on a 429, a 503 or a timeout.
    OVERLOAD_BACKOFF = 0.5
    #: Multiplied by this when answers come back TOLERANCE times slower than at best.
    LATENCY_BACKOFF = 0.9
    TOLERANCE = 2.0
    #: Weight of each new answer in the recent average of latency (about ten answers).
    RECENT_WEIGHT = 0.1
    #: How fast the best average forgets, per answer, towards the recent one.
    FORGET = 0.001

    def __init__(self, maximum: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = maximum
        self.limit = 1.0
        #: Doubling each round trip, until the first sign of overload.
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
        """A 429, a 503 or a timeout: halve (once per round trip)."""
        self._decrease(self.OVERLOAD_BACKOFF, "overload")

    def answered(self, seconds: float | None, in_flight: int) -> None:
        """An answer that took `seconds` (None: not a sample) with `in_flight` requests out."""
        if seconds is not None and seconds > 0:
            if self.recent is None or self.best is None:
                self.recent = self.best = seconds
            else:
                self.recent += self.RECENT_WEIGHT * (seconds - self.recent)
                self.best = min(self.recent, self.best + self.FORGET * (self.recent - self.best))
            rise = self.recent - self.best
            if rise > (self.TOLERANCE - 1) * self.best > 2 * self.own_delay:
                self._decrease(self.LATENCY_BACKOFF, "latency")
                return
        if in_flight * 2 < self.current:
            return  # the limit is not used: nothing says a higher one would work
        step = 1.0 if self.slow_start else 1.0 / self.limit
        self.limit = min(float(self.maximum), self.limit + step)

    def _decrease(self, factor: float, cause: str) -> None:
        now = self._clock()
        self.slow_start = False
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


class RateControl:
    """Admits each request when the limit and the pacer allow, and learns from its answer."""

    def __init__(self, maximum: int, max_rate: float | None, adaptive: bool) -> None:
        self.adaptive = adaptive
        self.limit = AdaptiveLimit(maximum)
        if not adaptive:
            self.limit.limit = float(maximum)
        self.slots = Slots(self.limit)
        self.pacer = Pacer(max_rate)
        self._next_loop_measure = -math.inf
        #: Requests admitted and not done: sent, or about to be (a slot may wait for the pacer).
        self.in_flight = 0

    @classmethod
    def shared(cls, settings: Settings) -> RateControl:
        """The controller of this event loop for the API and these settings, made once;
        outside a loop, a new one. Other settings (a SIGHUP) make another: the old one's
        history was for rules that no longer hold."""
        try:
            controls = _SHARED.setdefault(asyncio.get_running_loop(), {})
        except RuntimeError:
            controls = {}
        key = (settings.api_url, settings.concurrency, settings.max_rate, settings.adaptive)
        return controls.get(key) or controls.setdefault(key, cls(*key[1:]))  # made once

    async def admit(self) -> None:
        """Wait for a slot and for the pacer; `done()` must follow, whatever happens."""
        await self.slots.acquire()
        try:
            await self.pacer.turn()
        except BaseException:
            self.slots.release()
            raise
        self.in_flight += 1
        now = time.monotonic()
        if now >= self._next_loop_measure:
            self._next_loop_measure = now + LOOP_EVERY
            # How long until a callback asked for now runs: one turn of the loop.
            asyncio.get_running_loop().call_soon(self._loop_turned, now)

    def answered(
        self, status: int, headers: Mapping[str, str], seconds: float, new_connection: bool
    ) -> None:
        """What one answer teaches: call before `done()` for the same request."""
        if not self.adaptive:
            return
        budget = read_budget(headers, time.time())
        self.pacer.heard(budget, self.in_flight - 1)
        if status not in (429, 503):
            self.limit.answered(None if new_connection else seconds, self.in_flight)
            self.slots.wake()
            return
        self.limit.overloaded()  # the server overloaded, or this client over its limit
        if status == 429:
            # The limit is this client's: every request waits, not just this one. Not told
            # for how long, by Retry-After or a budget: a second, as RetryPolicy waits.
            retry_after = read_retry_after(headers)
            if retry_after is not None or budget is None:
                self.pacer.pause(1.0 if retry_after is None else retry_after)

    def timed_out(self) -> None:
        """No answer within SYNCD_TIMEOUT: a sign of overload, as a 429 or a 503 is."""
        if self.adaptive:
            self.limit.overloaded()

    def done(self, *, answered: bool = True) -> None:
        """The request is over (`answered`: an answer came, any answer): its slot is free."""
        self.in_flight -= 1
        if self.adaptive and not answered:
            self.pacer.unanswered()
        self.slots.release()

    def _loop_turned(self, asked: float) -> None:
        delay = time.monotonic() - asked
        self.limit.own_delay += LOOP_WEIGHT * (delay - self.limit.own_delay)


# Weak: a loop that is gone (each `asyncio.run` of a command) takes its controllers along.
_SHARED: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, int, float | None, bool], RateControl]
] = weakref.WeakKeyDictionary()

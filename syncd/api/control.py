"""The process's rate control: the concurrency limit and the pacer, taught by every answer.

A server limits its clients (an address, an account), not each user
credential nor each run, so there is one RateControl per API for all the
requests of the process (`RateControl.shared`): the daemon makes a client
per cycle, and the next one must not forget what the last one spent, the
rate it started at, or a pause that a 429 asked for. One per event loop in
fact: its waits belong to the loop they were made in, and the daemon runs
every cycle in one.
Each request passes `admit()` before it is sent (syncd.api.client): first
a slot of the adaptive limit (syncd.api.concurrency), then its turn by the
pacer (syncd.api.pacing). When its answer comes, `answered()` tells both:
the budget in its RateLimit fields, a 429's Retry-After (a pause for every
request), the latency, an overload.

With `SYNCD_ADAPTIVE=false` the limit stays at SYNCD_CONCURRENCY and the
headers are not read: only SYNCD_MAX_RATE paces, and each 429 waits its own
Retry-After, as syncd did before.

Every `LOOP_EVERY` seconds it also measures how long a turn of the event
loop takes: the delay of this process's own, which a latency rise must
exceed before it counts as the server's (syncd.api.concurrency).

`samples` records the limit, the requests in flight and the rate every
`SAMPLE_EVERY` seconds while requests flow (a bounded list): how the
controller settles, for a bench or a metric.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from syncd.api.budget import Budget, read_budget
from syncd.api.concurrency import AdaptiveLimit, LimitRules, Slots
from syncd.api.pacing import Pacer

#: Seconds between two samples of the controller's state.
SAMPLE_EVERY = 1.0
#: Samples kept: an hour of requests.
MAX_SAMPLES = 3600
#: Answers that say the server is overloaded or this client over its limit.
OVERLOAD = frozenset({429, 503})
#: Seconds between two measures of how long a turn of the event loop takes.
LOOP_EVERY = 0.1
#: Weight of each new measure in its average.
LOOP_WEIGHT = 0.2


@dataclass(frozen=True, slots=True)
class Sample:
    """The controller at one moment."""

    #: Seconds since the first request.
    at: float
    limit: int
    in_flight: int
    #: Requests per second the pacer allows (None: no rate limit known).
    rate: float | None


class RateControl:
    """Admits each request when the limit and the pacer allow, and learns from its answer."""

    def __init__(
        self,
        maximum: int,
        *,
        max_rate: float | None = None,
        adaptive: bool = True,
        rules: LimitRules | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.adaptive = adaptive
        self.limit = AdaptiveLimit(maximum, rules, clock)
        if not adaptive:
            self.limit.limit = float(maximum)
        self.slots = Slots(self.limit)
        self.pacer = Pacer(max_rate, clock)
        self._clock = clock
        self._wall_clock = wall_clock
        self._next_loop_measure = -math.inf
        self._first: float | None = None
        self._next_sample = 0.0
        self.samples: list[Sample] = []
        #: 429 answers seen, and the last budget a server told.
        self.rate_limited = 0
        self.budget: Budget | None = None
        #: Requests admitted and not done: sent, or about to be (a slot may wait for the pacer).
        self.in_flight = 0

    @classmethod
    def shared(
        cls, api_url: str, maximum: int, *, max_rate: float | None, adaptive: bool
    ) -> RateControl:
        """The controller of this event loop for `api_url` and these settings, made once.

        Other settings (a SIGHUP that changed them) make another: the old one's
        history was for rules that no longer hold. Outside a loop, a new one.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return cls(maximum, max_rate=max_rate, adaptive=adaptive)
        controls = _SHARED.setdefault(loop, {})
        key = (api_url, maximum, max_rate, adaptive)
        control = controls.get(key)
        if control is None:
            control = controls[key] = cls(maximum, max_rate=max_rate, adaptive=adaptive)
        return control

    async def admit(self) -> None:
        """Wait for a slot and for the pacer; `done()` must follow, whatever happens."""
        await self.slots.acquire()
        try:
            await self.pacer.turn()
        except BaseException:
            self.slots.release()
            raise
        self.in_flight += 1
        self._sample()

    def answered(
        self,
        status: int,
        headers: Mapping[str, str],
        seconds: float,
        *,
        retry_after: float | None,
        new_connection: bool,
    ) -> None:
        """What one answer teaches: call before `done()` for the same request."""
        if status == 429:
            self.rate_limited += 1
            # The limit is this client's: every request waits, not just this one.
            if self.adaptive and retry_after is not None:
                self.pacer.pause(retry_after)
        if not self.adaptive:
            return
        self.budget = read_budget(headers, self._wall_clock())
        # The others in flight reach the server after this answer left it: they spend first.
        self.pacer.heard(self.budget, self.in_flight - 1)
        if status in OVERLOAD:
            self.limit.overloaded()
            if status == 429 and retry_after is None and self.budget is None:
                # Overloaded, and not told for how long: a second, as RetryPolicy waits.
                self.pacer.pause(1.0)
        else:
            self.limit.answered(None if new_connection else seconds, self.in_flight)
            self.slots.wake()

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
        delay = self._clock() - asked
        self.limit.own_delay += LOOP_WEIGHT * (delay - self.limit.own_delay)

    def _sample(self) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
        if now >= self._next_loop_measure:
            self._next_loop_measure = now + LOOP_EVERY
            # How long until a callback asked for now runs: one turn of the loop.
            asyncio.get_running_loop().call_soon(self._loop_turned, now)
        if now < self._next_sample or len(self.samples) >= MAX_SAMPLES:
            return
        self._next_sample = now + SAMPLE_EVERY
        self.samples.append(
            Sample(
                round(now - self._first, 3),
                self.limit.current,
                self.in_flight,
                self.pacer.rate,
            )
        )


# Weak: a loop that is gone (each `asyncio.run` of a command) takes its controllers along.
_SHARED: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, int, float | None, bool], RateControl]
] = weakref.WeakKeyDictionary()

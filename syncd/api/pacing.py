"""Pacing: when the next request may start, so that the server's budget never runs out.

Three things hold requests back, whichever is latest wins:

- `SYNCD_MAX_RATE`, the operator's cap: requests start at least 1/rate apart,
  counted from when the previous one really started, so that in any window of
  one second at most `rate` start, as a server counts them. A start that wakes
  late is not made up for, nor is an idle gap: either would let two start
  closer than an interval. The event loop's lateness costs a little of the
  rate instead, never the ceiling.
- The server's budget (syncd.api.budget), as this client reckons it: what
  the last answer left, less the requests already on their way (they reach
  the server after that answer left it) and those sent since. While half of
  the quota or more is left, nothing is held: a short run goes at full speed,
  and leaves the other half to whoever shares the limit. Below half, what is
  left is spread evenly until the quota is whole again (the Reset). Against a
  token bucket that keeps its level between empty and full, which is its
  refill rate exactly; against a fixed window it spends the rest of the
  window evenly. Spent (`Remaining: 0`, or as reckoned), every request waits
  for the Reset; then the quota counts as whole again until an answer says
  otherwise (and where no answer said how large it is, as unknown).
- A pause: after a 429, no request starts until its Retry-After is over (the
  limit is the client's, not one request's: the others would only be refused).

No wait that the budget asks is longer than MAX_RETRY_AFTER, the most syncd
waits for a Retry-After: a budget that would hold a request longer (spent, or
spread thinner than that, until a Reset far off) is not kept. The request
goes: a server that meant it answers 429, whose Retry-After fails the user
naming the wait (syncd.errors.WaitTooLong), and one whose header was wrong
answers. Either way the run says so, and never stalls in silence.

The rules are plain methods of an injected clock (`allowed_at`, `started`,
`heard`, `pause`), so that they can be tested without waiting; `turn()` is the
one that waits. Waiters queue in order behind one lock, and only the first of
them sleeps, so a rate costs one timer, not one per request waiting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from syncd.api.budget import DEFAULT_RESET, Budget
from syncd.errors import MAX_RETRY_AFTER

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
        # When the previous request started, as the rate counts it (see `started`).
        self._previous = -math.inf
        # The budget as this client reckons it: what the last answer left, less what was
        # sent since, until the moment the quota is whole again (None: no budget known).
        self._left: float | None = None
        self._whole_at = -math.inf
        self._quota = 0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    # -- the rules --------------------------------------------------------------------

    @property
    def server_rate(self) -> float | None:
        """Requests per second the server's budget allows now (None: no need to spread)."""
        self._renew()
        left = self._left
        if left is None or left >= self._quota * RESERVE:
            return None
        until_whole = self._whole_at - self._clock()
        if until_whole <= 0:
            return None
        rate = max(left, 1) / until_whole
        # Nor is a spread of more than MAX_RETRY_AFTER between two requests kept (a Reset
        # hours or, sent by mistake, centuries away): as for a spent budget, see below.
        return rate if 1 / rate <= MAX_RETRY_AFTER else None

    @property
    def rate(self) -> float | None:
        """Requests per second at most, now: the lower of the cap and the server's budget."""
        rates = [r for r in (self.max_rate, self.server_rate) if r is not None]
        return min(rates) if rates else None

    def allowed_at(self) -> float:
        """The earliest moment the next request may start."""
        rate = self.rate
        by_rate = -math.inf if rate is None else self._previous + 1 / rate
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

    # -- waiting ----------------------------------------------------------------------

    async def turn(self) -> None:
        """Wait until a request may start, and count it as started."""
        self._renew()
        if self._clock() >= self.allowed_at() and not self._lock.locked():
            self.started()
            return
        async with self._lock:  # first come, first served; only the first one sleeps
            while (wait := self._wait()) > 0:
                self._changed.clear()
                # A new budget or pause changes the moment: look again when one comes.
                try:
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                except TimeoutError:
                    pass
            self.started()

    def _wait(self) -> float:
        self._renew()
        return self.allowed_at() - self._clock()

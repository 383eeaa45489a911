"""The rate controller's pure rules, on a clock the test moves: budgets, pacing, the limit.

What the rules do against a real server is in tests/integration/test_rate_control.py.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.api.control import AdaptiveLimit, Slots
from syncd.api.pacing import DEFAULT_RESET, Budget, Pacer, read_budget
from syncd.errors import MAX_RETRY_AFTER

NOW = 1_700_000_000.0  # the wall clock of the budget tests


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {"RateLimit-Limit": "300", "RateLimit-Remaining": "120", "RateLimit-Reset": "1"},
            Budget(120, 1.0, 300),
            id="ietf",
        ),
        pytest.param(
            {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4987"}
            | {"X-RateLimit-Reset": str(int(NOW) + 600)},
            Budget(4987, 600.0, 5000),
            id="x-unix-time",
        ),
        pytest.param(
            {"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": str(int(NOW + 30) * 1000)},
            Budget(7, 30.0, None),
            id="x-unix-time-in-ms",
        ),
        pytest.param(
            {"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "30"},
            Budget(7, 30.0, None),
            id="x-seconds",
        ),
        pytest.param({"RateLimit-Remaining": "3"}, Budget(3, DEFAULT_RESET, None), id="no-reset"),
        pytest.param(
            {
                "RateLimit-Policy": '"burst";q=100;w=1, "day";q=1000;w=86400',
                "RateLimit": '"burst";r=80;t=1, "day";r=5;t=7200',
            },
            Budget(5, 7200.0, 1000),
            id="structured-the-quota-nearest-its-end",
        ),
        pytest.param(
            {"RateLimit-Policy": "default;l=10;w=1", "RateLimit": "default;r=0;t=1"},
            Budget(0, 1.0, 10),
            id="structured-draft-07-token",
        ),
        pytest.param(
            {"RateLimit": '"a";r=9;t=2', "RateLimit-Remaining": "1", "X-RateLimit-Remaining": "0"},
            Budget(9, 2.0, None),
            id="the-later-draft-first",
        ),
        pytest.param(
            {"RateLimit-Remaining": "0", "X-RateLimit-Remaining": "9"},
            Budget(0, DEFAULT_RESET, None),
            id="then-the-earlier",
        ),
        pytest.param({"RateLimit-Remaining": "many"}, None, id="not-a-number"),
        pytest.param({"RateLimit-Remaining": "-1"}, None, id="negative"),
        pytest.param({"RateLimit": "garbage;;;,,,"}, None, id="structured-garbage"),
        pytest.param({}, None, id="none"),
    ],
)
def test_a_budget_is_read_from_any_of_the_three_conventions(
    headers: dict[str, str], expected: Budget | None
) -> None:
    assert read_budget(headers, NOW) == expected


@given(st.dictionaries(st.sampled_from(["RateLimit", "RateLimit-Policy"]), st.text()))
def test_no_header_value_fails_the_reader(headers: dict[str, str]) -> None:
    budget = read_budget(headers, NOW)
    assert budget is None or (budget.remaining >= 0 and budget.reset >= 0)


def starts(pacer: Pacer, clock: Clock, count: int, late: float = 0.0) -> list[float]:
    """When `count` requests start, each as soon as allowed (and `late` after that)."""
    times = []
    for _ in range(count):
        clock.now = max(clock.now, pacer.allowed_at()) + late
        pacer.started()
        times.append(clock.now)
    return times


def most_in_a_window(times: list[float], window: float) -> int:
    # Half-open windows, as a server counts by its seconds (less a hair for float sums).
    return max(sum(1 for t in times if first <= t < first + window - 1e-9) for first in times)


@pytest.mark.parametrize("late", [0.0, 0.004, 0.03])
def test_max_rate_is_never_exceeded_over_a_window_even_when_starts_are_late(late: float) -> None:
    clock = Clock()
    pacer = Pacer(max_rate=50, clock=clock)
    times = starts(pacer, clock, 500, late)
    for window in (0.1, 1.0, 5.0):
        assert most_in_a_window(times, window) <= 50 * window
    # A start late is not made up for: it lowers the rate a little, never raises it.
    assert times[-1] - times[0] >= 499 * (1 / 50 + late) - 1e-9


def test_after_an_idle_gap_no_two_requests_start_closer_than_the_rate() -> None:
    clock = Clock()
    pacer = Pacer(max_rate=2, clock=clock)
    times = starts(pacer, clock, 3)
    clock.now += 10  # idle: the line owes nobody a start
    times += starts(pacer, clock, 5)
    assert most_in_a_window(times, 1.0) <= 2


def test_with_half_the_quota_left_nothing_is_held() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.heard(Budget(remaining=160, reset=1, limit=300), on_their_way=9)
    assert pacer.rate is None
    assert pacer.allowed_at() <= clock.now


def test_below_half_what_is_left_is_spread_until_the_reset() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    # 100 left, 20 of them already on their way: 80 over the next 2 s.
    pacer.heard(Budget(remaining=100, reset=2, limit=300), on_their_way=20)
    assert pacer.rate == 40
    # Without a Limit, the largest Remaining seen stands for the quota.
    unknown = Pacer(clock=clock)
    unknown.heard(Budget(remaining=300, reset=1), on_their_way=0)
    unknown.heard(Budget(remaining=100, reset=1), on_their_way=0)
    assert unknown.rate == 100


def test_remaining_zero_holds_every_request_until_the_reset() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.heard(Budget(remaining=0, reset=2, limit=10), on_their_way=3)
    assert pacer.allowed_at() == clock.now + 2
    # The latest answer is the server's latest word, sooner or later.
    pacer.heard(Budget(remaining=0, reset=1, limit=10), on_their_way=2)
    assert pacer.allowed_at() == clock.now + 1
    # Then the quota counts as whole again, for a second as far as anyone said: its ten
    # requests start within that second (half at once), and the next waits for the next.
    clock.now = whole = 101.0
    times = starts(pacer, clock, 10)
    assert times[:5] == [whole] * 5
    assert times[-1] <= whole + 1
    assert starts(pacer, clock, 1)[0] >= whole + 1


def test_remaining_zero_with_no_quota_known_is_forgotten_at_the_reset() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.heard(Budget(remaining=0, reset=1), on_their_way=0)
    assert pacer.allowed_at() == 101
    clock.now = 101.0
    # A whole quota of nothing would hold every request for ever, a second at a time.
    assert starts(pacer, clock, 3) == [101, 101, 101]


def test_what_was_sent_since_the_last_answer_is_spent_from_it() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    # Two left of a quota of two: both go (half or more is left each time)...
    pacer.heard(Budget(remaining=2, reset=5, limit=2), on_their_way=0)
    assert starts(pacer, clock, 2) == [100, 100]
    # ...and the third waits for the Reset: nothing is left until then.
    assert pacer.allowed_at() == 105
    # One left by the server, but one already on its way will take it: spent too.
    pacer.heard(Budget(remaining=1, reset=5, limit=2), on_their_way=1)
    assert pacer.allowed_at() == 105
    # A request that got no answer may not have reached the server: it gives its share back.
    pacer.unanswered()
    assert pacer.allowed_at() <= 100


def test_a_wait_longer_than_syncd_waits_is_not_kept() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.heard(Budget(remaining=0, reset=3600, limit=5000), on_their_way=0)
    pacer.pause(900)
    assert pacer.allowed_at() <= clock.now


@pytest.mark.parametrize(
    "budget",
    [
        pytest.param(Budget(remaining=0, reset=7200, limit=5000), id="spent-for-two-hours"),
        pytest.param(Budget(remaining=10, reset=7200, limit=5000), id="ten-left-for-two-hours"),
        pytest.param(Budget(remaining=3, reset=1.6e11, limit=None), id="a-reset-of-5000-years"),
    ],
)
def test_a_budget_that_would_hold_longer_than_syncd_waits_is_not_kept(budget: Budget) -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.heard(budget, on_their_way=0)
    # The requests go; the server's own 429 then says how long, and fails the user naming it.
    assert starts(pacer, clock, 3) == [100, 100, 100]


@given(
    remaining=st.integers(0, 10**6),
    reset=st.floats(0, 1e15),
    limit=st.none() | st.integers(0, 10**6),
    on_their_way=st.integers(0, 64),
    max_rate=st.none() | st.floats(0.01, 1000),
)
def test_no_wait_that_a_budget_asks_is_longer_than_syncd_waits(
    remaining: int, reset: float, limit: int | None, on_their_way: int, max_rate: float | None
) -> None:
    clock = Clock()
    pacer = Pacer(max_rate=max_rate, clock=clock)
    pacer.heard(Budget(remaining, reset, limit), on_their_way)
    for _ in range(5):
        at = pacer.allowed_at()
        by_cap = 0.0 if max_rate is None else 1 / max_rate
        assert at - clock.now <= max(MAX_RETRY_AFTER, by_cap) + 1e-6
        clock.now = max(clock.now, at)
        pacer.started()


def test_the_cap_and_the_budget_together_the_lower_wins() -> None:
    clock = Clock()
    pacer = Pacer(max_rate=20, clock=clock)
    pacer.heard(Budget(remaining=10, reset=1, limit=300), on_their_way=0)
    assert pacer.rate == 10
    pacer.heard(Budget(remaining=290, reset=1, limit=300), on_their_way=0)
    assert pacer.rate == 20


def test_the_limit_doubles_each_round_trip_until_the_first_trouble() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, clock=clock)
    assert limit.current == 1
    for expected in (2, 4, 8, 16, 32, 32):
        for _ in range(limit.current):
            limit.answered(0.03, in_flight=limit.current)
        assert limit.current == expected


def test_a_429_right_after_a_cut_for_latency_still_halves() -> None:
    # On a loaded machine the latency rule may cut first; the server's 429 within
    # that round trip is its own word, and was swallowed by the calm window.
    clock = Clock()
    limit = AdaptiveLimit(32, clock=clock)
    limit.limit = 20
    limit._decrease(0.9, "latency")
    assert limit.current == 18
    limit.overloaded()
    limit.overloaded()  # the rest of the burst: one congestion
    assert limit.current == 9
    assert limit.backoffs == {"latency": 1, "overload": 1}


def test_an_overload_halves_the_limit_once_per_round_trip_then_it_grows_by_one() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, clock=clock)
    limit.limit = 32
    for _ in range(5):
        limit.answered(0.03, in_flight=32)
    for _ in range(10):  # the 429s of one burst: one congestion
        limit.overloaded()
    assert limit.current == 16
    assert limit.backoffs["overload"] == 1
    clock.now += 0.05
    limit.overloaded()
    assert limit.current == 8
    # Then additively: one more per `limit` answers, not one per answer.
    clock.now += 1
    for _ in range(8):
        limit.answered(0.03, in_flight=8)
    assert limit.current == 8  # no longer doubling: that ended with the first overload
    limit.answered(0.03, in_flight=8)
    assert limit.current == 9


def test_a_rise_in_latency_lowers_the_limit_and_jitter_does_not() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, clock=clock)
    limit.limit = 32
    for index in range(2000):  # 30 ms ± 10 ms, evenly
        limit.answered(0.02 + (index * 7919 % 2000) / 100_000, in_flight=32)
        clock.now += 0.001
    assert limit.current == 32
    assert not limit.backoffs
    for _ in range(200):  # a queue builds: three times as slow
        limit.answered(0.09, in_flight=32)
        clock.now += 0.01
    assert limit.current < 32
    assert limit.backoffs["latency"] >= 1
    assert limit.current >= 1


def test_a_rise_that_the_clients_own_event_loop_explains_lowers_nothing() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, clock=clock)
    limit.limit = 32
    for _ in range(100):
        limit.answered(0.002, in_flight=32)  # loopback: 2 ms at best
    limit.own_delay = 0.01  # this process takes 10 ms a turn: CPU-bound itself
    for _ in range(200):
        limit.answered(0.03, in_flight=32)
        clock.now += 0.01
    assert limit.current == 32
    assert not limit.backoffs
    limit.own_delay = 0.0005  # the loop is quick again: the same rise is the server's
    for _ in range(20):
        limit.answered(0.03, in_flight=32)
        clock.now += 0.01
    assert limit.backoffs["latency"] >= 1


def test_an_unused_limit_does_not_grow() -> None:
    limit = AdaptiveLimit(32, clock=Clock())
    limit.limit = 8
    limit.slow_start = False
    for _ in range(100):
        limit.answered(0.03, in_flight=3)
    assert limit.current == 8


def test_the_first_answer_of_a_connection_is_no_latency_sample() -> None:
    limit = AdaptiveLimit(32, clock=Clock())
    limit.answered(0.03, in_flight=1)
    limit.answered(None, in_flight=1)  # a handshake of 0.3 s would have looked like a queue
    assert limit.best == limit.recent == 0.03


def test_slots_never_admit_more_than_the_limit_and_open_as_it_grows() -> None:
    limit = AdaptiveLimit(8, clock=Clock())
    slots = Slots(limit)
    peak = 0

    async def one(index: int) -> None:
        nonlocal peak
        await slots.acquire()
        peak = max(peak, slots.in_use)
        assert slots.in_use <= limit.current
        await asyncio.sleep(0)
        if index == 3:
            limit.limit = 4  # grew while the others waited
            slots.wake()
        slots.release()

    async def run() -> None:
        await asyncio.gather(*(one(i) for i in range(20)))

    asyncio.run(run())
    assert slots.in_use == 0
    assert peak == 4


def test_a_waiter_cancelled_keeps_no_slot() -> None:
    slots = Slots(AdaptiveLimit(1, clock=Clock()))

    async def run() -> None:
        await slots.acquire()
        waiting = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        slots.release()
        assert slots.in_use == 0
        await asyncio.wait_for(slots.acquire(), 1)  # the slot is free for the next

    asyncio.run(run())


def test_a_waiter_cancelled_after_wake_dropped_it_raises_only_its_cancellation() -> None:
    slots = Slots(AdaptiveLimit(1, clock=Clock()))

    async def run() -> None:
        await slots.acquire()
        waiting = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        # Cancelled (a run's deadline), and before it runs again the slot is released:
        # wake() drops the cancelled waiter from the queue, so it must not look for it.
        waiting.cancel()
        slots.release()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert slots.in_use == 0
        await asyncio.wait_for(slots.acquire(), 1)

    asyncio.run(run())


def test_a_waiter_cancelled_once_granted_hands_its_slot_to_the_next() -> None:
    slots = Slots(AdaptiveLimit(1, clock=Clock()))

    async def run() -> None:
        await slots.acquire()
        first = asyncio.ensure_future(slots.acquire())
        second = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # the slot goes to the first waiter...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)
        assert slots.in_use == 1
        slots.release()
        assert slots.in_use == 0

    asyncio.run(run())

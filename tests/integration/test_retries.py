"""Retries that respect the server (issue 12, item 5), over real HTTP against the sandbox.

Retry-After in both of its forms, a 429 without it backing off from a second,
a wait beyond syncd's cap failing that user at once, and SYNCD_TIMEOUT bounding
a whole request against a server that trickles its answer.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from syncd.api.client import AccountsClient
from syncd.api.credentials import CredentialStore
from syncd.api.retrying import read_retry_after
from syncd.errors import TransportError, WaitTooLong
from tests.world import World


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(None, None, id="absent"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="date-in-the-past"),
        # What a hostile or broken server may send counts as no Retry-After at all.
        pytest.param("\u00b2", None, id="a-digit-to-str-isdigit-not-to-float"),
        pytest.param("99999999999", None, id="eleven-digits"),
        pytest.param("-1", None, id="negative"),
        pytest.param("Wed, 99999999999 Oct 2015 07:28:00 GMT", None, id="a-day-past-any-int"),
    ],
)
def test_retry_after_is_read_in_either_form(value: str | None, expected: float | None):
    # Raw latin-1 bytes, as they come off the wire.
    headers = [] if value is None else [(b"Retry-After", value.encode("latin-1"))]
    assert read_retry_after(httpx.Headers(headers)) == expected


def test_retry_after_as_a_date_is_the_seconds_until_then():
    moment = datetime.now(UTC) + timedelta(seconds=30)
    header = {"Retry-After": format_datetime(moment, usegmt=True)}
    delay = read_retry_after(httpx.Headers(header))
    assert delay is not None
    assert 28 <= delay <= 30


def first_retry_gap(world: World, faults: dict[str, Any], **settings: Any) -> float:
    """Seconds between the first 429 (or 503) and the sending of the request after it (its
    round trip, which load stretches, left out); the faults end there."""
    world.sandbox.set_faults(faults)
    #: (status, when it was answered, how long the request took), by the monotonic clock.
    answered: list[tuple[int | None, float, float]] = []

    def observe(method: str, status: int | None, seconds: float) -> None:
        answered.append((status, time.monotonic(), seconds))
        if status in (429, 503):
            world.sandbox.set_faults({})  # the next attempt goes through

    async def read() -> None:
        config = world.settings(**settings)
        credentials = CredentialStore.from_settings(config)
        async with AccountsClient(config, credentials.for_user, on_response=observe) as client:
            await client.get_user("janedoe")

    started = time.monotonic()
    # A bound, not a timing: a client that waits for ever fails here instead of hanging.
    asyncio.run(asyncio.wait_for(read(), 30))
    statuses = [status for status, _, _ in answered]
    assert statuses == [faults.get("throttle_status", 429), 200], statuses
    assert answered[1][1] - started < 60
    # The time the second request was answered, less its own round trip.
    return answered[1][1] - answered[1][2] - answered[0][1]


def test_a_retry_after_date_is_honoured(world: World):
    gap = first_retry_gap(world, {"throttle_rate": 1, "throttle_wait": 2, "retry_after": "date"})
    # An HTTP date has whole seconds: two seconds ahead is between one and two from now.
    assert 0.9 <= gap <= 3.0, gap


def test_a_429_without_retry_after_backs_off_from_a_second(world: World):
    gap = first_retry_gap(world, {"throttle_rate": 1, "retry_after": "none"})
    assert 1.0 <= gap <= 2.0, gap


@pytest.mark.parametrize(
    "budget",
    [
        pytest.param({"RateLimit-Remaining": "0", "RateLimit-Reset": "1"}, id="ietf"),
        pytest.param({"RateLimit": '"q";r=0;t=1'}, id="structured-without-policy"),
    ],
)
def test_remaining_zero_with_no_quota_known_holds_until_the_reset_not_for_ever(
    world: World, budget: dict[str, str]
):
    # The 429 says nothing is left and not how much a window holds; the 200s after it
    # say nothing at all. The Reset is over in a second: then the answers decide again.
    faults = {"throttle_rate": 1, "retry_after": "none", "throttle_headers": budget}
    gap = first_retry_gap(world, faults)
    assert 1.0 <= gap <= 3.0, gap


def test_a_reset_hours_away_does_not_stall_the_retry(world: World):
    # Nothing left for two hours, says the 429, and come back in a second: what the
    # budget asks is beyond what syncd waits, so it is not kept; the Retry-After is.
    budget = {"RateLimit-Limit": "5000", "RateLimit-Remaining": "0", "RateLimit-Reset": "7200"}
    gap = first_retry_gap(world, {"throttle_rate": 1, "throttle_headers": budget})
    assert 0.9 <= gap <= 3.0, gap


@pytest.mark.parametrize(
    "hostile", ["\u00b2", "Wed, 99999999999 Oct 2015 07:28:00 GMT"], ids=["superscript", "day"]
)
def test_an_unreadable_retry_after_backs_off_as_if_absent(world: World, hostile: str):
    faults = {"throttle_rate": 1, "throttle_headers": {"Retry-After": hostile}}
    gap = first_retry_gap(world, faults)
    assert 1.0 <= gap <= 2.0, gap


def test_a_wait_beyond_the_cap_fails_the_user_at_once_naming_it(world: World):
    world.sandbox.set_faults({"throttle_rate": 1, "throttle_wait": 900})

    async def read() -> None:
        config = world.settings()
        credentials = CredentialStore.from_settings(config)
        async with AccountsClient(config, credentials.for_user) as client:
            await client.get_user("janedoe")

    with pytest.raises(WaitTooLong, match=r"asks to wait 900 s .*longer than syncd waits"):
        asyncio.run(read())
    assert world.sandbox.stats()["total"] == 1  # not retried


def test_the_timeout_bounds_a_whole_request_against_a_trickling_server(world: World):
    world.sandbox.set_faults({"trickle_ms": 500})  # a user object would take minutes

    async def read() -> None:
        config = world.settings(timeout=0.5)
        credentials = CredentialStore.from_settings(config)
        async with AccountsClient(config, credentials.for_user) as client:
            await client.get_user("janedoe")

    started = time.monotonic()
    with pytest.raises(TransportError, match=r"no complete answer within 0\.5 s"):
        asyncio.run(read())
    # Five attempts of half a second, and the backoff between them.
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("form", ["seconds", "date"])
def test_a_503_that_says_when_to_come_back_is_waited_for_over_the_wire(world: World, form: str):
    # design.md section 3: Retry-After is honoured, whichever answer carries it.
    faults = {"throttle_rate": 1, "throttle_status": 503, "throttle_wait": 3, "retry_after": form}
    gap = first_retry_gap(world, faults)
    # Our own backoff after a first 5xx is at most 0.2 s; the date has whole seconds.
    assert 1.9 <= gap <= 4.0, gap


def test_a_503_that_says_when_to_come_back_is_waited_for():
    from syncd.api.retrying import RetryPolicy
    from syncd.errors import status_error

    policy = RetryPolicy()
    back_soon = status_error("janedoe", "GET", "/", 503, "", retry_after=7.0)
    assert policy.delay(1, back_soon) == 7.0
    too_far = status_error("janedoe", "GET", "/", 503, "", retry_after=3600.0)
    assert policy.delay(1, too_far) <= policy.base_delay  # our own backoff instead
    silent = status_error("janedoe", "GET", "/", 500, "")
    assert policy.delay(1, silent) <= policy.base_delay

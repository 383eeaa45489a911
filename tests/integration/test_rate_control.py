"""The rate controller's rules against the sandbox over real HTTP (issue 16).

It backs off on a 429 and holds every request for its Retry-After, a 429
costs less than one retry per request, SYNCD_MAX_RATE is never exceeded over
a window, and `RateLimit-Remaining: 0` (in each of the three conventions)
holds requests until the Reset. How fast it runs is the bench's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

from syncd.api.client import AccountsClient
from syncd.api.control import RateControl
from syncd.api.credentials import CredentialStore
from syncd.api.pool import for_each
from syncd.settings import load_settings


@dataclass
class Run:
    """What a client did: each request's start and status, and its controller afterwards."""

    #: (started, answered, status) of each request, by the client's monotonic clock.
    requests: list[tuple[float, float, int | None]] = field(default_factory=list)
    control: RateControl | None = None

    def starts(self) -> list[float]:
        return sorted(started for started, _, _ in self.requests)

    def answered(self, status: int) -> list[float]:
        return sorted(at for _, at, answered in self.requests if answered == status)

    def count(self, status: int) -> int:
        return len(self.answered(status))


@pytest.fixture
def read_users(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("SYNCD_TOKEN", "SYNCD_CONFIG", "SYNCD_MAX_RATE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)

    def read(users: int, faults: dict[str, Any], **settings: Any) -> Run:
        """GET `users` generated users, with the staff token, as a plan's fetch does."""
        sandbox.reset(generate=users, faults=faults)
        config = load_settings(
            api_url=sandbox.url, token=sandbox.admin_token, state_dir=str(tmp_path), **settings
        )
        run = Run()

        def observe(method: str, status: int | None, seconds: float) -> None:
            now = time.monotonic()
            run.requests.append((now - seconds, now, status))

        async def fetch() -> None:
            credentials = CredentialStore.from_settings(config)
            async with AccountsClient(config, credentials.for_user, on_response=observe) as client:
                names = [f"user{index:06d}" for index in range(1, users + 1)]
                await for_each(names, config.concurrency, client.get_user)
                run.control = client.rate_control

        asyncio.run(fetch())
        return run

    return read


def test_a_429_halves_the_limit_and_holds_every_request_for_its_retry_after(
    read_users: Any,
) -> None:
    # 10 a second and no headers to pace by: only the 429s say it is too fast.
    run = read_users(40, {"global_rate_limit": 10, "rate_limit_headers": "none"}, concurrency=16)
    assert run.control is not None
    assert run.control.limit.backoffs["overload"] >= 1
    assert run.control.limit.current < 16
    assert run.count(200) == 40
    # After each 429 (Retry-After: 1) no request starts for a second: the wait is the
    # client's, not one worker's (those in flight then had been sent before it came).
    refused = run.answered(429)
    assert refused
    for at in refused:
        assert not [start for start in run.starts() if at < start < at + 0.95], at


def test_a_429_costs_less_than_one_retry_per_request(read_users: Any) -> None:
    run = read_users(40, {"global_rate_limit": 10, "rate_limit_headers": "none"}, concurrency=16)
    assert run.count(200) == 40
    assert 0 < run.count(429) <= 40


def test_with_the_budget_in_the_headers_no_429_is_met(read_users: Any) -> None:
    # The same limit, told on every answer: the pacer spends it without running out.
    run = read_users(40, {"global_rate_limit": 10}, concurrency=16)
    assert run.count(200) == 40
    assert run.count(429) == 0


@pytest.mark.parametrize("rate", [20, 50])
def test_max_rate_is_never_exceeded_over_a_window(
    read_users: Any, sandbox: Any, rate: int
) -> None:
    run = read_users(2 * rate, {}, concurrency=16, max_rate=rate)
    starts = run.starts()
    assert len(starts) == 2 * rate
    # The pacer lets at most `rate` start in any second (tests/unit check it on its own
    # clock); here the starts are read after the fact, each task a little late.
    most = max(sum(1 for t in starts if first <= t < first + 1) for first in starts)
    assert most <= rate + 3, most
    assert starts[-1] - starts[0] >= (len(starts) - 3) / rate
    # The server counted the same, second by second of its clock.
    per_second = [count for _, _, count in sandbox.stats()["per_second"]]
    assert max(per_second) <= rate + 3


@pytest.mark.parametrize("form", ["ietf", "x", "structured"])
def test_remaining_zero_holds_requests_until_the_reset(read_users: Any, form: str) -> None:
    # One request a second, and each answer says so: Remaining 0, Reset 1 (or its moment).
    run = read_users(3, {"global_rate_limit": 1, "rate_limit_headers": form}, concurrency=4)
    assert run.count(429) == 0
    assert run.count(200) == 3
    starts = run.starts()
    assert all(later - earlier >= 0.95 for earlier, later in itertools.pairwise(starts))


def test_without_adaptation_the_same_requests_meet_429s(read_users: Any) -> None:
    # SYNCD_ADAPTIVE=false: four at once, as before; the headers are not read.
    run = read_users(3, {"global_rate_limit": 1}, concurrency=4, adaptive=False)
    assert run.count(200) == 3
    assert run.count(429) >= 2


def test_a_run_cancelled_while_requests_wait_ends_cancelled(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run's deadline cancels every worker at once, most of them waiting for a slot:
    # what comes out is the cancellation (so the applier's handler runs), nothing else.
    monkeypatch.delenv("SYNCD_TOKEN", raising=False)
    sandbox.reset(generate=40)
    config = load_settings(
        api_url=sandbox.url,
        token=sandbox.admin_token,
        state_dir=str(tmp_path),
        concurrency=8,
        max_rate=20,
    )

    async def fetch() -> None:
        run = asyncio.current_task()
        assert run is not None
        answers = 0

        def observe(method: str, status: int | None, seconds: float) -> None:
            nonlocal answers
            answers += 1
            if answers == 3:
                run.cancel()

        credentials = CredentialStore.from_settings(config)
        async with AccountsClient(config, credentials.for_user, on_response=observe) as client:
            names = [f"user{index:06d}" for index in range(1, 41)]
            await for_each(names, config.concurrency, client.get_user)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(fetch())


def test_max_rate_holds_across_clients_back_to_back(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon makes a client per cycle, in one event loop: the next cycle's first
    # request must wait for the rate as the previous cycle's next request would have.
    monkeypatch.delenv("SYNCD_TOKEN", raising=False)
    sandbox.reset(generate=4)
    config = load_settings(
        api_url=sandbox.url, token=sandbox.admin_token, state_dir=str(tmp_path), max_rate=2
    )

    async def cycles() -> None:
        credentials = CredentialStore.from_settings(config)
        for first in (1, 3):
            async with AccountsClient(config, credentials.for_user) as client:
                for index in (first, first + 1):
                    await client.get_user(f"user{index:06d}")

    asyncio.run(cycles())
    per_second = [count for _, _, count in sandbox.stats()["per_second"]]
    assert sum(per_second) == 4
    assert max(per_second) <= 2, per_second


@pytest.mark.parametrize(
    ("faults", "event", "said"),
    [
        # Each answer spends the budget of a window of 50 s: the next request waits for it.
        ({"global_rate_limit": 0.02}, "api_wait", {"why": "RateLimit-Reset"}),
        ({"throttle_rate": 1.0, "throttle_wait": 60}, "api_retry", {"retry_after": 60.0}),
    ],
    ids=["reset", "retry_after"],
)
def test_a_long_wait_for_the_server_is_said_as_it_starts(
    sandbox: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    faults: dict[str, Any],
    event: str,
    said: dict[str, Any],
) -> None:
    # A server asking for minutes stalled a plan in silence: the wait was logged at
    # debug, or not at all (trial hostile D6). The run is cancelled as soon as it is said.
    monkeypatch.delenv("SYNCD_TOKEN", raising=False)
    sandbox.reset(generate=2, faults=faults)
    config = load_settings(api_url=sandbox.url, token=sandbox.admin_token, state_dir=str(tmp_path))

    async def fetch() -> list[dict[str, Any]]:
        run = asyncio.current_task()
        assert run is not None

        def stop_when_said(logger: Any, method: str, fields: Any) -> Any:
            if method == "warning":
                run.cancel()
            return fields

        credentials = CredentialStore.from_settings(config)
        with (
            structlog.testing.capture_logs(processors=[stop_when_said]) as logs,
            contextlib.suppress(asyncio.CancelledError),
        ):
            async with AccountsClient(config, credentials.for_user) as client:
                await for_each(["user000001", "user000002"], 1, client.get_user)
        return logs

    warnings = [log for log in asyncio.run(fetch()) if log["log_level"] == "warning"]
    assert [log["event"] for log in warnings] == [event]
    assert said.items() <= warnings[0].items()
    waited = warnings[0]["seconds" if event == "api_wait" else "delay"]
    assert 40 <= waited <= 60

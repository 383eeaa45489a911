"""Injected faults: errors, rate limits, latency and ambiguous writes, reproducible by seed."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

USER = "/api/v1.1/users/janedoe/"
EMAILS = "/api/v1.1/users/janedoe/emails/"
SEED = {
    "users": {
        "janedoe": {"tokens": ["jane-read"], "emails": ["jane@example.com"]},
    }
}


@pytest.fixture(scope="module")
def http(sandbox_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_server) as client:
        yield client


@pytest.fixture
def admin(sandbox: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {sandbox.admin_token}"}


def emails(http: httpx.Client, admin: dict[str, str]) -> list[str]:
    return [e["email"] for e in http.get(EMAILS, headers=admin).json()]


def test_error_rate_one_fails_every_api_request(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    sandbox.reset(seed=SEED, faults={"error_rate": 1.0})
    statuses = set()
    for i in range(20):
        response = http.post(EMAILS, json={"email": f"new{i}@example.com"}, headers=admin)
        statuses.add(response.status_code)
        assert response.json()["detail"]
    assert statuses == {500, 503}
    # The control routes are never faulted, nor counted.
    assert sandbox.stats()["total"] == 20


def test_injected_errors_apply_nothing(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    sandbox.reset(seed=SEED, faults={"error_rate": 0.5, "fault_seed": 1})
    applied = []
    for i in range(20):
        address = f"new{i}@example.com"
        response = http.post(EMAILS, json={"email": address}, headers=admin)
        assert response.status_code in (201, 500, 503)
        if response.status_code == 201:
            applied.append(address)
    assert 0 < len(applied) < 20
    for _ in range(100):  # reads fail half the time too
        listed = http.get(EMAILS, headers=admin)
        if listed.status_code == 200:
            break
    assert [e["email"] for e in listed.json()] == ["jane@example.com", *applied]


def test_the_same_fault_seed_gives_the_same_faults(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    def run() -> list[int]:
        sandbox.reset(seed=SEED, faults={"error_rate": 0.5, "fault_seed": 42})
        return [http.get(USER, headers=admin).status_code for _ in range(30)]

    first = run()
    assert first == run()
    assert 200 in first
    assert set(first) - {200} <= {500, 503}
    assert set(first) - {200}


def test_rate_limit_answers_429_with_an_integer_retry_after(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    # One request per 1000 s: the second is refused however slow the machine is.
    sandbox.reset(seed=SEED, faults={"rate_limit": 0.001})
    assert http.get(USER, headers=admin).status_code == 200
    refused = http.get(USER, headers=admin)
    assert refused.status_code == 429
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 1000
    assert refused.json()["detail"]
    # The limit is per credential.
    assert http.get(USER, headers={"Authorization": "Bearer jane-read"}).status_code == 200
    statuses = {(r["status"], r["count"]) for r in sandbox.stats()["requests"]}
    assert statuses == {(200, 2), (429, 1)}


def test_latency_delays_api_requests(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    sandbox.reset(seed=SEED, faults={"latency_ms": 150})
    started = time.perf_counter()
    assert http.get(USER, headers=admin).status_code == 200
    assert time.perf_counter() - started >= 0.15


def test_ambiguous_rate_one_applies_writes_but_answers_500_or_drops(
    sandbox: Any, http: httpx.Client, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.reset(seed=SEED, faults={"ambiguous_rate": 1.0, "fault_seed": 7})
    outcomes = []
    added = [f"new{i}@example.com" for i in range(12)]
    with caplog.at_level(logging.ERROR):
        for address in added:
            try:
                response = http.post(EMAILS, json={"email": address}, headers=admin)
            except httpx.TransportError:
                outcomes.append("dropped")
            else:
                outcomes.append(str(response.status_code))
    assert set(outcomes) == {"500", "dropped"}
    # Reads are never ambiguous, and every write was applied.
    assert emails(http, admin) == ["jane@example.com", *added]
    # A dropped connection is logged as one line, without a traceback.
    dropped_logs = [r for r in caplog.records if "dropped a connection" in r.getMessage()]
    assert len(dropped_logs) == outcomes.count("dropped")
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in dropped_logs)
    counted = {
        r["status"]: r["count"] for r in sandbox.stats()["requests"] if r["method"] == "POST"
    }
    assert counted == {500: outcomes.count("500"), 0: outcomes.count("dropped")}


def test_ambiguous_faults_spare_refused_writes(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    sandbox.reset(seed=SEED, faults={"ambiguous_rate": 1.0})
    response = http.post(EMAILS, json={"email": "jane@example.com"}, headers=admin)
    assert response.status_code == 400

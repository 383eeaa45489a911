"""Injected faults: errors, rate limits, latency and ambiguous writes, reproducible by seed."""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncd.sandbox.faults import FaultConfig, Faults

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


def test_one_users_writes_can_go_unanswered_and_unapplied(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    seed = {"users": {**SEED["users"], "johnsmith": {"tokens": ["john-read"]}}}
    sandbox.reset(seed=seed, faults={"unanswered_writes_of": "janedoe"})
    with pytest.raises(httpx.ReadTimeout):  # held until the client gives up
        http.post(EMAILS, json={"email": "new@example.com"}, headers=admin, timeout=0.3)
    assert emails(http, admin) == ["jane@example.com"]  # her reads are answered
    john = http.patch("/api/v1.1/users/johnsmith/", json={"full_name": "J"}, headers=admin)
    assert john.status_code == 200  # and the other users' writes


# -- the global rate limit and the latency distribution (issue 16) -------------------------


def test_the_global_rate_limit_is_one_bucket_for_every_credential(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    # One request per 1000 s for everyone: the second is refused whoever sends it.
    sandbox.reset(seed=SEED, faults={"global_rate_limit": 0.001})
    first = http.get(USER, headers=admin)
    assert first.status_code == 200
    refused = http.get(USER, headers={"Authorization": "Bearer jane-read"})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 1000
    # Both answers say where the bucket stands: one token, none left, full again in 1000 s.
    for response in (first, refused):
        assert response.headers["RateLimit-Limit"] == "1"
        assert response.headers["RateLimit-Remaining"] == "0"
        assert 999 <= int(response.headers["RateLimit-Reset"]) <= 1000
        assert response.headers["RateLimit-Policy"] == "1;w=1000"


def test_every_answer_carries_the_rate_limit_fields_errors_too(
    sandbox: Any, http: httpx.Client
) -> None:
    sandbox.reset(seed=SEED, faults={"global_rate_limit": 1000})
    answers = [
        http.get(USER),  # 401: no credentials
        http.get("/api/v1.1/users/nobody/", headers={"Authorization": "Bearer jane-read"}),
        http.get(USER, headers={"Authorization": "Bearer jane-read"}),
    ]
    assert [a.status_code for a in answers] == [401, 403, 200]
    remaining = [int(a.headers["RateLimit-Remaining"]) for a in answers]
    # Each took a token: the count goes down (the bucket refills by about one a millisecond).
    assert all(0 <= left < 1000 for left in remaining)
    assert all(a.headers["RateLimit-Limit"] == "1000" for a in answers)


@pytest.mark.parametrize(
    ("form", "fields"),
    [
        pytest.param(
            "ietf",
            {
                "RateLimit-Limit": "1",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": r"(999|1000)",
                "RateLimit-Policy": "1;w=1000",
            },
            id="ietf",
        ),
        pytest.param(
            "x",
            {"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": r"\d+"},
            id="x",
        ),
        pytest.param(
            "structured",
            {"RateLimit-Policy": '"global";q=1;w=1000', "RateLimit": '"global";r=0;t=(999|1000)'},
            id="structured",
        ),
        pytest.param("none", {}, id="none"),
    ],
)
def test_the_rate_limit_fields_come_in_the_form_asked_for(
    sandbox: Any, http: httpx.Client, admin: dict[str, str], form: str, fields: dict[str, str]
) -> None:
    sandbox.reset(seed=SEED, faults={"global_rate_limit": 0.001, "rate_limit_headers": form})
    answer = http.get(USER, headers=admin)
    assert answer.status_code == 200
    told = {name.lower() for name in answer.headers if "ratelimit" in name.lower()}
    assert told == {name.lower() for name in fields}
    for name, pattern in fields.items():
        assert re.fullmatch(pattern, answer.headers[name]), (name, answer.headers[name])
    if form == "x":
        # A Unix time, as GitHub sends it: about 1000 s from now.
        assert 990 <= int(answer.headers["X-RateLimit-Reset"]) - time.time() <= 1001


def test_without_a_global_limit_no_rate_limit_fields_are_sent(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    sandbox.reset(seed=SEED, faults={"rate_limit": 1000})
    answer = http.get(USER, headers=admin)
    assert answer.status_code == 200
    assert not [name for name in answer.headers if "ratelimit" in name.lower()]


def test_latency_with_jitter_is_spread_evenly_around_its_mean() -> None:
    faults = Faults(FaultConfig(latency_ms=30, latency_jitter_ms=10, fault_seed=3))
    drawn = [faults.latency() for _ in range(2000)]
    assert 0.020 <= min(drawn) < 0.0205
    assert 0.0395 < max(drawn) <= 0.040
    assert statistics.mean(drawn) == pytest.approx(0.030, abs=0.0005)
    # The same seed gives the same latencies; the error draws are not moved by them.
    again = Faults(FaultConfig(latency_ms=30, latency_jitter_ms=10, fault_seed=3))
    assert [again.latency() for _ in range(2000)] == drawn
    plain = Faults(FaultConfig(error_rate=0.5, fault_seed=3))
    jittered = Faults(FaultConfig(error_rate=0.5, fault_seed=3, latency_jitter_ms=1, latency_ms=1))
    for _ in range(50):
        jittered.latency()
    assert [plain.injected_error() for _ in range(50)] == [
        jittered.injected_error() for _ in range(50)
    ]


def test_latency_with_jitter_delays_each_request_at_least_its_least(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    sandbox.reset(seed=SEED, faults={"latency_ms": 100, "latency_jitter_ms": 50})
    for _ in range(5):
        started = time.perf_counter()
        assert http.get(USER, headers=admin).status_code == 200
        assert time.perf_counter() - started >= 0.05


def test_a_throttled_answer_may_be_a_503_with_the_headers_asked_for(
    sandbox: Any, http: httpx.Client, admin: dict[str, str]
) -> None:
    headers = {"RateLimit-Remaining": "0", "Retry-After": "\u00b2"}
    faults = {"throttle_rate": 1, "throttle_status": 503, "throttle_headers": headers}
    sandbox.reset(seed=SEED, faults=faults)
    refused = http.get(USER, headers=admin)
    assert refused.status_code == 503
    assert refused.json()["detail"] == "service unavailable"
    # Given fields replace the fault's own Retry-After, byte for byte (latin-1).
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert dict(refused.headers.raw)[b"retry-after"] == b"\xb2"


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"latency_ms": 10, "latency_jitter_ms": 20}, "latency_jitter_ms"),
        ({"global_rate_limit": -1}, "global_rate_limit"),
        ({"rate_limit_headers": "draft"}, "rate_limit_headers"),
        ({"throttle_status": 500}, "throttle_status"),
        ({"throttle_headers": {"Bad Name": "1"}}, "throttle_headers"),
        ({"throttle_headers": {"Retry-After": "1\r\nX: y"}}, "throttle_headers"),
        ({"unanswered_writes_of": ["janedoe"]}, "unanswered_writes_of"),
    ],
)
def test_bad_rate_or_latency_faults_are_400_naming_them(
    sandbox: Any, http: httpx.Client, faults: dict[str, Any], message: str
) -> None:
    response = http.post("/_sandbox/reset", json={"faults": faults})
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_the_stats_show_the_most_requests_in_flight_each_second(
    sandbox: Any, admin: dict[str, str]
) -> None:
    sandbox.reset(seed=SEED, faults={"latency_ms": 300})

    async def together() -> None:
        async with httpx.AsyncClient(base_url=sandbox.url, headers=admin) as client:
            answers = await asyncio.gather(*(client.get(USER) for _ in range(5)))
        assert all(a.status_code == 200 for a in answers)

    asyncio.run(together())
    peaks = [peak for _, peak in sandbox.stats()["in_flight"]]
    assert max(peaks) == 5

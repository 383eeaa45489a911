"""`/_sandbox/stats` and `/_sandbox/reset`, and serving a sandbox from Python."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncd.sandbox import seed
from syncd.sandbox.runtime import SandboxConfig
from syncd.sandbox.server import serve_in_thread

USER_ROUTE = "/api/v1.1/users/{username}/"
EMAILS_ROUTE = "/api/v1.1/users/{username}/emails/"
SEED = {"users": {"janedoe": {"tokens": ["jane"], "emails": ["jane@example.com"]}}}


@pytest.fixture(scope="module")
def http(sandbox_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_server) as client:
        yield client


def test_stats_count_api_requests_by_method_route_and_status(
    sandbox: Any, http: httpx.Client
) -> None:
    sandbox.reset(seed=SEED)
    admin = {"Authorization": f"Bearer {sandbox.admin_token}"}
    http.get("/api/v1.1/users/janedoe/", headers=admin)
    http.get("/api/v1.1/users/janedoe/", headers=admin)
    http.get("/api/v1.1/users/janedoe/")
    http.get("/api/v1.1/users/nobody/emails/", headers=admin)
    http.post("/api/v1.1/users/janedoe/emails/", json={"email": "n@example.com"}, headers=admin)
    http.get("/nowhere")
    http.get("/_sandbox/stats")
    stats = sandbox.stats()
    per_second = stats.pop("per_second")
    assert sum(count for _, method, count in per_second if method == "GET") == 5
    assert sum(count for _, method, count in per_second if method == "POST") == 1
    # One request at a time: never more than one in flight in any second.
    assert {peak for _, peak in stats.pop("in_flight")} == {1}
    assert stats.pop("since_mark")["requests"] == 6  # the reset was the mark
    assert stats == {
        "total": 6,
        "by_method": {"GET": 5, "POST": 1},
        "with_cookie": 0,
        "requests": [
            {"method": "GET", "path": "(other)", "status": 404, "count": 1},
            {"method": "GET", "path": USER_ROUTE, "status": 200, "count": 2},
            {"method": "GET", "path": USER_ROUTE, "status": 401, "count": 1},
            {"method": "GET", "path": EMAILS_ROUTE, "status": 404, "count": 1},
            {"method": "POST", "path": EMAILS_ROUTE, "status": 201, "count": 1},
        ],
    }


def test_a_request_its_client_abandoned_is_counted_apart_not_as_a_400(
    sandbox: Any, sandbox_server: str
) -> None:
    # The trial (hist D10): a killed apply's 32 writes in flight were counted 400s, which
    # no one was sent, and looked like refused duplicate POSTs.
    sandbox.reset(seed=SEED)
    url = httpx.URL(sandbox_server)
    with socket.create_connection((url.host, url.port or 80)) as client:
        client.sendall(
            f"POST /api/v1.1/users/janedoe/emails/ HTTP/1.1\r\nHost: {url.host}\r\n"
            f"Authorization: Bearer {sandbox.admin_token}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"email"'.encode()
        )
    deadline = time.monotonic() + 10  # the server learns of the close on its own time
    while not (requests := sandbox.stats()["requests"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert requests == [{"method": "POST", "path": EMAILS_ROUTE, "status": 499, "count": 1}]


def test_reset_zeroes_the_stats(sandbox: Any, http: httpx.Client) -> None:
    http.get("/api/v1.1/users/janedoe/")
    assert sandbox.stats()["total"] == 1
    sandbox.reset()
    assert sandbox.stats() == {
        "total": 0,
        "by_method": {},
        "with_cookie": 0,
        "per_second": [],
        "in_flight": [],
        "since_mark": {"requests": 0, "seconds": 0.0},
        "requests": [],
    }


def test_since_a_mark_the_span_runs_from_the_first_arrival_to_the_last_answer(
    sandbox: Any, http: httpx.Client
) -> None:
    sandbox.reset(seed=SEED, faults={"latency_ms": 50})
    user = {"Authorization": "Bearer jane"}
    http.get("/api/v1.1/users/janedoe/", headers=user)  # before the mark: not in the span
    assert http.post("/_sandbox/mark").status_code == 200
    http.get("/_sandbox/stats")  # neither is a control request
    started = time.monotonic()
    for _ in range(3):
        assert http.get("/api/v1.1/users/janedoe/", headers=user).status_code == 200
    elapsed = time.monotonic() - started
    span = sandbox.stats()["since_mark"]
    assert span["requests"] == 3
    # Three answers held 50 ms each, and no more than the client waited for them.
    assert 0.15 <= span["seconds"] <= elapsed


def test_reset_with_generate_and_seed(sandbox: Any, http: httpx.Client) -> None:
    sandbox.reset(seed=SEED, generate=3)
    token = seed.generated_token("user000002")
    user = http.get("/api/v1.1/users/user000002/", headers={"Authorization": f"Bearer {token}"})
    assert user.status_code == 200
    assert user.json()["id"] == 2
    assert user.json()["email"] == "user000002@example.com"
    jane = http.get("/api/v1.1/users/janedoe/", headers={"Authorization": "Bearer jane"})
    assert jane.json()["id"] == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"seed": {"users": {"Bad Name": {}}}}, "users.Bad Name"),
        ({"seed": {"users": {"janedoe": {"emails": ["nope"]}}}}, "users.janedoe.emails[0]"),
        ({"seed": {"people": {}}}, "unknown key"),
        ({"seed": {"users": {"user000001": {}}}, "generate": 2}, "generated"),
        ({"generate": -1}, "generate"),
        ({"generate": "3"}, "generate"),
        ({"seed": {"users": {"janedoe": {"tokens": [{"token": "t", "scopes": [{}]}]}}}}, "scopes"),
        ({"malformed": {"janedoe": []}}, "unknown kind"),
        ({"faults": {"error_rate": 2}}, "error_rate"),
        ({"faults": {"speed": 2}}, "speed"),
        ({"admin_token": 5}, "admin_token"),
        ({"colour": "blue"}, "colour"),
        ([], "object"),
    ],
)
def test_a_bad_reset_body_is_400_naming_the_problem(
    sandbox: Any, http: httpx.Client, body: Any, message: str
) -> None:
    response = http.post("/_sandbox/reset", json=body)
    assert response.status_code == 400
    assert message in response.json()["detail"]


@pytest.mark.parametrize("route", ["/_sandbox/reset", "/_sandbox/faults"])
@pytest.mark.parametrize(
    ("body", "message"), [(b"[]", "must be a JSON object"), (b"{", "not valid JSON")]
)
def test_a_control_body_that_is_no_json_object_is_400_saying_so(
    http: httpx.Client, route: str, body: bytes, message: str
) -> None:
    response = http.post(route, content=body)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_a_bare_reset_restores_the_state_the_server_started_with() -> None:
    start = seed.snapshot_from_mapping(SEED)
    with (
        serve_in_thread(SandboxConfig(start, admin_token="adm")) as url,
        httpx.Client(base_url=url, headers={"Authorization": "Bearer adm"}) as http,
    ):
        http.post("/api/v1.1/users/janedoe/emails/", json={"email": "x@example.com"})
        http.patch("/api/v1.1/users/janedoe/", json={"full_name": "Changed"})
        assert http.post("/_sandbox/reset").status_code == 200
        assert http.get("/api/v1.1/users/janedoe/").json()["full_name"] == ""
        emails = http.get("/api/v1.1/users/janedoe/emails/").json()
        assert [e["email"] for e in emails] == ["jane@example.com"]


def test_serve_in_thread_takes_a_snapshot_and_stops_cleanly() -> None:
    with serve_in_thread(seed.generate(2)) as url:
        token = seed.generated_token("user000001")
        response = httpx.get(
            f"{url}/api/v1.1/users/user000001/", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_sandbox/stats")

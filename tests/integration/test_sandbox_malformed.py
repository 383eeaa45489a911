"""Malformed requests get a 4xx with a JSON `detail`, never a 5xx (only faults are 5xx)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

USER = "/api/v1.1/users/janedoe/"
EMAILS = "/api/v1.1/users/janedoe/emails/"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SEED = {"users": {"janedoe": {"emails": ["jane@example.com"]}}}


@pytest.fixture(scope="module")
def http(sandbox_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_server) as client:
        yield client


@pytest.fixture
def client(sandbox: Any, http: httpx.Client) -> httpx.Client:
    sandbox.reset(seed=SEED)
    http.headers["Authorization"] = f"Bearer {sandbox.admin_token}"
    return http


def assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        pytest.param(b"{not json", JSON, id="not-json"),
        pytest.param(b"[1, 2]", JSON, id="json-array"),
        pytest.param(b'"text"', JSON, id="json-string"),
        pytest.param(b"null", JSON, id="json-null"),
        pytest.param(b"\xff\xfe{}", JSON, id="not-utf8"),
        pytest.param(b'{"full_name": "\\ud800"}', JSON, id="lone-surrogate"),
        pytest.param(b"[" * 60_000, JSON, id="deeply-nested"),
        pytest.param(b'{"full_name": 1' + b"0" * 5000 + b"}", JSON, id="huge-integer"),
        pytest.param(b'{"full_name": NaN}', JSON, id="nan"),
        pytest.param(b'{"company": "a", "company": "b"}', JSON, id="duplicate-key"),
        pytest.param(b"<user/>", {"Content-Type": "application/xml"}, id="xml"),
        pytest.param(b"full_name=x", {"Content-Type": "text/plain"}, id="text-plain"),
        pytest.param(
            b"--b\r\nContent-Disposition: form-data; name=full_name\r\n\r\nx\r\n--b--\r\n",
            {"Content-Type": "multipart/form-data; boundary=b"},
            id="multipart",
        ),
        pytest.param(b"full_name=%ff", FORM, id="form-not-utf8"),
        pytest.param(b"full_name", FORM, id="form-without-equals"),
        pytest.param(b"full_name=a&full_name=b", FORM, id="form-duplicate"),
        pytest.param(b"&".join(b"f%d=x" % i for i in range(500)), FORM, id="form-many-fields"),
        pytest.param(b"\xff=\xfe", FORM, id="form-raw-bytes"),
        pytest.param(b"{}garbage", None, id="no-content-type"),
    ],
)
def test_unreadable_patch_bodies_are_400(
    client: httpx.Client, content: bytes, headers: dict[str, str] | None
) -> None:
    assert_json_error(client.patch(USER, content=content, headers=headers), 400)


@pytest.mark.parametrize("path", [USER, EMAILS])
def test_bodies_over_64_kib_are_413(client: httpx.Client, path: str) -> None:
    body = b'{"full_name": "' + b"x" * 70_000 + b'"}'
    method = "PATCH" if path == USER else "POST"
    assert_json_error(client.request(method, path, content=body, headers=JSON), 413)


def test_a_chunked_body_over_64_kib_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"email": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'@example.com"}'

    assert_json_error(client.post(EMAILS, content=chunks(), headers=JSON), 413)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1.1/users/%00/",
        "/api/v1.1/users/jane%00doe/emails/",
        "/api/v1.1/users/%ff%fe%fd%fc/",
        "/api/v1.1/users/JANEDOE/",
        "/api/v1.1/users/" + "j" * 300 + "/",
        "/api/v1.1/users/jane.doe/",
        "/api/v1.1/users/janedoe/emails/extra/",
        "/api/v1.1/users/janedoe//",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/",
    ],
)
def test_odd_paths_are_404(client: httpx.Client, path: str) -> None:
    assert_json_error(client.get(path), 404)


def test_an_authorization_header_that_is_not_ascii_is_401(client: httpx.Client) -> None:
    for value in (b"Basic \xff\xfe", b"Bearer \xe9t\xe9", b"Basic " + b"w7/Dvg=="):
        response = client.get(USER, headers={"Authorization": value})
        assert_json_error(response, 401)


def test_an_odd_host_header_still_gives_a_user_object(client: httpx.Client) -> None:
    response = client.get(USER, headers={"Host": "[not-an-ipv6"})
    assert response.status_code == 200
    assert response.json()["url"].endswith(USER)


def test_a_query_string_and_a_body_on_get_are_ignored(client: httpx.Client) -> None:
    response = client.request("GET", USER + "?x=%00&y", content=b"{bad")
    assert response.status_code == 200


def test_a_broken_request_line_is_answered_4xx_by_the_server(sandbox: Any) -> None:
    address = urlsplit(sandbox.url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as conn:
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status_line = conn.makefile("rb").readline()
    assert status_line.startswith(b"HTTP/1.1 4")

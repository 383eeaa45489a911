"""The primary address is never deleted, even when the address list marks none.

The API document says the profile's `email` is the primary: where the list
marks no address primary, the profile says which one is (trialadv entry 12).
A crafted server on loopback gives such an answer for an account that has a
primary; the sandbox gives one for an account that has none.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.world import ALL_SCOPES, World


class _NoPrimaryMarked(BaseHTTPRequestHandler):
    """janedoe's account, whose profile names kate@example.com as the primary and whose
    address list marks no address primary; every write answers 500 and is counted."""

    protocol_version = "HTTP/1.1"
    requests: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.requests.append(f"{self.command} {self.path}")
        code, body = (
            200,
            {
                "username": "janedoe",
                "full_name": "Jane",
                "location": "",
                "company": "",
                "profile_url": "",
                "gravatar_url": "",
                "email": "kate@example.com",
            },
        )
        if self.command != "GET":
            code, body = 500, {"detail": "no writes here"}
        elif self.path.endswith("/emails/"):
            body = [  # type: ignore[assignment]
                {"email": "kate@example.com", "verified": True, "primary": False},
                {"email": "p@example.com", "verified": True, "primary": False},
            ]
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = answer


@pytest.fixture
def crafted() -> Iterator[str]:
    _NoPrimaryMarked.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoPrimaryMarked)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_address_the_profile_names_is_not_deleted_when_the_list_marks_none(
    world: World, crafted: str
):
    world.desire({"version": 1, "users": {"janedoe": {"emails": ["p@example.com"]}}})
    args = [*world.cli_args(), "--api-url", crafted]
    runner = CliRunner()
    plan = runner.invoke(cli, ["plan", *args], catch_exceptions=False)
    assert "- kate@example.com" not in plan.stdout, plan.output
    assert "primary_email_not_desired" in plan.output, plan.output
    assert "kate@example.com is the primary address (the profile's email" in plan.output
    # Only emails are managed: the profile was read because the list marks no primary.
    assert "GET /api/v1.1/users/janedoe/" in _NoPrimaryMarked.requests
    applied = runner.invoke(cli, ["apply", *args, "--yes"], catch_exceptions=False)
    assert not [r for r in _NoPrimaryMarked.requests if not r.startswith("GET ")], applied.output


def test_an_account_without_a_primary_still_loses_unlisted_addresses(world: World):
    # Seeded without addresses, the sandbox's account has none primary (added ones
    # never are) and its profile's email is empty: nothing is the primary.
    world.seed(
        {
            "users": {
                "janedoe": {"tokens": [{"token": "tok-jane", "scopes": ALL_SCOPES}], "emails": []}
            }
        }
    )
    world.desire(
        {"version": 1, "users": {"janedoe": {"emails": ["a@example.com", "b@example.com"]}}}
    )
    world.apply()
    assert sorted(world.emails_of("janedoe")) == ["a@example.com", "b@example.com"]
    world.desire({"version": 1, "users": {"janedoe": {"emails": ["a@example.com"]}}})
    world.apply()
    assert world.emails_of("janedoe") == ["a@example.com"]

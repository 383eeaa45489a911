"""A credential that the API, a gateway or a proxy quotes back is never shown (trialadv 1, 10).

syncd sends a token or a Basic pair to the API, and the proxy URL's user and
password to the proxy. An answer that quotes them (an error body, a page that is
not JSON, a header, a reason phrase) reaches the screen, the logs, the state and
the hash-chained audit trail with each of them as `***`. The servers are on
loopback (tests/security/servers.py).
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from click.testing import CliRunner, Result

from syncd.api.credentials import basic, bearer
from syncd.cli.main import cli
from tests.security.conftest import UNSET, plan
from tests.security.servers import Answer, EchoServer
from tests.world import World, write_secret

TOKEN = "TOKEN-echoed-5ecret-0001"
#: With `/` and `+`, which JSON may escape and a URL percent-encodes.
PASSWORD = "Basic/echoed+Pw-77"
PROXY_PASSWORD = "proxy-echoed-Pw55"
PROFILE = {"full_name": "X", "location": "", "company": "", "profile_url": "", "gravatar_url": ""}


def pair(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


#: Every secret of these tests, as sent: none may be shown in any form.
SECRETS = [
    TOKEN,
    PASSWORD,
    pair("janedoe", PASSWORD),
    PROXY_PASSWORD,
    pair("deploy", PROXY_PASSWORD),
]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        for form in (secret, quote(secret, safe=""), secret.replace("/", "\\/")):
            assert form not in text, f"{form!r} shown in: {text}"


def state_bytes(world: World) -> str:
    """Every file of the state directory (syncd.db, its WAL, cache.db), as text."""
    files = [path for path in world.state_dir.rglob("*") if path.is_file()]
    return "".join(path.read_bytes().decode("latin-1") for path in files)


def two_users(world: World, scheme: str) -> None:
    """janedoe, authenticated by a bearer token or a Basic password, and johnsmith."""
    world.desire({"version": 1, "users": {name: {"full_name": "New Name"} for name in USERS}})
    (world.credentials_dir / "janedoe.token").unlink()
    if scheme == "bearer":
        write_secret(world.credentials_dir / "janedoe.token", TOKEN + "\n")
    else:
        write_secret(world.credentials_dir / "janedoe.password", PASSWORD + "\n")


USERS = ("janedoe", "johnsmith")


def valid(method: str, target: str, headers: dict[str, str]) -> tuple[str, str, str]:
    """The answer of an API that reads as it should (any write refused)."""
    if method != "GET":
        return "400 Bad Request", "", '{"detail": "rejected request with {auth}"}'
    if target.endswith("/emails/"):
        return "200 OK", "", '[{"email": "p@example.com", "verified": true, "primary": true}]'
    username = target.split("/")[4]
    return "200 OK", "", json.dumps({"username": username, "email": "p@example.com", **PROFILE})


def for_jane(answer: Answer) -> Answer:
    """`answer` for janedoe's requests, `valid` for johnsmith's: her failure is hers alone
    (not one that every read met), so it is shown whole."""

    def answering(method: str, target: str, headers: dict[str, str]) -> tuple[str, str, str]:
        return (answer if "/janedoe/" in target else valid)(method, target, headers)

    return answering


def escaped_json(method: str, target: str, headers: dict[str, str]) -> tuple[str, str, str]:
    # As PHP's json_encode writes it: `/` as `\/`; no `detail`, so the body is quoted whole.
    return (
        "400 Bad Request",
        "",
        json.dumps({"error": headers["authorization"]}).replace("/", "\\/"),
    )


def redirect(method: str, target: str, headers: dict[str, str]) -> tuple[str, str, str]:
    where = f"https://login.example/?auth={quote(headers['authorization'], safe='')}"
    return "302 Found", f"Location: {where}\r\n", ""


QUOTING = {
    "detail-401": lambda *_: ("401 Unauthorized", "", '{"detail": "bad: {auth} ({password})"}'),
    "html-403": lambda *_: ("403 Forbidden", "", "<p>you sent\n{auth} / {password}</p>"),
    "escaped-json-400": escaped_json,
    "location-302": redirect,
    "not-json-200": lambda *_: ("200 OK", "", "gateway page: {auth} {password}"),
    "content-encoding": lambda *_: ("200 OK", "Content-Encoding: {auth}\r\n", "{}"),
}


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
@pytest.mark.parametrize("answer", QUOTING.values(), ids=QUOTING)
def test_a_credential_the_api_quotes_back_is_never_shown(world: World, scheme: str, answer):
    two_users(world, scheme)
    with EchoServer(for_jane(answer)) as api:
        result = plan(world, api_url=f"http://127.0.0.1:{api.port}", SYNCD_LOG_FORMAT="json")
    assert result.exit_code == 1, result.output
    assert "✗ janedoe" in result.output
    assert_no_secret(result.output)
    assert "***" in result.output
    assert_no_secret(state_bytes(world))


def test_a_write_refused_with_the_token_quoted_leaves_it_out_of_the_audit_trail(world: World):
    two_users(world, "bearer")

    with EchoServer(valid) as api:
        flags = world.cli_args()
        flags[flags.index("--api-url") + 1] = f"http://127.0.0.1:{api.port}"
        runner = CliRunner(env=UNSET)
        applied = runner.invoke(cli, ["apply", *flags, "--yes"], catch_exceptions=False)
        assert any(line.startswith("PATCH") for line in api.requests)
    assert "rejected request with Bearer ***" in applied.output
    state = ["--state-dir", str(world.state_dir)]
    status = runner.invoke(cli, ["status", *state, "--output", "json"], catch_exceptions=False)
    audit = runner.invoke(cli, ["audit", *state], catch_exceptions=False)
    events = json.dumps(world.query("SELECT * FROM audit"), default=str)
    assert "rejected request with Bearer ***" in events
    for shown in (applied.output, status.output, audit.output, events):
        assert_no_secret(shown)
    assert_no_secret(state_bytes(world))


def one_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_proxy_that_quotes_its_credentials_in_a_407_to_a_connect(world: World):
    two_users(world, "bearer")
    with EchoServer(lambda *_: ("407 Denied {proxy} {password}", "", "")) as proxy:
        proxy_url = f"http://deploy:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
        result = plan(world, api_url="https://api.example", HTTPS_PROXY=proxy_url)
    line = one_line(result)
    assert f"the proxy http://***@127.0.0.1:{proxy.port} refused its credentials" in line
    assert "(407 Denied Basic *** ***)" in line
    assert_no_secret(result.output)


def test_a_proxy_407_in_front_of_a_plain_http_api_is_the_proxy_s_in_one_line(world: World):
    # It was "every read failed alike, 2 users: … the API at http://api.example.test
    # failed: HTTP 407", exit 1: the API blamed, per user. A forwarded request also
    # carries the API's token: the proxy may quote that too.
    two_users(world, "bearer")
    with EchoServer(lambda *_: ("407 Denied {proxy} {password} {auth}", "", "")) as proxy:
        proxy_url = f"http://deploy:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
        api = "http://api.example.test"
        result = plan(world, "--insecure-http", api_url=api, HTTP_PROXY=proxy_url)
    line = one_line(result)
    shown = f"http://***@127.0.0.1:{proxy.port}"
    assert line == (
        f"syncd: API unreachable: {api} (through the proxy {shown}): the proxy {shown} "
        "refused its credentials (407 Denied Basic *** *** Bearer ***): check the proxy URL's user"
    )
    assert proxy.requests[0].startswith("GET http://api.example.test/api/v1.1/users/janedoe/")
    assert_no_secret(result.output)


def test_scrubbing_is_per_request_not_per_secret_ever_seen():
    # The secrets scrubbed are the request's own and its proxy's: cheap for any
    # number of users, and another user's token is no reason to garble a message.
    jane, john = bearer(TOKEN, "jane"), basic("john", PASSWORD, "john")
    said = f"Bearer {TOKEN}; Basic {pair('john', PASSWORD)}; {PASSWORD}"
    assert jane.scrub(said) == f"Bearer ***; Basic {pair('john', PASSWORD)}; {PASSWORD}"
    assert john.scrub(said) == f"Bearer {TOKEN}; Basic ***; ***"
    assert repr(john).count(PASSWORD) == 0

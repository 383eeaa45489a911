"""Failures that no retry mends stop the run once, naming their cause (issue 22, 15-17).

A silent API, a certificate for another name, a proxy that refuses its
credentials: each is one line and exit 1, after as few attempts as it takes to
know, not five per request for every user. Each server is on loopback
(tests/security/servers.py); timeouts are short settings, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from syncd.api.retrying import RetryPolicy
from syncd.cli.main import cli
from syncd.core.live import LiveAccount, LiveProfile
from syncd.core.plan import FieldChange, Plan, UpdateProfile
from syncd.desired.loading import load_desired
from syncd.engine.reconcile import apply_plan, connect, converge, planning
from syncd.errors import ApiUnreachable
from syncd.state.audit import AuditTrail
from tests.security.conftest import plan
from tests.security.servers import (
    CA_FILE,
    PROXY_AUTH_REQUIRED,
    RecordingProxy,
    SilentServer,
    TlsFront,
)
from tests.world import World, write_secret

#: A desired state of ten users, each authenticated by one fallback token.
TEN_USERS = {"version": 1, "users": {f"user{i:04d}": {"full_name": "U"} for i in range(10)}}


def one_line(result: Result) -> str:
    """The run's one message: exit 1, a single line on stderr, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_a_silent_api_ends_the_run_within_five_timeouts(world: World):
    world.desire(TEN_USERS)
    timeout = 0.5
    with SilentServer() as silent:
        url = f"http://127.0.0.1:{silent.port}"
        started = time.monotonic()
        result = plan(world, api_url=url, SYNCD_TOKEN="tok-jane", SYNCD_TIMEOUT=str(timeout))
        took = time.monotonic() - started
    line = one_line(result)
    assert line.startswith(f"syncd: API unreachable: {url}: none of 5 attempts got an answer"), (
        line
    )
    assert "SYNCD_TIMEOUT" in line
    # Five timeouts and the backoff between them (at most 0.2 + 0.4 + 0.8 + 1.6 s).
    assert took < 5 * timeout + 3.0 + 2.0, took


def test_a_certificate_for_another_name_costs_one_handshake(world: World):
    with TlsFront(target_port=int(world.sandbox.url.rsplit(":", 1)[1])) as front:
        # The test certificate names 127.0.0.1 and api.example, not localhost.
        url = f"https://localhost:{front.port}"
        result = plan(world, api_url=url, SSL_CERT_FILE=None, SYNCD_CA_FILE=str(CA_FILE))
    line = one_line(result)
    assert front.connections == 1
    assert line.startswith(f"syncd: API unreachable: {url}: TLS refused: Hostname mismatch"), line
    assert "CERTIFICATE_VERIFY_FAILED" in line


def test_a_proxy_that_refuses_its_password_sees_one_connect(world: World):
    world.desire(TEN_USERS)
    with RecordingProxy(otherwise=PROXY_AUTH_REQUIRED) as proxy:
        proxy_url = f"http://deploy:wrong-pw@127.0.0.1:{proxy.port}"
        result = plan(
            world, api_url="https://api.example", HTTPS_PROXY=proxy_url, SYNCD_TOKEN="tok-jane"
        )
    line = one_line(result)
    assert proxy.requests == ["CONNECT api.example:443 HTTP/1.1"]
    assert f"the proxy http://***@127.0.0.1:{proxy.port} refused its credentials (407" in line
    assert "wrong-pw" not in result.output


def test_a_dead_proxy_is_named_not_the_api(world: World):
    with socket.socket() as closed:  # a port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        proxy_url = f"http://deploy:secret-pw@127.0.0.1:{closed.getsockname()[1]}"
    result = plan(world, api_url="https://api.example", HTTPS_PROXY=proxy_url)
    line = one_line(result)
    shown = proxy_url.replace("deploy:secret-pw", "***")
    assert f"connection refused by the proxy {shown}" in line, line
    assert "secret-pw" not in result.output


def test_a_redirect_names_where_it_pointed(world: World):
    moved = (
        b"HTTP/1.1 301 Moved Permanently\r\n"
        b"Location: https://api.example/api/v1.1/users/janedoe/\r\nContent-Length: 0\r\n\r\n"
    )
    with RecordingProxy(otherwise=moved) as api:  # plays the API: every request, one answer
        result = plan(world, api_url=f"http://127.0.0.1:{api.port}")
    assert result.exit_code == 1, result.output
    assert "HTTP 301: redirected to https://api.example/api/v1.1/users/janedoe/" in result.stdout
    assert len(api.requests) == 2  # a 301 is an answer: not retried, not followed


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1010\r\n\r\n{}",
            "the answer was cut short (received 2 bytes, expected 1010)",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "the server answered 101 Switching Protocols, which the API never does",
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            "HTTP 304: Not Modified, to a request that was not conditional",
        ),
    ],
    ids=["cut-short", "101", "304"],
)
def test_an_odd_answer_is_named_for_what_arrived(world: World, answer: bytes, said: str):
    # A body cut short and a 101 were "closed before an answer", a 304 "redirected to
    # nowhere" (trial hostile D10).
    with RecordingProxy(otherwise=answer) as api:  # plays the API: every request, one answer
        result = plan(world, api_url=f"http://127.0.0.1:{api.port}")
    assert result.exit_code == 1, result.output
    assert said in result.output
    assert "before an answer" not in result.output
    assert "redirected" not in result.output


def test_the_deadline_stops_a_plan_in_one_line(world: World):
    with SilentServer() as silent:
        url = f"http://127.0.0.1:{silent.port}"
        result = plan(world, "--deadline", "0.5", api_url=url, SYNCD_TIMEOUT="30")
    line = one_line(result)
    assert line.startswith("syncd: stopped after 0.5 s (SYNCD_RUN_DEADLINE, --deadline)"), line


def test_the_deadline_stops_an_apply_and_its_writes_in_flight_are_audited(world: World):
    assert plan(world).exit_code == 0  # the live state is cached: the apply reads nothing
    world.sandbox.set_faults({"latency_ms": 3000})  # every write is answered after the deadline
    flags = [*world.cli_args(), "--yes", "--deadline", "1"]
    result = CliRunner().invoke(cli, ["apply", *flags], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    said = [line for line in result.stderr.splitlines() if line.startswith("syncd:")]
    assert said == [
        "syncd: stopped after 1 s (SYNCD_RUN_DEADLINE, --deadline): the run did not finish; "
        "writes in flight are audited as unknown and read again next run"
    ]
    assert world.query("SELECT result FROM runs WHERE command = 'apply'") == [
        {"result": "deadline"}
    ]
    outcomes = world.query("SELECT result FROM audit WHERE event = 'outcome'")
    assert outcomes == [{"result": "unknown"}]  # the PATCH in flight, its answer never heard


def test_an_api_silent_to_writes_stops_the_apply_and_audits_each_as_unknown(world: World):
    # Writes to a silent API: the first PATCH times out five times and the run stops;
    # the writes waiting their turn are cancelled; every intent has its outcome: unknown.
    users = [f"user{i:04d}" for i in range(6)]
    live = {
        u: LiveAccount(u, LiveProfile("Old", "", "", "", "", f"{u}@example.com")) for u in users
    }
    changes = [UpdateProfile(u, (FieldChange("full_name", "Old", "New"),)) for u in users]

    async def apply_into_silence(url: str) -> None:
        settings = world.settings(api_url=url, timeout=0.3, token="tok-jane", concurrency=4)
        async with connect(settings) as connection:
            audit = AuditTrail(connection.db, {"files": [], "revision": None})
            audit.begin_run("apply")
            try:
                plan = Plan(tuple(changes), users=len(users))
                await apply_plan(connection, plan, live, audit)
            finally:
                audit.end_run("failed", {})

    with (
        SilentServer() as silent,
        pytest.raises(ApiUnreachable, match="none of 5 attempts got an answer"),
    ):
        asyncio.run(apply_into_silence(f"http://127.0.0.1:{silent.port}"))
    outcomes = world.query("SELECT result, message FROM audit WHERE event = 'outcome'")
    intents = world.query("SELECT seq FROM audit WHERE event = 'intent'")
    assert len(outcomes) == len(intents) == 4  # those in flight, each with its outcome
    assert {row["result"] for row in outcomes} == {"unknown"}


def test_an_api_gone_mid_apply_stops_the_writes_and_a_refused_one_failed_unsent(
    world: World, tmp_path: Path
):
    # The trial's case: the API answers, then goes away during the apply. The writes
    # stop once five attempts in a row got no answer (the reads' rule); the write whose
    # connections were all refused sent nothing: failed, not unknown; the run failed.
    users = [f"user{i:04d}" for i in range(6)]
    scopes = ["profile_read", "profile_write", "email_read"]
    seed = {"users": {u: {"tokens": [{"token": f"tok-{u}", "scopes": scopes}]} for u in users}}
    (tmp_path / "seed.yaml").write_text(json.dumps(seed))  # YAML reads JSON
    for user in users:
        write_secret(world.credentials_dir / f"{user}.token", f"tok-{user}\n")
    world.desire({"version": 1, "users": {u: {"full_name": "New"} for u in users}})
    command = [sys.executable, "-m", "syncd", "sandbox", "--port", "0"]
    api = subprocess.Popen(
        [*command, "--seed", str(tmp_path / "seed.yaml")], stdout=subprocess.PIPE, text=True
    )
    assert api.stdout is not None
    url = api.stdout.readline().removeprefix("syncd sandbox: serving ").strip()
    ended: list[tuple[str, str, str | None]] = []

    def gone_after_the_first(action: Any, result: str, message: str | None) -> None:
        ended.append((action.user, result, message))
        if len(ended) == 1:
            api.kill()
            api.wait()

    async def apply() -> None:
        settings = world.settings(api_url=url, concurrency=1)
        async with connect(settings) as connection:
            connection.client.retry = RetryPolicy(base_delay=0.01, max_delay=0.02)
            await converge(
                connection,
                planning(load_desired(world.desired_file)),
                command="apply",
                deletion_limit=10,
                confirm=lambda _: True,
                on_change=gone_after_the_first,
            )

    try:
        with pytest.raises(ApiUnreachable, match="none of 5 attempts got an answer"):
            asyncio.run(apply())
    finally:
        api.kill()
        api.communicate()
    refused = f"connection refused by {url.removeprefix('http://')}"
    assert [(user, result) for user, result, _ in ended] == [
        ("user0000", "ok"),
        ("user0001", "failed"),
    ], ended
    assert (ended[1][2] or "").startswith(f"not sent: API unreachable: {url}"), ended
    assert refused in (ended[1][2] or "")
    assert world.query("SELECT result FROM runs") == [{"result": "failed"}]
    outcomes = world.query("SELECT user, result FROM audit WHERE event = 'outcome'")
    assert outcomes == [
        {"user": "user0000", "result": "ok"},
        {"user": "user0001", "result": "failed"},
    ]


def test_one_users_unanswered_write_is_that_users_and_the_others_are_written(world: World):
    # A trial (D4): a server that never answers one user's PATCH, at concurrency 1. Five
    # attempts of one request in a row are not the API unreachable: that user's write is
    # unknown, the next user's is sent and answered, and the summary names both.
    world.desire(
        {
            "version": 1,
            "users": {"janedoe": {"full_name": "Jane Doe"}, "johnsmith": {"full_name": "J"}},
        }
    )
    world.sandbox.set_faults({"unanswered_writes_of": "janedoe"})
    flags = [*world.cli_args(), "--yes"]
    runner = CliRunner(env={"SYNCD_CONCURRENCY": "1", "SYNCD_TIMEOUT": "0.3"})
    result = runner.invoke(cli, ["apply", *flags], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "unreachable" not in result.output
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    jane = next(line for line in lines if line.startswith("janedoe: "))
    assert jane.startswith("janedoe: update profile… unknown"), jane
    assert jane.endswith(": no complete answer within 0.3 s (SYNCD_TIMEOUT)"), jane
    assert any(line.startswith("johnsmith: ") and line.endswith("done") for line in lines)
    assert any(line.startswith("Apply finished with failures") for line in lines), lines
    assert world.sandbox.stats()["by_method"]["PATCH"] == 6  # five for janedoe, one for john
    assert world.query("SELECT user, result FROM audit WHERE event = 'outcome'") == [
        {"user": "janedoe", "result": "unknown"},
        {"user": "johnsmith", "result": "ok"},
    ]


def test_an_api_silent_for_the_next_request_of_the_same_user_is_unreachable(world: World):
    # Review of D4's fix: counted by user, an API that died under the one user whose
    # writes were in flight was never called unreachable, each write spending its retries
    # (and each address its re-reads). The next request without an answer stops the run.
    world.desire(
        {
            "version": 1,
            "users": {
                "janedoe": {
                    "full_name": "Jane Doe",
                    "emails": ["jane.doe@example.com", "old@example.com", "x@example.com"],
                }
            },
        }
    )
    world.sandbox.set_faults({"unanswered_writes_of": "janedoe"})
    runner = CliRunner(env={"SYNCD_TIMEOUT": "0.3"})
    result = runner.invoke(cli, ["apply", *world.cli_args(), "--yes"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "API unreachable" in result.output, result.output
    assert world.sandbox.stats()["by_method"] == {"GET": 2, "PATCH": 5, "POST": 1}


def test_writes_to_a_port_nothing_listens_on_fail_as_not_sent(world: World):
    # Refused connections send nothing: each write is `failed`, saying "not sent", never
    # `unknown`; the fifth refusal in a row makes the API unreachable and stops the run.
    users = [f"user{i:04d}" for i in range(4)]
    live = {
        u: LiveAccount(u, LiveProfile("Old", "", "", "", "", f"{u}@example.com")) for u in users
    }
    changes = [UpdateProfile(u, (FieldChange("full_name", "Old", "New"),)) for u in users]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    ended: list[tuple[str, str, str | None]] = []

    async def apply_into_nothing() -> None:
        url = f"http://127.0.0.1:{port}"
        settings = world.settings(api_url=url, token="tok-jane", concurrency=1)
        async with connect(settings) as connection:
            connection.client.retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
            audit = AuditTrail(connection.db, {"files": [], "revision": None})
            audit.begin_run("apply")
            try:
                plan = Plan(tuple(changes), users=len(users))
                await apply_plan(
                    connection,
                    plan,
                    live,
                    audit,
                    on_change=lambda a, r, m: ended.append((a.user, r, m)),
                )
            finally:
                audit.end_run("failed", {})

    with pytest.raises(ApiUnreachable, match="none of 5 attempts got an answer"):
        asyncio.run(apply_into_nothing())
    refused = f"connection refused by 127.0.0.1:{port}"
    assert ended == [
        ("user0000", "failed", f"not sent: {refused}"),
        ("user0001", "failed", f"not sent: {refused}"),
        ("user0002", "failed", ended[2][2]),
    ]
    assert (ended[2][2] or "").startswith("not sent: API unreachable: "), ended
    outcomes = world.query("SELECT result, message FROM audit WHERE event = 'outcome'")
    assert [row["result"] for row in outcomes] == ["failed"] * 3
    assert outcomes[0]["message"] == f"not sent: {refused}"

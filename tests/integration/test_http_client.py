"""The client's connections over real loopback sockets: what a pool must get right for syncd."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from syncd.api.client import AccountsClient
from syncd.api.credentials import bearer
from syncd.api.retrying import RetryPolicy
from syncd.errors import ApiError, ApiUnreachable, NotSent, ServerError, TransportError
from syncd.sandbox.seed import generated_token
from syncd.service.metrics import Metrics
from syncd.settings import Settings
from tests.security.servers import RecordingProxy, TlsFront


def client(api_url: str, **settings: Any) -> AccountsClient:
    """A client to `api_url` that authenticates every user as the sandbox generates them."""
    config = Settings(api_url=api_url, **settings)
    return AccountsClient(config, lambda name: bearer(generated_token(name), "test"))


def test_a_post_after_the_server_closed_the_idle_connection_goes_out_on_a_new_one() -> None:
    # A server that closes each connection after its answer, without saying so: the
    # next request must not go out on the dead connection (a POST is never retried).
    async def run() -> tuple[list[str], int, list[bytes]]:
        accepted = 0
        requests: list[bytes] = []
        closed = asyncio.Event()

        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            head = await reader.readuntil(b"\r\n\r\n")
            requests.append(head.split(b" ", 1)[0])
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            await reader.readexactly(length)
            body = b'{"email":"a@example.com","verified":false,"primary":false}'
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            closed.set()

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        added = []
        try:
            async with client(f"http://127.0.0.1:{port}", concurrency=1) as accounts:
                for _ in range(2):
                    closed.clear()
                    added.append((await accounts.add_email("someone", "a@example.com")).email)
                    await closed.wait()  # the server's end is closed before the next request
        finally:
            server.close()
            await server.wait_closed()
        return added, accepted, requests

    assert asyncio.run(run()) == (["a@example.com"] * 2, 2, [b"POST", b"POST"])


def test_a_request_cancelled_mid_exchange_leaves_the_client_usable(sandbox: Any) -> None:
    # The answer takes 2 s, the caller gives up after 0.1 s: the one connection the
    # client may hold is left mid-exchange, and must not keep the next request waiting.
    sandbox.reset(generate=1, faults={"latency_ms": 2000})

    async def run() -> str:
        async with client(sandbox.url, concurrency=1, timeout=5) as accounts:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await accounts.get_user("user000001")
            sandbox.set_faults()
            return (await accounts.get_user("user000001")).full_name

    assert asyncio.run(run()) == "User 1"


def test_tls_refused_through_a_proxy_fails_at_once_and_sends_no_more() -> None:
    # A certificate that the roots do not vouch for is the same for every request: the
    # first failure stops the client (issue 22, item 16), and nothing waits for a pool
    # slot that httpcore kept for the failed tunnel (encode/httpcore#1023).
    with (
        TlsFront(target_port=9) as api,
        RecordingProxy({"api.example:443": api.port}) as proxy,
    ):
        proxied = {"https_proxy": f"http://127.0.0.1:{proxy.port}", "ssl_cert_file": None}

        async def run() -> list[str]:
            failures = []
            async with client("https://api.example", concurrency=1, timeout=5, **proxied) as c:
                for _ in range(3):
                    with pytest.raises(ApiUnreachable) as failed:
                        await c.get_user("user000001")
                    failures.append(str(failed.value))
            return failures

        failures = asyncio.run(run())
        connects = list(proxy.requests)
    # The public roots do not vouch for the test CA; one tunnel, one handshake, no retry.
    assert all("CERTIFICATE_VERIFY_FAILED" in failure for failure in failures), failures
    assert connects == ["CONNECT api.example:443 HTTP/1.1"]
    assert api.connections == 1


def test_each_retry_is_counted_by_method_and_reason(sandbox: Any) -> None:
    sandbox.reset(generate=1, faults={"error_rate": 1.0})
    metrics = Metrics(interval=10)
    config = Settings(api_url=sandbox.url)
    quick = RetryPolicy(base_delay=0.001, max_delay=0.001)

    async def run() -> None:
        async with AccountsClient(
            config,
            lambda name: bearer(generated_token(name), "test"),
            retry=quick,
            on_retry=metrics.observe_retry,
        ) as accounts:
            with pytest.raises(ServerError):
                await accounts.get_user("user000001")

    asyncio.run(run())
    retries = metrics.registry.get_sample_value(
        "syncd_http_retries_total", {"method": "GET", "reason": "server_error"}
    )
    assert retries == RetryPolicy().attempts - 1


def test_a_server_that_closes_without_answering_is_said_in_words() -> None:
    async def run() -> str:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with client(f"http://127.0.0.1:{port}") as accounts:
                with pytest.raises(TransportError) as failed:
                    await accounts.add_email("someone", "a@example.com")  # never retried
        finally:
            server.close()
            await server.wait_closed()
        return failed.value.detail

    assert asyncio.run(run()) == "the connection was closed before an answer"


def test_a_port_nothing_listens_on_is_refused_by_name() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    async def run() -> ApiError:
        async with client(f"http://127.0.0.1:{port}") as accounts:
            with pytest.raises(ApiError) as failed:
                await accounts.add_email("someone", "a@example.com")
        return failed.value

    # No connection was made: nothing was sent, a failure known, not a lost answer.
    error = asyncio.run(run())
    assert isinstance(error, NotSent), error
    assert error.detail == f"connection refused by 127.0.0.1:{port}"


def test_a_write_refused_after_an_attempt_whose_answer_was_lost_stays_unknown() -> None:
    # The first PATCH is read and its connection closed unanswered (it may have been
    # applied); then nothing listens. The refusals of the retries do not make it unsent:
    # the call ends with the lost answer, not with the last refusal.
    async def run() -> ApiError:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            server.close()
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with client(f"http://127.0.0.1:{port}") as accounts:
                accounts.retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
                with pytest.raises(ApiError) as failed:
                    await accounts.update_profile("someone", {"full_name": "X"})
        finally:
            server.close()
            await server.wait_closed()
        return failed.value

    error = asyncio.run(run())
    assert isinstance(error, TransportError), error
    assert not isinstance(error, NotSent), error
    assert error.detail == "the connection was closed before an answer"

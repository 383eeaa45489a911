"""The client's connections over real loopback sockets: what a pool must get right for syncd."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from syncd.api.client import AccountsClient
from syncd.api.credentials import bearer
from syncd.errors import TransportError
from syncd.sandbox.seed import generated_token
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


def test_tls_refused_through_a_proxy_fails_each_request_at_once() -> None:
    # httpcore keeps a tunnel whose TLS handshake failed as an active connection
    # (encode/httpcore#1023): with one connection allowed, the second request would
    # wait out the timeout for it instead of failing as the first did.
    with (
        TlsFront(target_port=9) as api,
        RecordingProxy({"api.example:443": api.port}) as proxy,
    ):
        proxied = {"https_proxy": f"http://127.0.0.1:{proxy.port}", "ssl_cert_file": None}

        async def run() -> list[str]:
            failures = []
            async with client("https://api.example", concurrency=1, timeout=5, **proxied) as c:
                for _ in range(3):
                    with pytest.raises(TransportError) as failed:
                        await c.add_email("user000001", "a@example.com")  # never retried
                    failures.append(str(failed.value))
            return failures

        failures = asyncio.run(run())
    # The public roots do not vouch for the test CA; no attempt waits for a pool slot.
    assert all("CERTIFICATE_VERIFY_FAILED" in failure for failure in failures), failures

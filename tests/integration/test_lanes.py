"""syncd.api.lanes over real HTTP: bounded requests in flight, one connection per lane."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import pytest

from syncd.api.lanes import Connection, Lanes

USER = "/api/v1.1/users/user000001/"


def connector(sandbox: Any) -> tuple[list[httpcore.AsyncHTTPConnection], Callable[[], Connection]]:
    """A lane's connections to the sandbox, and the list of every one made."""
    api = urlsplit(sandbox.url)
    origin = httpcore.Origin(b"http", str(api.hostname).encode(), int(api.port or 80))
    made: list[httpcore.AsyncHTTPConnection] = []

    def connect() -> Connection:
        made.append(httpcore.AsyncHTTPConnection(origin))
        return made[-1]

    return made, connect


async def get_user(sandbox: Any, connection: Connection) -> httpcore.Response:
    headers = {
        "Host": urlsplit(sandbox.url).netloc,
        "Authorization": f"Bearer {sandbox.admin_token}",
    }
    request = httpcore.Request("GET", sandbox.url + USER, headers=headers)
    response = await connection.handle_async_request(request)
    await response.aread()
    await response.aclose()
    return response


async def status_of_next_request(sandbox: Any, lanes: Lanes) -> int:
    """The status of one more GET on `lanes`, which are then closed."""
    try:
        async with lanes.lane() as connection:
            return (await get_user(sandbox, connection)).status
    finally:
        await lanes.aclose()


def test_never_more_requests_in_flight_than_lanes_and_each_lane_keeps_its_connection(
    sandbox: Any,
) -> None:
    sandbox.reset(generate=1)
    made, connect = connector(sandbox)
    lent: set[int] = set()
    peak = 0
    peers: set[object] = set()

    async def one(lanes: Lanes) -> None:
        nonlocal peak
        async with lanes.lane() as connection:
            assert id(connection) not in lent, "a lane was lent to two requests at once"
            lent.add(id(connection))
            peak = max(peak, len(lent))
            response = await get_user(sandbox, connection)
            assert response.status == 200
            # The local address names the TCP connection the request went over.
            peers.add(response.extensions["network_stream"].get_extra_info("client_addr"))
            lent.remove(id(connection))

    async def run() -> None:
        lanes = Lanes(3, connect)
        try:
            await asyncio.gather(*(one(lanes) for _ in range(12)))
        finally:
            await lanes.aclose()

    asyncio.run(run())

    assert peak == 3
    assert len(made) == 3
    assert len(peers) == 3  # twelve requests over three connections: each lane kept its own
    assert sandbox.stats()["total"] == 12


def test_a_lane_whose_request_was_cancelled_serves_the_next_one(sandbox: Any) -> None:
    # The answer takes 2 s, the caller gives up after 0.1 s: the lane comes back mid-exchange.
    sandbox.reset(generate=1, faults={"latency_ms": 2000})
    made, connect = connector(sandbox)

    async def run() -> int:
        lanes = Lanes(1, connect)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1), lanes.lane() as connection:
                await get_user(sandbox, connection)
        sandbox.set_faults()
        return await status_of_next_request(sandbox, lanes)

    assert asyncio.run(run()) == 200
    # httpcore closed the connection left mid-exchange, and the lane made a new one.
    assert len(made) == 2
    assert all(connection.is_closed() for connection in made)


def test_a_lane_whose_connection_the_server_closed_sends_on_a_new_one() -> None:
    # A server that closes each connection after its answer, without saying so: the
    # next request must not go out on the dead connection (a POST is never retried).
    from syncd.api.streams import AsyncioBackend

    async def run() -> tuple[list[int], int]:
        accepted = 0
        closed = asyncio.Event()

        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            closed.set()

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        origin = httpcore.Origin(b"http", b"127.0.0.1", port)
        backend = AsyncioBackend()
        lanes = Lanes(1, lambda: httpcore.AsyncHTTPConnection(origin, network_backend=backend))
        statuses = []
        try:
            for _ in range(2):
                closed.clear()
                async with lanes.lane() as connection:
                    request = httpcore.Request(
                        "POST",
                        f"http://127.0.0.1:{port}/",
                        headers={"Host": "x", "Content-Length": "2"},
                        content=b"{}",
                    )
                    response = await connection.handle_async_request(request)
                    await response.aread()
                    await response.aclose()
                    statuses.append(response.status)
                await closed.wait()  # the server's end is closed before the next request
        finally:
            await lanes.aclose()
            server.close()
            await server.wait_closed()
        return statuses, accepted

    assert asyncio.run(run()) == ([200, 200], 2)


def test_a_lane_cancelled_while_closing_its_answer_serves_the_next_one(sandbox: Any) -> None:
    # A cancel from outside (a daemon stopping, a task group) that lands in the close of
    # an answer read in full leaves httpcore's connection active: it must not be lent so.
    sandbox.reset(generate=1)
    made, connect = connector(sandbox)

    async def cancelled_while_closing(lanes: Lanes) -> None:
        async with lanes.lane() as connection:
            headers = {"Host": urlsplit(sandbox.url).netloc}
            request = httpcore.Request("GET", sandbox.url + USER, headers=headers)
            response = await connection.handle_async_request(request)
            await response.aread()
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await response.aclose()  # the cancel lands here

    async def run() -> int:
        lanes = Lanes(1, connect)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(cancelled_while_closing(lanes))
        return await status_of_next_request(sandbox, lanes)

    assert asyncio.run(run()) == 200
    assert len(made) == 2

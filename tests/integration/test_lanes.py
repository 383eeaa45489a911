"""syncd.api.lanes over real HTTP: bounded requests in flight, one connection per lane."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from syncd.api.lanes import Lanes

USER = "/api/v1.1/users/user000001/"


def test_never_more_requests_in_flight_than_lanes_and_each_lane_keeps_its_connection(
    sandbox: Any,
) -> None:
    sandbox.reset(generate=1)
    made: list[httpx.AsyncClient] = []
    lent: set[int] = set()
    peak = 0
    peers: set[object] = set()

    def make_client() -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=sandbox.url,
            headers={"Authorization": f"Bearer {sandbox.admin_token}"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        made.append(client)
        return client

    async def one(lanes: Lanes) -> None:
        nonlocal peak
        async with lanes.lane() as client:
            assert id(client) not in lent, "a lane was lent to two requests at once"
            lent.add(id(client))
            peak = max(peak, len(lent))
            response = await client.get(USER)
            assert response.status_code == 200
            # The local address names the TCP connection the request went over.
            peers.add(response.extensions["network_stream"].get_extra_info("client_addr"))
            lent.remove(id(client))

    async def run() -> None:
        lanes = Lanes(3, make_client)
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
    made: list[httpx.AsyncClient] = []

    def make_client() -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=sandbox.url, headers={"Authorization": f"Bearer {sandbox.admin_token}"}
        )
        made.append(client)
        return client

    async def run() -> int:
        lanes = Lanes(1, make_client)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1), lanes.lane() as client:
                    await client.get(USER)
            sandbox.set_faults()
            async with lanes.lane() as client:
                return (await client.get(USER)).status_code
        finally:
            await lanes.aclose()

    assert asyncio.run(run()) == 200
    assert len(made) == 1
    assert all(client.is_closed for client in made)

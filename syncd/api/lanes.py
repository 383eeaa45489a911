"""HTTP lanes: one keep-alive connection per request in flight, not one shared pool.

httpcore's connection pool (1.0.9) re-examines its connections every time a
request starts or ends: for each one, whether the socket is readable (through
anyio, which builds a dictionary of socket attributes for every question),
and for each idle one, a count of all the others. With 16 connections that is
dozens of socket checks and hundreds of state checks per request. Profiled
against the sandbox, a plain httpx loop over one 16-connection client spent
3.5 ms of CPU per PATCH; 16 one-connection clients spent 1.9 ms, and wrote
1.8 times as fast.

So a lane is an AsyncClient limited to one connection, and a request borrows
a free lane for its whole exchange: never more requests in flight than
lanes (SYNCD_CONCURRENCY; the adaptive limit of syncd.api.control admits
fewer when the server asks for less). Lanes are made on first need and lent
most-recently-returned first, so a light load makes few connections. A lane
that stays unused keeps its idle connection until `aclose()`: each run makes
its own client, so that is the end of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx

from syncd.errors import TransportError


class Lanes:
    """At most `count` one-connection clients, each lent to one request at a time."""

    def __init__(self, count: int, make_client: Callable[[], httpx.AsyncClient]) -> None:
        self._make_client = make_client
        self._slots = asyncio.Semaphore(count)
        self._free: list[httpx.AsyncClient] = []
        self._all: list[httpx.AsyncClient] = []
        # Lanes made and not yet lent: their first request also opens the connection.
        self._unused: set[httpx.AsyncClient] = set()

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client that no other request is using until the block ends."""
        async with self._slots:
            # Free plus lent never exceeds the slots, so a slot means a free lane or room for one.
            client = self._free.pop() if self._free else self._new()
            try:
                yield client
            except (httpx.TransportError, TransportError):
                # httpcore 1.0.9 keeps a proxy tunnel whose TLS handshake failed as an
                # active connection (encode/httpcore#1023): the lane's one slot would
                # stay taken, and each later request wait for the pool timeout. A lane
                # that lost its connection is closed and made anew when next needed.
                self._all.remove(client)
                self._unused.discard(client)
                with contextlib.suppress(Exception):
                    await client.aclose()
                raise
            except BaseException:
                # A cancelled or otherwise failed exchange: httpcore closes a
                # connection left mid-exchange, and the lane's next request opens
                # a new one.
                self._free.append(client)
                raise
            else:
                self._free.append(client)

    def first_use(self, client: httpx.AsyncClient) -> bool:
        """Whether this is the first request of a lane, whose time includes connecting.

        Asked once per request: the answer is True only the first time.
        """
        if client in self._unused:
            self._unused.remove(client)
            return True
        return False

    def _new(self) -> httpx.AsyncClient:
        client = self._make_client()
        self._all.append(client)
        self._unused.add(client)
        return client

    async def aclose(self) -> None:
        """Close every lane, each even if closing another failed or was cancelled."""
        clients, self._all, self._free = self._all, [], []
        self._unused.clear()
        async with contextlib.AsyncExitStack() as closing:
            for client in clients:
                closing.push_async_callback(client.aclose)

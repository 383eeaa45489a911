"""HTTP lanes: one keep-alive connection per request in flight, not one shared pool.

httpcore's connection pool (1.0.9) re-examines its connections every time a
request starts or ends: for each one, whether the socket is readable (through
anyio, which builds a dictionary of socket attributes for every question),
and for each idle one, a count of all the others. With 16 connections that is
dozens of socket checks and hundreds of state checks per request. Profiled
against the sandbox, a plain httpx loop over one 16-connection client spent
3.5 ms of CPU per PATCH; 16 one-connection clients spent 1.9 ms, and wrote
1.8 times as fast.

So a lane is one httpcore connection, and a request borrows a free lane for
its whole exchange: never more requests in flight than lanes
(SYNCD_CONCURRENCY; the adaptive limit of syncd.api.control admits fewer when
the server asks for less). There is no httpx client, nor even a pool, in
between: for one PATCH to the sandbox, a one-connection httpx.AsyncClient
spent 620 µs of CPU, a one-connection httpcore pool 345 µs and the httpcore
connection itself 260 µs (180 µs on syncd.api.streams, its network without
anyio). The client's building, merging and wrapping of every request and
answer serve features that syncd does not use, or must not: no redirect is
followed, no cookie is kept (one user's session cookie must never travel
with another's call), every header is our own.

A lane is checked as it is lent, as the pool would: one whose connection the
server closed or let expire is replaced before the request is sent, so a
POST (never retried) is not lost to a keep-alive connection that is already
gone. One that comes back neither idle nor closed (left mid-exchange) is
closed and made anew. Through a proxy a lane is a one-connection httpcore
proxy pool, which makes those checks itself. Lanes are made on first need
and lent most-recently-returned first, so a light load makes few
connections; they are closed by `aclose()`, at the end of the run that made
them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import httpcore

from syncd.errors import TransportError

#: What httpcore raises when an exchange fails on the way (httpx maps the same
#: ones onto its TransportError): the lane's connection is no longer to be trusted.
CONNECTION_FAILURES: tuple[type[Exception], ...] = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
    httpcore.ConnectionNotAvailable,
)
_LANE_LOST: tuple[type[Exception], ...] = (TransportError, *CONNECTION_FAILURES)


class Connection(Protocol):
    """An httpcore connection, or a pool of one: what a lane sends its requests on."""

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response: ...

    async def aclose(self) -> None: ...


class Lanes:
    """At most `count` connections, each lent to one request at a time."""

    def __init__(self, count: int, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._slots = asyncio.Semaphore(count)
        self._free: list[Connection] = []
        self._all: list[Connection] = []
        # Lanes made and not yet lent: their first request also opens the connection.
        self._unused: set[Connection] = set()

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[Connection]:
        """A connection that no other request is using until the block ends."""
        async with self._slots:
            # Free plus lent never exceeds the slots, so a slot means a free lane or room for one.
            connection = self._free.pop() if self._free else self._new()
            if _gone(connection):
                await self._discard(connection)
                connection = self._new()
            try:
                yield connection
            except _LANE_LOST:
                # httpcore 1.0.9 keeps a proxy tunnel whose TLS handshake failed as an
                # active connection (encode/httpcore#1023): the lane's one slot would
                # stay taken, and each later request wait for the pool timeout. A lane
                # that lost its connection is closed and made anew when next needed.
                await self._discard(connection)
                raise
            except BaseException:
                await self._give_back(connection)
                raise
            else:
                await self._give_back(connection)

    async def _give_back(self, connection: Connection) -> None:
        # A direct connection comes back idle, its answer read and closed, or closed.
        # One that is neither was left mid-exchange: a cancel that landed in the close
        # of its answer leaves it active, and the next request would fail unsent.
        # (The proxy pool shields that close itself.)
        if isinstance(connection, httpcore.AsyncHTTPConnection) and not (
            connection.is_idle() or connection.is_closed()
        ):
            await self._discard(connection)
        else:
            self._free.append(connection)

    def first_use(self, connection: Connection) -> bool:
        """Whether this is the first request of a lane, whose time includes connecting.

        Asked once per request: the answer is True only the first time.
        """
        if connection in self._unused:
            self._unused.remove(connection)
            return True
        return False

    def _new(self) -> Connection:
        connection = self._connect()
        self._all.append(connection)
        self._unused.add(connection)
        return connection

    async def _discard(self, connection: Connection) -> None:
        self._all.remove(connection)
        self._unused.discard(connection)
        with contextlib.suppress(Exception):
            await connection.aclose()

    async def aclose(self) -> None:
        """Close every lane, each even if closing another failed or was cancelled."""
        connections, self._all, self._free = self._all, [], []
        self._unused.clear()
        async with contextlib.AsyncExitStack() as closing:
            for connection in connections:
                closing.push_async_callback(connection.aclose)


def _gone(connection: Connection) -> bool:
    """Whether a direct connection was closed, failed to open, or expired while idle.

    has_expired() also asks the socket whether the server has closed its end
    (it is readable while idle), as the pool does before it reuses a connection.
    """
    if not isinstance(connection, httpcore.AsyncHTTPConnection):
        return False  # a proxy pool replaces its one connection itself
    return connection.is_closed() or connection.has_expired()

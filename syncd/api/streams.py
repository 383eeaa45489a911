"""httpcore's network backend on asyncio's own transports, without anyio.

httpcore reaches the network through a backend (`network_backend=`); its
default on asyncio is anyio's, which opens a cancel scope for every read and
write, and asks sniffio which event loop is running each time. For a PATCH
against the sandbox that was 110 µs of CPU of the 290 µs that the whole
exchange cost on an httpcore connection: with this backend, 180 µs.

A stream is an asyncio protocol with a buffer of its own: what arrives is
kept until httpcore reads it, and reading from the socket pauses while more
than READ_LIMIT bytes wait, so a server that sends faster than we read fills
the kernel's buffers, not our memory. The direct lanes use it
(syncd.api.transport); a proxy's lanes keep httpcore's default, for the TLS
inside TLS of an https:// proxy.

Errors are httpcore's, as its own backends raise them (a refused connection
is a ConnectError, a reset one a ReadError or WriteError), so callers see one
set of exceptions whichever backend a lane has. A `timeout` bounds each step
when given; the client gives none, and bounds each whole exchange instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
from collections.abc import Awaitable, Iterable, Iterator
from typing import Any, TypeVar

import httpcore

T = TypeVar("T")

#: Seconds before the next address of a name is tried while the last is still connecting.
HAPPY_EYEBALLS_DELAY = 0.25

#: Bytes kept unread before the socket is read no more: four of httpcore's reads.
READ_LIMIT = 256 * 1024


class _Buffered(asyncio.Protocol):
    """What a connection has received and not yet been read, and whether it has ended."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.ended = False
        self.lost: Exception | None = None
        self.paused = False
        self._arrival: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > READ_LIMIT and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        _wake(self._arrival)

    def eof_received(self) -> bool:
        self.ended = True
        _wake(self._arrival)
        return False  # close our side too: HTTP/1.1 sends nothing after the server has ended

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.lost = exc
        _wake(self._arrival)
        _wake(self._drained)

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        _wake(self._drained)
        self._drained = None

    async def arrival(self) -> None:
        self._arrival = asyncio.get_running_loop().create_future()
        try:
            await self._arrival
        finally:
            self._arrival = None

    async def drained(self) -> None:
        if self._drained is not None:
            await asyncio.shield(self._drained)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP connection, or the TLS connection over it, as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Buffered) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.received and not protocol.ended:
            await _within(timeout, httpcore.ReadTimeout, self._arrived())
        received = protocol.received
        if not received:
            if protocol.lost is not None:
                raise httpcore.ReadError(_reason(protocol.lost))
            return b""  # the end of the stream, as httpcore expects it
        if len(received) <= max_bytes:
            data = bytes(received)
            received.clear()
        else:
            data = bytes(received[:max_bytes])
            del received[:max_bytes]
        if protocol.paused and len(received) <= READ_LIMIT // 2:
            protocol.paused = False
            assert protocol.transport is not None
            protocol.transport.resume_reading()  # the one that data_received paused
        return data

    async def _arrived(self) -> None:
        protocol = self._protocol
        while not protocol.received and not protocol.ended:
            await protocol.arrival()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing() or self._protocol.ended:
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        await _within(timeout, httpcore.WriteTimeout, self._protocol.drained())
        if self._protocol.lost is not None:
            raise httpcore.WriteError(_reason(self._protocol.lost))

    async def aclose(self) -> None:
        # At once, as anyio's backend closes: close() would keep the socket until the
        # unsent bytes are flushed (forever, to a peer that stopped reading), or on
        # TLS until the peer answers close_notify (asyncio waits up to 30 s).
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        handshake = loop.start_tls(
            self._transport, self._protocol, ssl_context, server_hostname=server_hostname
        )
        with _failing_as(httpcore.ConnectError):
            transport = await _within(timeout, httpcore.ConnectTimeout, handshake)
        if transport is None:  # the connection ended during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        assert isinstance(transport, asyncio.Transport)
        # From now on the protocol hears from, and pauses, the TLS transport.
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Idle, a connection with something to read has been closed by the server
            # (or answers what was never asked): the loop may not have seen it yet.
            protocol = self._protocol
            return bool(protocol.received) or protocol.ended or _socket_readable(self._socket())
        if info == "socket":
            return self._socket()
        names = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername"}
        if info in names:
            return self._transport.get_extra_info(names[info])
        return None

    def _socket(self) -> Any:
        return self._transport.get_extra_info("socket")


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """TCP connections made by the running asyncio loop (TCP_NODELAY, as asyncio sets it)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if socket_options:
            raise httpcore.UnsupportedProtocol("socket options are not supported")
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        # Each address the name has, the next 0.25 s after the last (RFC 8305, as anyio
        # connects): one address that drops its packets must not stall every connection.
        connecting = loop.create_connection(
            _Buffered, host, port, local_addr=local, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY
        )
        with _failing_as(httpcore.ConnectError):
            transport, protocol = await _within(timeout, httpcore.ConnectTimeout, connecting)
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _within(timeout: float | None, raised: type[Exception], step: Awaitable[T]) -> T:
    """`step`, within `timeout` seconds or failing with `raised`; unbounded for None."""
    if timeout is None:
        return await step
    try:
        async with asyncio.timeout(timeout):
            return await step
    except TimeoutError:
        raise raised(f"no progress within {timeout:g} s") from None


@contextlib.contextmanager
def _failing_as(raised: type[Exception]) -> Iterator[None]:
    """OSError and TLS errors (ssl.SSLError is an OSError) as httpcore's `raised`."""
    try:
        yield
    except OSError as error:
        raise raised(_reason(error)) from None


def _reason(error: BaseException) -> str:
    return str(error) or error.__class__.__name__


def _socket_readable(sock: socket.socket | None) -> bool:
    if sock is None:
        return True  # no socket: nothing more can be read, and nothing sent
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))

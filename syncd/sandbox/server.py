"""Running the sandbox on uvicorn: in the foreground for the command, in a thread for tests.

The socket is bound before uvicorn starts, so that port 0 can pick a free port
whose number is known at once; the URL is announced only once uvicorn is
serving (its `started` flag, signalled through an event, never by sleeping).
The access log is off unless asked for: it costs a third of the throughput.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn

from syncd.errors import UsageError
from syncd.sandbox.app import OneLineForDroppedConnections, SandboxApp
from syncd.sandbox.runtime import Sandbox, SandboxConfig
from syncd.sandbox.store import Snapshot


class _Server(uvicorn.Server):
    """A uvicorn server that reports the end of its start-up, whether it started or not."""

    def __init__(self, config: uvicorn.Config, on_startup: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_startup = on_startup

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self._on_startup()


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0: any free port), or UsageError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise UsageError(f"--host {host}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _uvicorn_config(sandbox: Sandbox, access_log: bool, own_logging: bool) -> uvicorn.Config:
    config = uvicorn.Config(
        SandboxApp(sandbox),
        lifespan="off",
        access_log=access_log,
        # Access lines are logged at INFO: asking for them means INFO.
        log_level="info" if access_log else "warning",
        # In a thread (tests, `syncd demo`) the host process owns logging.
        log_config=uvicorn.config.LOGGING_CONFIG if own_logging else None,
    )
    error_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, OneLineForDroppedConnections) for f in error_logger.filters):
        error_logger.addFilter(OneLineForDroppedConnections())
    return config


def serve(
    sandbox: Sandbox, host: str, port: int, *, access_log: bool, on_ready: Callable[[str], None]
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM); `on_ready(url)` once requests are served."""
    sock = bind(host, port)
    url = url_of(sock)

    def announce() -> None:
        if server.started:
            on_ready(url)

    server = _Server(_uvicorn_config(sandbox, access_log, own_logging=True), announce)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@contextmanager
def serve_in_thread(state: SandboxConfig | Snapshot) -> Iterator[str]:
    """Serve a sandbox on a free loopback port, in a thread; yields its URL, stops on exit."""
    config = state if isinstance(state, SandboxConfig) else SandboxConfig(snapshot=state)
    sandbox = Sandbox(config)
    sock = bind("127.0.0.1", 0)
    started = threading.Event()
    server = _Server(_uvicorn_config(sandbox, access_log=False, own_logging=False), started.set)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            started.set()  # never leave the caller waiting on a server that died

    thread = threading.Thread(target=run, name="syncd-sandbox", daemon=True)
    try:
        thread.start()
        started.wait()
        if not server.started:
            raise RuntimeError("the sandbox server did not start (see the log)")
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
        sandbox.close()

"""The daemon's HTTP listener (SYNCD_METRICS_ADDR): /metrics, /healthz, /readyz, the pages.

The server runs in a thread of its own: a scrape never waits for the event
loop, and a busy loop never fails a scrape. What it answers comes from
syncd.service.metrics (/readyz's short reason: Metrics.probe_readiness). Every
other GET goes to the status pages (syncd.service.ui), which decide who may look.

Whoever can reach the address can open connections: syncd.service.admission
says which it serves and when. The listener's errors go to the structured log,
never to stderr as text among the JSON lines.
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from syncd.errors import StateError, UsageError
from syncd.logs import get_logger
from syncd.service.admission import (
    CONNECTION_TIMEOUT,
    HOOK_THREADS,
    MAX_THREADS,
    MAX_WAITING,
    Gate,
    Refusals,
    Waiting,
)
from syncd.service.metrics import Metrics
from syncd.service.ui import StatusPages
from syncd.service.webhook import MAX_BODY_BYTES as MAX_HOOK_BYTES
from syncd.service.webhook import PATH as HOOK_PATH
from syncd.service.webhook import RETRY_AFTER, Webhook
from syncd.settings import Settings

_LENGTH = re.compile(r"[0-9]{1,10}")

log = get_logger("syncd.listener")


def parse_address(address: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces) → (host, port)."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"metrics address {address!r}: expected host:port, e.g. 127.0.0.1:9105")
    return host.strip("[]"), int(port)


class MetricsServer:
    """Serves /metrics, /healthz, /readyz, the pages (and /hooks/git) from a thread until
    `close()`."""

    def __init__(
        self, address: str, settings: Settings, metrics: Metrics, webhook: Webhook | None
    ) -> None:
        host, port = parse_address(address)
        pages = StatusPages.from_settings(settings, host, metrics)
        handler = _handler_for(metrics, webhook, pages)
        server_class = _V6Server if ":" in host else _Server
        refusals = Refusals(lambda reason: metrics.listener_refused.labels(reason).inc())
        try:
            self._server = server_class((host, port), handler, refusals=refusals)
        except OSError as error:
            raise UsageError(f"metrics address {address}: {error.strerror}") from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="syncd-metrics", daemon=True
        )

    @property
    def address(self) -> str:
        """Where it listens, with the port the kernel chose for port 0."""
        host, port = self._server.socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def start(self) -> None:
        self._server.gate.start()
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    """A thread per whole request (see syncd.service.admission); errors to the log."""

    daemon_threads = True
    block_on_close = False  # a closing daemon does not wait for a slow client
    # The kernel's queue of connections not yet accepted: socketserver's 5 dropped
    # the SYNs of a burst, and each dropped one waits a second for its retry.
    request_queue_size = MAX_WAITING

    def __init__(self, *args: Any, refusals: Refusals, **kwargs: Any) -> None:
        self._threads_free = threading.BoundedSemaphore(MAX_THREADS)
        self._hook_threads_free = threading.BoundedSemaphore(HOOK_THREADS)
        self._served: dict[socket.socket, Waiting] = {}
        self._served_lock = threading.Lock()
        self.gate = Gate(self._serve, refusals)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.gate.admit(request, client_address)  # no thread until its head is whole

    def _serve(self, waiting: Waiting) -> bool:
        """A thread for a whole request head, if one is free (from the gate's thread)."""
        if waiting.is_hook and not self._hook_threads_free.acquire(blocking=False):
            return False
        if not self._threads_free.acquire(blocking=False):
            if waiting.is_hook:
                self._hook_threads_free.release()
            return False
        with self._served_lock:
            self._served[waiting.connection] = waiting
        super().process_request(waiting.connection, waiting.client)
        return True

    def waiting_of(self, connection: socket.socket) -> Waiting:
        """What the gate read of a connection it handed on (from the handler's thread)."""
        with self._served_lock:
            return self._served[connection]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._served_lock:
                waiting = self._served.pop(request)
            self._threads_free.release()
            if waiting.is_hook:
                self._hook_threads_free.release()

    def server_close(self) -> None:
        super().server_close()
        self.gate.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr: plain text among the JSON lines.
        log.warning("metrics_listener_error", client=client_address[0], exc_info=True)


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _DeadlineReader(io.RawIOBase):
    """A connection's bytes (first those the gate read), as long as its deadline has
    not passed."""

    def __init__(self, connection: socket.socket, waiting: Waiting) -> None:
        self.connection = connection
        self.deadline = waiting.deadline
        self._read = bytes(waiting.head)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._read:
            size = min(len(buffer), len(self._read))
            buffer[:size] = self._read[:size]
            self._read = self._read[size:]
            return size
        # Each wait is for what is left of the deadline, not for a fresh timeout:
        # a byte every few seconds does not keep a connection open.
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no whole request in {CONNECTION_TIMEOUT:g} s")
        self.connection.settimeout(remaining)
        return self.connection.recv_into(buffer)


def _handler_for(
    metrics: Metrics, webhook: Webhook | None, pages: StatusPages
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "syncd"
        sys_version = ""

        def setup(self) -> None:
            super().setup()
            # One request per connection (HTTP/1.0), whole within CONNECTION_TIMEOUT of
            # the connection's start.
            waiting = self.server.waiting_of(self.connection)  # type: ignore[attr-defined]
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, waiting))

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                alive, verdict = metrics.liveness()
                self._verdict(alive, "ok" if alive else "unhealthy", verdict)
            elif path == "/readyz":
                ready, verdict = metrics.probe_readiness()
                self._verdict(ready, "ready" if ready else "not ready", verdict)
            else:
                headers = self.headers
                self._answer(*pages.answer(self.path, headers["Authorization"], headers["Host"]))

        def do_POST(self) -> None:
            if webhook is None or self.path.split("?", 1)[0] != HOOK_PATH:
                self._answer(404, b"not found\n", "text/plain")
                return
            result, status, text = self._hook(webhook)
            metrics.webhooks.labels(result).inc()
            retry = {"Retry-After": str(RETRY_AFTER)} if status == 503 else {}
            self._answer(status, text.encode() + b"\n", "text/plain; charset=utf-8", retry)

        def _hook(self, hook: Webhook) -> tuple[str, int, str]:
            length = self.headers.get("Content-Length")
            if length is None:
                return "bad_request", 411, "a hook needs a Content-Length"
            # ASCII digits only: `²` passed isdigit() and int() raised.
            if not _LENGTH.fullmatch(length):
                self.close_connection = True  # where its body ends is not known
                return "bad_request", 400, "the Content-Length is not a number"
            if int(length) > MAX_HOOK_BYTES:
                self.close_connection = True  # its body is not read
                return "too_large", 413, f"a hook body is at most {MAX_HOOK_BYTES} bytes"
            body = self.rfile.read(int(length))
            # Header names in any case: a proxy (HTTP/2 among them) lower-cases them.
            headers = {name.lower(): value for name, value in self.headers.items()}
            sender = hook.sender(headers, body)
            if sender is None:
                log.warning("hook_refused", client=self.client_address[0])
                return "unauthorized", 401, "invalid or missing signature: nothing started"
            event = self.headers.get("X-GitHub-Event") or self.headers.get("X-Gitlab-Event")
            if not hook.first_delivery(headers):
                log.info("hook_duplicate", sender=sender, hook_event=event)
                return "duplicate", 202, "a delivery already received: ignored"
            if not hook.concerns(body):
                log.info("hook_ignored", sender=sender, hook_event=event)
                return "ignored", 202, f"not a push to {hook.ref}: ignored"
            start_cycle = hook.start_cycle
            try:
                if start_cycle is None:
                    raise StateError("this instance is starting: nothing can start a cycle yet")
                answer = start_cycle(f"{sender} hook")
            except StateError as error:
                hook.forget_delivery(headers)  # its retry starts the cycle
                log.warning("hook_unavailable", sender=sender, hook_event=event, error=str(error))
                return "unavailable", 503, "no cycle can be started now: try again"
            log.info("hook_accepted", sender=sender, hook_event=event)
            return "accepted", 202, answer

        def _verdict(self, good: bool, word: str, verdict: str) -> None:
            body = f"{word}: {verdict}\n".encode()
            self._answer(200 if good else 503, body, "text/plain; charset=utf-8")

        def _answer(
            self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {}
        ) -> None:
            # Writing gets a timeout of its own: the one left of the read may be short.
            self.connection.settimeout(CONNECTION_TIMEOUT)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_error(self, format: str, *args: Any) -> None:
            message = format % args
            # A connection left open by a scraper ends so: not news.
            report = log.debug if message.startswith("Request timed out") else log.warning
            report("metrics_listener_request_error", client=self.client_address[0], error=message)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not news; errors go to log_error

    return Handler

"""The daemon's HTTP listener (SYNCD_METRICS_ADDR): /metrics, /healthz and /readyz.

The server runs in a thread of its own: a scrape never waits for the event
loop, and a busy loop never fails a scrape. What it answers comes from
syncd.service.metrics.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from syncd.errors import UsageError
from syncd.service.metrics import Metrics


def parse_address(address: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces) → (host, port)."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"metrics address {address!r}: expected host:port, e.g. 127.0.0.1:9105")
    return host.strip("[]"), int(port)


class MetricsServer:
    """Serves /metrics and /healthz from a thread until `close()`."""

    def __init__(self, address: str, metrics: Metrics) -> None:
        host, port = parse_address(address)
        handler = _handler_for(metrics)
        server_class = _V6Server if ":" in host else ThreadingHTTPServer
        try:
            self._server = server_class((host, port), handler)
        except OSError as error:
            raise UsageError(f"metrics address {address}: {error.strerror}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="syncd-metrics", daemon=True
        )

    @property
    def address(self) -> str:
        """Where it listens, with the port the kernel chose for port 0."""
        host, port = self._server.socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler_for(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "syncd"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                alive, verdict = metrics.liveness()
                self._verdict(alive, "ok" if alive else "unhealthy", verdict)
            elif path == "/readyz":
                ready, verdict = metrics.readiness()
                self._verdict(ready, "ready" if ready else "not ready", verdict)
            else:
                body = b"not found: try /metrics, /healthz or /readyz\n"
                self._answer(404, body, "text/plain")

        def _verdict(self, good: bool, word: str, verdict: str) -> None:
            body = f"{word}: {verdict}\n".encode()
            self._answer(200 if good else 503, body, "text/plain; charset=utf-8")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not news; errors show in the scraper

    return Handler

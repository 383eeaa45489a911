"""The daemon's metrics (prometheus-client) and its tiny HTTP server for /metrics and /healthz.

Every metric lives in a private CollectorRegistry owned by one `Metrics`, never
in prometheus-client's global registry, so that two daemons in one process
(tests) never share counters. The server runs in a thread of its own: a scrape
never waits for the event loop, and a busy loop never fails a scrape.

/healthz answers 200 while the last successful run (or the start of the daemon,
so that a first cold run has time) is younger than three intervals, 503 after.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from syncd.errors import UsageError

#: Runs of many users under a rate limit last minutes; buckets up to an hour.
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
HEALTHY_INTERVALS = 3


class Metrics:
    """The counters and gauges of one daemon, and the health rule."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.interval = interval
        self._clock = clock
        self.started = clock()
        self.last_success: float | None = None
        r = self.registry
        self.runs = Counter("syncd_runs", "Daemon runs, by result.", ["result"], registry=r)
        self.changes = Counter(
            "syncd_changes", "Writes sent, by action and result.", ["action", "result"], registry=r
        )
        self.last_success_gauge = Gauge(
            "syncd_last_success_timestamp_seconds",
            "Unix time of the last run that ended ok or with nothing to change.",
            registry=r,
        )
        self.drift = Gauge(
            "syncd_drift_users",
            "Users that still differ from the desired state after the last run.",
            registry=r,
        )
        self.http = Counter(
            "syncd_http_requests",
            "Requests to the accounts API, by method and status (none: no answer).",
            ["method", "code"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "syncd_http_request_duration_seconds",
            "Duration of requests to the accounts API.",
            ["method"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "syncd_run_duration_seconds",
            "Duration of daemon runs.",
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.guard_blocked = Gauge(
            "syncd_guard_blocked",
            "1 when the deletion guard refused the last run, else 0.",
            registry=r,
        )
        self.skipped = Counter(
            "syncd_scheduler_skipped_runs",
            "Scheduled runs not started: missed (too late) or overlapping a running one.",
            ["reason"],
            registry=r,
        )
        self.failures = Gauge(
            "syncd_consecutive_failures", "Failed runs since the last success.", registry=r
        )
        self.next_run = Gauge(
            "syncd_next_run_timestamp_seconds", "Unix time of the next scheduled run.", registry=r
        )

    def observe_response(self, method: str, status: int | None, seconds: float) -> None:
        """The ResponseObserver of the API client."""
        self.http.labels(method, "none" if status is None else str(status)).inc()
        self.http_seconds.labels(method).observe(seconds)

    def observe_changes(self, ok: Mapping[str, int], failed: Iterable[tuple[str, str]]) -> None:
        """Writes that succeeded, by action; one (action, result) per write that did not."""
        for action, count in ok.items():
            self.changes.labels(action, "ok").inc(count)
        for action, result in failed:
            self.changes.labels(action, result).inc()

    def observe_run(
        self,
        result: str,
        seconds: float,
        *,
        success: bool,
        failures: int,
        drift_users: int | None,
        next_run: float | None,
    ) -> None:
        """One daemon run's end; `drift_users` None when the run could not tell."""
        self.runs.labels(result).inc()
        self.run_seconds.observe(seconds)
        if success:
            self.succeeded(self._clock())
        self.failures.set(failures)
        if drift_users is not None:
            self.drift.set(drift_users)
        # Only a run that got as far as the plan knows whether the guard would refuse.
        if result in {"ok", "no_changes", "failed", "blocked"}:
            self.guard_blocked.set(result == "blocked")
        if next_run is not None:
            self.next_run.set(next_run)

    def succeeded(self, when: float) -> None:
        self.last_success = when
        self.last_success_gauge.set(when)

    def healthy(self) -> tuple[bool, str]:
        since = max(self.started, self.last_success or 0.0)
        age = self._clock() - since
        limit = HEALTHY_INTERVALS * self.interval
        what = (
            "last success" if self.last_success and self.last_success >= self.started else "start"
        )
        verdict = f"{what} {age:.0f} s ago (limit {limit:.0f} s)"
        return age < limit, verdict


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
                healthy, verdict = metrics.healthy()
                body = f"{'ok' if healthy else 'unhealthy'}: {verdict}\n".encode()
                self._answer(200 if healthy else 503, body, "text/plain; charset=utf-8")
            else:
                self._answer(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not news; errors show in the scraper

    return Handler

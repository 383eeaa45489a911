"""The daemon's idle cycle with two notification providers beside one without.

Notifications leave in the background (syncd.service.notifications): an idle
cycle with two webhooks configured should cost what one without does. The
receivers are a small http.server on loopback that answers 204.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import runs


class _Accept(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def idle_with_providers(
    url: str, desired: Path, state: Path, credentials: Path, cycles: int, without_ms: float
) -> tuple[float, dict[str, Any]]:
    """The median idle cycle (ms) with two webhooks configured, and how it compares."""
    secret = state.parent / "notify.secret"
    secret.write_text("bench-secret\n")
    secret.chmod(0o600)
    config = state.parent / "notify.toml"
    with receiver() as first, receiver() as second:
        config.write_text(
            "".join(
                f'[[notify]]\ntype = "webhook"\nurl = "{hook}"\nsecret_file = "{secret}"\n'
                for hook in (first, second)
            )
        )
        measured = runs.daemon_cycles(
            url,
            desired,
            state,
            credentials,
            cycles,
            interval=1.5,
            window=3.2e7,
            settings={"SYNCD_CONFIG": str(config)},
        )
    with_ms = statistics.median(measured.seconds) * 1000
    return with_ms, {
        "without_ms": round(without_ms, 1),
        "ratio": round(with_ms / without_ms, 2) if without_ms else None,
        "cycles": len(measured.seconds),
        "target": "within noise of the idle cycle without providers (ratio about 1)",
    }

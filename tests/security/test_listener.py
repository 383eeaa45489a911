"""The daemon's HTTP listener: slow connections closed, threads bounded, errors in JSON,
/healthz and hooks served whatever idle connections wait."""

from __future__ import annotations

import json
import re
import select
import socket
import struct
import time
from pathlib import Path

import httpx

from syncd.service.admission import CONNECTION_TIMEOUT, MAX_THREADS, MAX_WAITING
from tests.daemon.harness import SECRET, DaemonProcess, hooked_daemon, signed
from tests.world import World

MARGIN = 5.0  # seconds: a loaded CI machine is slow, not wrong


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def start_listening(start_daemon) -> tuple[DaemonProcess, tuple[str, int]]:
    daemon: DaemonProcess = start_daemon(SYNCD_METRICS_ADDR="127.0.0.1:0", SYNCD_INTERVAL="300")
    host, port = daemon.wait_for("metrics_listening")["address"].rsplit(":", 1)
    daemon.wait_for("cycle_finished")  # the first run's threads have come and gone
    return daemon, (host, int(port))


def closed_by_server(connection: socket.socket, deadline: float, trickle: bytes = b"") -> float:
    """When the server closed `connection` (monotonic), sending one byte of `trickle` a second."""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([connection], [], [], 1.0)
        if readable:
            try:
                if connection.recv(4096) == b"":
                    return time.monotonic()
            except ConnectionResetError:
                return time.monotonic()
        elif trickle:
            connection.send(trickle[:1])
            trickle = trickle[1:]
    raise AssertionError("the server kept the connection open")


def test_idle_and_slow_connections_are_closed_and_threads_bounded(
    world: World, start_daemon
) -> None:
    # Idle connections were never closed: the daemon's threads went from 2 to 178.
    daemon, address = start_listening(start_daemon)
    before = threads(daemon.pid)
    opened = time.monotonic()
    slow = socket.create_connection(address)
    slow.send(b"GET /healthz HTTP/1.0\r\n")
    idle = [socket.create_connection(address) for _ in range(4 * MAX_THREADS)]
    try:
        # Waiting for their request, they hold no thread.
        assert threads(daemon.pid) <= before + 1
        # A header a byte a second does not keep a connection open past the timeout.
        deadline = opened + CONNECTION_TIMEOUT + MARGIN
        closed = closed_by_server(slow, deadline, trickle=b"X-Slow: " + b"a" * 30)
        assert closed - opened >= CONNECTION_TIMEOUT - 1
        for connection in idle:
            closed_by_server(connection, deadline)
    finally:
        for connection in [slow, *idle]:
            connection.close()
    answer = httpx.get(f"http://{address[0]}:{address[1]}/healthz", timeout=10)
    assert answer.status_code == 200, answer.text
    assert daemon.stop() == 0


IDLE = 200  # connections that send part of a request and wait


def test_idle_connections_deny_neither_healthz_nor_hooks(world: World, start_daemon, tmp_path):
    # Eight idle connections that had sent part of a request took every slot:
    # /healthz and valid hooks got 503, and each refused connection was logged.
    daemon, address = hooked_daemon(start_daemon, tmp_path / "hook.secret", SECRET)
    host, port = address.rsplit(":", 1)
    idle = []
    try:
        for _ in range(IDLE):
            connection = socket.create_connection((host, int(port)))
            connection.send(b"POST /hooks/git HTTP/1.1\r\nHost: syncd\r\n")
            idle.append(connection)
        for _ in range(10):
            answer = httpx.get(f"http://{address}/healthz", timeout=5)
            assert answer.status_code == 200, answer.text
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        hook = httpx.post(
            f"http://{address}/hooks/git",
            content=body,
            headers={"X-Hub-Signature-256": signed(body)},
            timeout=5,
        )
        assert hook.status_code == 202, hook.text
        metrics = httpx.get(f"http://{address}/metrics", timeout=5).text
    finally:
        for connection in idle:
            connection.close()
    evicted = re.search(r'^syncd_listener_refused_total\{reason="evicted"\} (\S+)$', metrics, re.M)
    assert evicted is not None
    assert float(evicted.group(1)) >= IDLE - MAX_WAITING
    assert daemon.stop() == 0
    refused = [line for line in daemon.lines if "refused" in line or "busy" in line]
    assert len(refused) == 1, refused  # at most one line a minute


def test_listener_errors_are_json_log_lines(world: World, start_daemon) -> None:
    # A client that resets mid-request put a traceback on stderr, as plain text
    # among the JSON lines.
    daemon, address = start_listening(start_daemon)
    connection = socket.create_connection(address)
    connection.send(b"GET /metrics HTTP/1.0\r\nHost: x\r\n")
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()  # with SO_LINGER 0: a reset, while the server waits for the rest
    error = daemon.wait_for("metrics_listener_refused", timeout=CONNECTION_TIMEOUT + MARGIN)
    assert "ConnectionResetError" in str(error.get("exception"))
    assert error["refused"] == {"reset": 1}
    assert daemon.stop() == 0
    assert daemon.lines, "no log at all"
    assert [line for line in daemon.lines if not line.startswith("{")] == []


def exchange(address: str, request: bytes) -> bytes:
    """Send `request` whole (HTTP/1.0: the server closes after its answer); the answer."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=CONNECTION_TIMEOUT + MARGIN) as c:
        c.sendall(request)
        answer = b""
        while data := c.recv(65536):
            answer += data
    return answer


def test_hook_headers_are_matched_whatever_their_case(world: World, start_daemon, tmp_path):
    # A proxy that lower-cases header names (HTTP/2 does) broke every hook: 401.
    daemon, address = hooked_daemon(start_daemon, tmp_path / "hook.secret", SECRET)
    body = b'{"ref": "refs/heads/main"}'
    for headers in (
        f"x-hub-signature-256: {signed(body)}\r\nx-github-event: push\r\n",
        f"X-GITLAB-TOKEN: {SECRET}\r\nx-gitlab-event: Push Hook\r\n",
    ):
        request = (
            f"POST /hooks/git HTTP/1.0\r\nhost: syncd\r\n{headers}"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        answer = exchange(address, request + body)
        assert answer.split(b" ")[1] == b"202", answer
    assert daemon.stop() == 0


def test_a_content_length_of_other_digits_is_400_without_a_traceback(
    world: World, start_daemon, tmp_path
):
    # `Content-Length: ²` passed isdigit(), and int() put a traceback in the log.
    daemon, address = hooked_daemon(start_daemon, tmp_path / "hook.secret", SECRET)
    for length in (b"\xb2", b"\xd9\xa3", b"+2", b" 2 2", b"-1", b"0x10"):
        request = (
            b"POST /hooks/git HTTP/1.0\r\nHost: syncd\r\nX-Gitlab-Token: "
            + SECRET.encode()
            + b"\r\nContent-Length: "
            + length
            + b"\r\n\r\n{}"
        )
        answer = exchange(address, request)
        assert answer.split(b" ")[1] == b"400", (length, answer)
    missing = exchange(address, b"POST /hooks/git HTTP/1.0\r\nX-Gitlab-Token: x\r\n\r\n")
    assert missing.split(b" ")[1] == b"411"
    metrics = httpx.get(f"http://{address}/metrics").text
    assert 'syncd_webhook_requests_total{result="bad_request"} 7.0' in metrics
    assert daemon.stop() == 0
    assert [line for line in daemon.lines if "listener_error" in line] == []
    assert [line for line in daemon.lines if not line.startswith("{")] == []

"""Which connections the daemon's listener serves, and when: none can starve /healthz.

Eight idle connections that had sent part of a request held every thread of the
listener: /healthz and valid hooks were answered 503 (a liveness probe then
restarts the daemon), and each refused connection was a log line (64,515 lines
in 30 s). So a connection gets no thread until its request head has arrived
whole: until then it waits in the Gate, one thread with a selector for all of
them, which costs a file descriptor and a small buffer each. A head must arrive
within CONNECTION_TIMEOUT of the connection's start; at most MAX_WAITING
connections wait, and one more pushes the oldest out (a probe sends its head as
it connects, so it is never the oldest for long). A whole request then takes
a thread, MAX_THREADS at most; hooks (POST, whose body still has to arrive)
take at most HOOK_THREADS of them, so that a GET always finds one.

Every connection closed unserved is counted (syncd_listener_refused_total,
by reason), and logged at most once a minute, with the counts since the last
line.
"""

from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from syncd.logs import get_logger

#: Seconds a connection has to send its whole request (head and body) from its start.
CONNECTION_TIMEOUT = 5.0
#: Requests served at once, each by a thread; hooks take at most HOOK_THREADS.
MAX_THREADS = 8
HOOK_THREADS = MAX_THREADS // 2
#: Connections waiting for their request head, without a thread.
MAX_WAITING = 128
#: The longest request head read (http.server's own limit for a line).
MAX_HEAD_BYTES = 65536
#: At most one log line about refused connections per this many seconds.
REFUSAL_LOG_EVERY = 60.0
#: Why a connection was closed unserved: each a label of syncd_listener_refused_total.
REFUSALS = ("busy", "evicted", "timeout", "too_large", "reset")

log = get_logger("syncd.listener")


@dataclass(slots=True)
class Waiting:
    """A connection whose request head has not arrived whole yet: what has."""

    connection: socket.socket
    client: tuple[str, int]
    deadline: float
    head: bytearray = field(default_factory=bytearray)

    @property
    def is_hook(self) -> bool:
        return bytes(self.head[:5]) == b"POST "


class Refusals:
    """Counts each connection closed unserved; logs at most once per REFUSAL_LOG_EVERY."""

    def __init__(self, count: Callable[[str], None]) -> None:
        self._count = count
        self._lock = threading.Lock()
        self._since: collections.Counter[str] = collections.Counter()
        self._logged_at: float | None = None

    def __call__(self, reason: str, client: str, error: BaseException | None = None) -> None:
        self._count(reason)
        with self._lock:
            self._since[reason] += 1
            now = time.monotonic()
            if self._logged_at is not None and now - self._logged_at < REFUSAL_LOG_EVERY:
                return
            self._logged_at, counts = now, dict(self._since)
            self._since.clear()
        log.warning(
            "metrics_listener_refused",
            refused=counts,
            last_client=client,
            exception=None if error is None else repr(error),
            next_line_in=f"{REFUSAL_LOG_EVERY:g} s at the earliest",
        )


class Gate:
    """Holds connections until their request head is whole, then hands them on."""

    def __init__(
        self,
        serve: Callable[[Waiting], bool],
        refuse: Refusals,
    ) -> None:
        #: Takes a connection whose head is whole; False when no thread is free.
        self._serve = serve
        self._refuse = refuse
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._arrived: collections.deque[tuple[socket.socket, tuple[str, int]]] = (
            collections.deque()
        )
        self._waiting: dict[socket.socket, Waiting] = {}  # oldest first
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="syncd-listener-gate", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        self._wake()
        self._thread.join(timeout=5)
        for waiting in list(self._waiting.values()):
            self._drop(waiting)
        for connection, _ in self._arrived:
            connection.close()
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def admit(self, connection: socket.socket, client: tuple[str, int]) -> None:
        """A connection just accepted (from the accepting thread)."""
        self._arrived.append((connection, client))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending
            self._wake_writer.send(b"\0")

    def _run(self) -> None:
        while not self._closing:
            timeout = None
            if self._waiting:
                first = min(waiting.deadline for waiting in self._waiting.values())
                timeout = max(0.0, first - time.monotonic())
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wake_reader:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_reader.recv(4096)
                    self._take_arrived()
                else:
                    self._read(key.data)
            now = time.monotonic()
            for waiting in [w for w in self._waiting.values() if w.deadline <= now]:
                self._drop(waiting)
                self._refuse("timeout", waiting.client[0])

    def _take_arrived(self) -> None:
        while self._arrived:
            connection, client = self._arrived.popleft()
            if len(self._waiting) >= MAX_WAITING:
                oldest = next(iter(self._waiting.values()))
                self._drop(oldest)
                self._refuse("evicted", oldest.client[0])
            connection.setblocking(False)
            waiting = Waiting(connection, client, time.monotonic() + CONNECTION_TIMEOUT)
            self._waiting[connection] = waiting
            self._selector.register(connection, selectors.EVENT_READ, waiting)

    def _read(self, waiting: Waiting) -> None:
        try:
            data = waiting.connection.recv(MAX_HEAD_BYTES)
        except BlockingIOError:
            return
        except OSError as error:  # reset by the client, mostly
            self._drop(waiting)
            self._refuse("reset", waiting.client[0], error)
            return
        if not data:  # the client hung up
            self._drop(waiting)
            return
        waiting.head += data
        if b"\r\n\r\n" in waiting.head or b"\n\n" in waiting.head:
            self._hand_on(waiting)
        elif len(waiting.head) >= MAX_HEAD_BYTES:
            _answer_and_close(waiting.connection, _TOO_LARGE)
            self._forget(waiting)
            self._refuse("too_large", waiting.client[0])

    def _hand_on(self, waiting: Waiting) -> None:
        self._forget(waiting)
        waiting.connection.setblocking(True)
        if not self._serve(waiting):
            _answer_and_close(waiting.connection, _BUSY)
            self._refuse("busy", waiting.client[0])

    def _forget(self, waiting: Waiting) -> None:
        self._selector.unregister(waiting.connection)
        del self._waiting[waiting.connection]

    def _drop(self, waiting: Waiting) -> None:
        self._forget(waiting)
        waiting.connection.close()


_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


def _answer_and_close(connection: socket.socket, answer: bytes) -> None:
    # Without waiting: the answer fits in the buffer of a socket that has sent, not read.
    with contextlib.suppress(OSError):
        connection.setblocking(False)
        connection.send(answer)
    connection.close()

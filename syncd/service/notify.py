"""The systemd notify protocol (sd_notify(3)), spoken directly over $NOTIFY_SOCKET.

One datagram per message, `KEY=value` lines, to a Unix socket whose address
systemd passes in the environment; an address starting with '@' is in the
abstract namespace. No systemd library is needed, and outside systemd (no
socket) every call does nothing, so the daemon runs the same way in a terminal.

The environment is read here and not in syncd.settings: NOTIFY_SOCKET and
WATCHDOG_USEC are not settings an operator chooses but the service manager's
channel to this process, read exactly as sd_notify(3) and sd_watchdog_enabled(3)
read them.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger("syncd.service.notify")

#: A STATUS= line longer than this is cut: systemctl shows one line.
MAX_STATUS_CHARS = 200


def _address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


@dataclass
class Notifier:
    """Sends notifications to the service manager; does nothing without a socket."""

    socket_address: str | None = None
    #: Microseconds within which systemd expects WATCHDOG=1, or None when it does not.
    watchdog_usec: int | None = None
    _warned: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Notifier:
        address = environ.get("NOTIFY_SOCKET") or None
        if address is not None and not address.startswith(("/", "@")):
            address = None  # sd_notify(3) accepts only these two forms (vsock needs more)
        watchdog: int | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process systemd watches; another one must not ping.
        ours = not watchdog_pid or watchdog_pid == str(os.getpid())
        if usec.isdigit() and int(usec) > 0 and ours:
            watchdog = int(usec)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.socket_address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the timeout, as sd_watchdog_enabled(3) says."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2_000_000

    def notify(self, **fields: str) -> bool:
        """Send one message, e.g. notify(READY="1", STATUS="..."); False when not delivered."""
        if self.socket_address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        try:
            # Non-blocking: a listener that reads slowly fills the socket's queue,
            # and a blocking send would then freeze the event loop, watchdog and
            # all. A status line dropped is better than a daemon stopped.
            with socket.socket(socket.AF_UNIX, kind) as sock:
                sock.sendto(message.encode(), _address(self.socket_address))
        except OSError as error:
            # Losing a status line must never stop a run; say so once, not every cycle.
            if not self._warned:
                log.warning("notify_failed", socket=self.socket_address, error=str(error))
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY="1", STATUS=_one_line(status))

    def status(self, status: str) -> bool:
        return self.notify(STATUS=_one_line(status))

    def reloading(self, monotonic_usec: int) -> bool:
        return self.notify(RELOADING="1", MONOTONIC_USEC=str(monotonic_usec))

    async def keep_watchdog(self) -> None:
        """Ping WATCHDOG=1 from the event loop until cancelled (at once without a watchdog):
        if the loop hangs, or a standby waits for hours, systemd still hears from it."""
        every = self.watchdog_interval
        while every is not None:
            self.notify(WATCHDOG="1")
            await asyncio.sleep(every)

    def stopping(self, status: str) -> bool:
        return self.notify(STOPPING="1", STATUS=_one_line(status))


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_STATUS_CHARS else line[: MAX_STATUS_CHARS - 1] + "…"

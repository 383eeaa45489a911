"""Push hooks that reach a standby start a cycle on the active instance (PostgreSQL).

A Service spreads hooks over its replicas, and only the active one reconciles:
a standby that accepts a hook (signature, delivery id and ref checked by the
listener) tells the active instance through the state database
(`StateStore.notify_hook`: a NOTIFY), and answers so. The active instance hears
it (`StateStore.hook_notifications`, a connection of its own, in a thread:
the event loop never waits for it) and asks for the same coalesced cycle as a
hook of its own (Daemon.run_now). A standby that cannot tell it raises the
StateError that the listener answers with 503 and Retry-After.

Nobody may hear a hook passed on while the lock changes hands; whoever takes
over starts with a cycle, which fetches that push too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from syncd.logs import get_logger
from syncd.service.webhook import PASSED_ON
from syncd.state.backend import StateStore

log = get_logger("syncd.service.hook_relay")

#: Seconds the daemon's stop waits for the listening thread (it looks at its stop
#: signal about once a second).
STOP_WAIT = 3.0


def pass_on(store: StateStore) -> Callable[[str], str]:
    """A standby's answer to a hook: tell the active instance (a StateError if it cannot)."""

    def start_cycle(why: str) -> str:  # from the listener's thread
        store.notify_hook(why)
        log.info("hook_passed_on", reason=why)
        return PASSED_ON

    return start_cycle


class HookRelay:
    """On the active instance: a cycle for each hook a standby passed on."""

    def __init__(self, store: StateStore, run_now: Callable[[str], None]) -> None:
        self._store = store
        self._run_now = run_now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._listen, args=(loop,), name="syncd-hook-relay", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, STOP_WAIT)

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        for reason in self._store.hook_notifications(self._stop):
            why = (
                f"{reason}, passed on by a standby"
                if reason
                else "hooks passed on by standbys may have been missed"
            )
            try:
                loop.call_soon_threadsafe(self._run_now, why)
            except RuntimeError:  # the loop has closed: the notifications end within HOOK_WAIT
                self._stop.set()

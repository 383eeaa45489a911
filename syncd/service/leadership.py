"""One active instance, others standing by: `syncd run` on a state that hosts share.

On PostgreSQL (syncd.state.postgres_backend) every `syncd run` connects, waits
for the session-level advisory lock as a standby (its /readyz says so, and who
is active), and once the lock is its own runs the daemon (syncd.service.daemon)
through that session. The daemon's first cycle starts at once and, like every
converge, first closes what the previous instance left open: its run is
recorded `interrupted`, its writes in flight too, and their users are read
again. When the session ends under it (the connection cut, the server
restarted), the daemon stops writing, and this loop connects again and stands
by, as any other instance would: the first to get the lock is active. A push
hook that reaches a standby is passed on to the active instance
(syncd.service.hook_relay).

On SQLite nothing waits: the flock is taken before the daemon starts, and a
second instance is refused (syncd.service.startup).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import datetime

import structlog

from syncd.errors import DaemonError, StateError
from syncd.service.daemon import Daemon
from syncd.service.hook_relay import HookRelay, pass_on
from syncd.service.metrics import Metrics
from syncd.service.notify import Notifier
from syncd.service.webhook import Webhook
from syncd.settings import Settings
from syncd.state.audit_queries import last_successful_run, open_intents
from syncd.state.backend import Database, LockHeld, StateStore, off_the_loop, open_store

log = structlog.get_logger("syncd.service.leadership")

#: Seconds between attempts to reach a database that does not answer, at most.
MAX_RECONNECT_DELAY = 30.0


def last_success(db: Database) -> float | None:
    """When a run last ended ok or with nothing to change (Unix time), for the metrics."""
    last = last_successful_run(db)
    return None if last is None else datetime.fromisoformat(last[0]).timestamp()


async def lead(
    settings: Settings,
    reload_settings: Callable[[], Settings],
    notifier: Notifier,
    metrics: Metrics,
    *,
    webhook: Webhook | None = None,
) -> None:
    """Stand by until the lock is ours, then reconcile; again whenever it is lost."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    delay = 1.0
    watchdog = asyncio.create_task(notifier.keep_watchdog())
    try:
        while not stop.is_set():
            _on_stop_signals(loop, stop)
            metrics.active.set(0)
            served = False
            try:
                store = open_store(settings, "run")
            except StateError as error:
                metrics.standby = (False, f"the state database cannot be reached: {error}")
                log.error("state_unreachable", error=str(error), retry_in=delay)
                notifier.status(f"standby: the state database cannot be reached: {error}")
            else:
                try:
                    settings, served = await _serve_when_active(
                        settings, reload_settings, notifier, metrics, store, stop, webhook
                    )
                except StateError as error:  # the session ended while standing by or taking over
                    log.error("state_session_ended", error=str(error), state=store.where)
                finally:
                    if webhook is not None:  # no store to pass hooks on through: 503
                        webhook.start_cycle = None
                    store.close()
            if served:  # it was active: stand by again at once, as any other instance
                delay = 1.0
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(2 * delay, MAX_RECONNECT_DELAY)
    finally:
        watchdog.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        metrics.active.set(0)


async def _serve_when_active(
    settings: Settings,
    reload_settings: Callable[[], Settings],
    notifier: Notifier,
    metrics: Metrics,
    store: StateStore,
    stop: asyncio.Event,
    webhook: Webhook | None,
) -> tuple[Settings, bool]:
    """Wait for the lock on `store`, then run the daemon until it stops.

    Returns the daemon's settings (SIGHUP may have changed them), and whether it ran.
    """
    if webhook is not None:
        webhook.start_cycle = pass_on(store)
    try:
        held: LockHeld | None = store.lock("run")  # free: nobody to stand by for
    except DaemonError:
        holders = [holder.name for holder in store.holders() if holder.active]
        active = holders[0] if holders else "nobody (it is being released)"
        why = f"waiting for the lock of {store.where}; active: {active}"
        metrics.standby = (True, why)
        log.info("standby", state=store.where, active=active)
        notifier.ready(f"standby: {why}")
        held = await store.wait_for_lock(stop)
    if held is None:  # stopped while standing by
        log.info("daemon_stopped", standby=True)
        return settings, False
    with held:
        # Off the event loop: /healthz answers while the state is read.
        left_open = await off_the_loop(open_intents, store.history)
        log.info("took_over", state=store.where, interrupted_writes=len(left_open))
        metrics.became_active(await off_the_loop(last_success, store.history))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)  # the daemon has its own
        daemon = Daemon(settings, reload_settings, notifier, metrics, store, webhook=webhook)
        relay = HookRelay(store, daemon.run_now) if webhook is not None else None
        try:
            if relay is not None:
                relay.start()
            await daemon.serve()
        finally:
            if relay is not None:  # standing by again, or stopping: others are told no more
                await relay.stop()
            metrics.active.set(0)
        if not daemon.lost_lock:
            stop.set()  # SIGTERM or SIGINT: the daemon has stopped
        return daemon.settings, True


def _on_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def stopping(name: str) -> None:
        log.info("stop_requested", signal=name, standby=True)
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, stopping, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, stopping, "SIGINT")

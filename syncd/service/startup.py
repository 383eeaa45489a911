"""What `syncd run` does once its settings are known: take the lock or stand by, then serve.

The listener, the notifier and the webhook are set up once for the process;
the daemon (syncd.service.daemon) runs under the lock, directly on SQLite or a
`--once` run, through syncd.service.leadership where hosts share PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from syncd.api.credentials import CredentialStore
from syncd.core.desired import Scope
from syncd.errors import UsageError
from syncd.logs import configure_logging
from syncd.service.cycle import CycleOutcome
from syncd.service.daemon import Daemon, log
from syncd.service.leadership import last_success, lead
from syncd.service.listener import MetricsServer
from syncd.service.metrics import Metrics
from syncd.service.notify import Notifier
from syncd.service.webhook import Webhook
from syncd.settings import Settings
from syncd.state.backend import open_store


def serve(
    settings_now: Callable[[], Settings], *, once: bool, scope: Scope | None = None
) -> CycleOutcome | None:
    """Reconcile until stopped (or, with `once`, for one cycle); how the last cycle ended
    (None: no cycle ended, or a standby's).

    `scope` limits the users of a `once` cycle (the daemon reconciles everyone).

    `settings_now` reads the settings again on SIGHUP: the file may have changed.
    """
    settings = settings_now()
    configure_logging(settings.log_format)
    settings.check_transport()
    # Only `syncd run` on a state that hosts share stands by for the lock; `--once`
    # and SQLite take it now, or are refused naming its holder.
    stands_by = settings.on_postgresql and not once
    with contextlib.ExitStack() as held:
        store = None
        if not stands_by:  # one instance, or none: refused before anything else
            store = held.enter_context(open_store(settings, "run"))
            held.enter_context(store.lock("run"))
        CredentialStore.from_settings(settings)  # unreadable credentials stop us before READY=1
        metrics = Metrics(settings.interval)
        if store is not None:  # the lock is ours: active until the process ends
            metrics.became_active(last_success(store.history))
        webhook = None
        if settings.webhook_secret_file is not None:
            if not settings.metrics_addr:
                raise UsageError(
                    "SYNCD_WEBHOOK_SECRET_FILE needs SYNCD_METRICS_ADDR: hooks arrive there"
                )
            webhook = Webhook.from_file(settings.webhook_secret_file)
        if settings.metrics_addr:
            server = MetricsServer(settings.metrics_addr, settings, metrics, webhook)
            server.start()
            held.callback(server.close)
            log.info("metrics_listening", address=server.address, hooks=webhook is not None)
        notifier = Notifier.from_environment(os.environ)
        if store is None:  # active, or a standby until the lock is free
            asyncio.run(lead(settings, settings_now, notifier, metrics, webhook=webhook))
            return None  # stopped by a signal
        daemon = Daemon(
            settings,
            settings_now,
            notifier,
            metrics,
            store,
            once=once,
            webhook=webhook,
            scope=scope,
        )
        asyncio.run(daemon.serve())
    return daemon.last

"""The scheduler loop of `syncd run`: converge on a schedule, as a systemd service.

APScheduler 3 (AsyncIOScheduler, an interval trigger in UTC with jitter, the first
run at start, one run at a time, late runs coalesced) calls `Daemon._scheduled`,
which runs one Cycle (syncd.service.cycle: read the desired state again, converge
like `syncd apply --yes` within a deadline). Then it reports: metrics, STATUS= to
systemd, and the `daemon_state` table that `syncd status` reads (next run,
failures). Runs that keep failing push the next one back (syncd.service.schedule).

Signals: SIGTERM and SIGINT cancel the run in flight (a write without its answer
is audited `unknown`, the run `cancelled`) and return, so the process exits 0
well within systemd's stop timeout; SIGHUP re-reads the settings and runs now.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncd.api.credentials import CredentialStore
from syncd.core.conditions import Condition
from syncd.core.desired import Scope
from syncd.core.vocabulary import SUCCESSFUL_RUNS, NotificationEvent, RunResult
from syncd.desired.gitsource import DesiredSource
from syncd.errors import SyncdError
from syncd.logs import configure_logging
from syncd.service.cycle import Cycle, CycleOutcome
from syncd.service.metrics import Metrics
from syncd.service.notifications import Notifications, conditions_of
from syncd.service.notify import Notifier
from syncd.service.schedule import backoff_delay, deadline_for, jitter_for
from syncd.service.webhook import STARTS_HERE, Webhook
from syncd.settings import Settings
from syncd.state.backend import StateStore
from syncd.state.daemon_state import read_daemon_state, save_daemon_state, utc_iso

log = structlog.get_logger("syncd.service.daemon")

JOB_ID = "reconcile"
#: How long a cancelled run may take to record its outcomes; systemd waits 10 s by default.
STOP_TIMEOUT = 5.0
#: Seconds between the starts of two cycles that hooks asked for: a replayed or
#: repeated hook costs at most one cycle (a git fetch, a share of re-reads) per period.
HOOK_SPACING = 10.0


class Daemon:
    def __init__(
        self,
        settings: Settings,
        reload_settings: Callable[[], Settings],
        notifier: Notifier,
        metrics: Metrics,
        store: StateStore,
        *,
        once: bool = False,
        webhook: Webhook | None = None,
        scope: Scope | None = None,
    ) -> None:
        #: Run one cycle, then stop (`syncd run --once`); `last` is that cycle's outcome.
        self.once = once
        #: The users each cycle is limited to (`run --once --user/--exclude/--group`).
        self.scope = scope
        self.last: CycleOutcome | None = None
        self.webhook = webhook
        self.settings = settings
        self._reload_settings = reload_settings
        self.notifier = notifier
        self.metrics = metrics
        self.source = DesiredSource.from_settings(settings, scope)
        #: Whose lock this process holds (the caller's, who closes it).
        self.store = store
        self.db = store.history
        #: Whether serve() returned because the lock was lost (syncd.service.leadership).
        self.lost_lock = False
        self.failures = 0
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        # APScheduler speaks through stdlib logging, which nobody configures here: its
        # warnings would reach stderr as plain text among the JSON lines. The listener
        # (_on_scheduler_event) reports the same events, in our format.
        scheduler_log = logging.getLogger("apscheduler")
        scheduler_log.addHandler(logging.NullHandler())
        scheduler_log.propagate = False
        self._stop = asyncio.Event()
        self._stopping = False
        self._cycle_task: asyncio.Task[Any] | None = None
        self._run_again = False
        self._refresh_next = False  # SIGHUP: the next cycle reads every user again
        #: When the cycle a hook waits for is due (one waits at most), and when the
        #: last cycle that hooks waited for started.
        self._hook_due: datetime | None = None
        self._hook_started: datetime | None = None
        instance = f"syncd run on {socket.gethostname()} pid {os.getpid()}"
        self.notifications = Notifications(settings, metrics, instance)
        self._retired: set[asyncio.Task[None]] = set()  # notifiers a reload replaced, draining

    # -- life cycle -------------------------------------------------------------

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.scheduler.add_listener(
            self._on_scheduler_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )
        self.scheduler.add_job(
            self._scheduled,
            self._trigger(),
            id=JOB_ID,
            name="reconcile",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, round(self.settings.interval)),
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.start()
        self.metrics.loop_probe = loop_probe(loop)
        if self.webhook is not None:

            def start_cycle(why: str) -> str:  # from the listener's thread
                loop.call_soon_threadsafe(self.run_now, why)
                return STARTS_HERE

            self.webhook.start_cycle = start_cycle
            self.webhook.ref = self.source.followed_ref
        save_daemon_state(self.db, self._identity())
        log.info("daemon_started", **self._identity())
        if not self.scope:  # what the last instance told: resolved, or not told again
            self.notifications.recall(read_daemon_state(self.db).get("told", {}))
        self.notifications.start()
        self.notifications.happened(
            Condition(NotificationEvent.BECAME_ACTIVE, message=f"state {self.store.where}"),
            None,
        )
        self.notifier.ready(f"started; first run now; desired state {self.source}")
        watchdog = asyncio.create_task(self.notifier.keep_watchdog())
        try:
            await self._stop.wait()
            await self._shutdown()
        finally:
            await asyncio.gather(self.notifications.stop(), *self._retired)
            watchdog.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        self._save_told()  # what the stop delivered: not told again by the next process

    def stop(self, why: str = "stop") -> None:
        if not self._stop.is_set():
            log.info("stop_requested", signal=why)
        self._stop.set()

    async def _shutdown(self) -> None:
        self._stopping = True
        task = self._cycle_task
        self.notifier.stopping("stopping" + (": abandoning the run in flight" if task else ""))
        self.scheduler.shutdown(wait=False)
        if task is not None:
            # Cancel rather than wait: a run may last minutes, systemd gives us seconds.
            # The applier audits each write in flight as `unknown`; converge ends the run.
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
            if not done:
                log.error("run_not_stopped", timeout=STOP_TIMEOUT)
        if not self.lost_lock:  # else the state is not ours to write any more
            save_daemon_state(self.db, {"pid": None, "next_run_at": None})
        log.info("daemon_stopped")

    def run_now(self, why: str) -> None:
        """A cycle soon for a push hook, never two at once, coalesced: at most one waits
        (it fetches every push made before it starts), and cycles that hooks asked
        for start at least HOOK_SPACING apart."""
        if self._stopping:
            return
        if self._hook_due is not None:
            log.info("run_coalesced", reason=why, run_at=utc_iso(self._hook_due))
            return
        now = datetime.now(UTC)
        due = now
        if self._hook_started is not None:
            due = max(now, self._hook_started + timedelta(seconds=HOOK_SPACING))
        self._hook_due = due
        log.info("run_requested", reason=why, run_at=utc_iso(due))
        job = self.scheduler.get_job(JOB_ID)
        if self._cycle_task is None and job is not None:  # else _report schedules it
            self.scheduler.modify_job(JOB_ID, next_run_time=min(due, job.next_run_time or due))

    def reload(self) -> None:
        """SIGHUP: read the settings again and run now."""
        if self._stopping:
            return
        self.notifier.reloading(time.monotonic_ns() // 1000)
        try:
            self._apply_settings(self._reload_settings())
        except SyncdError as error:
            log.error("reload_failed", error=str(error), kept="the previous settings")
        else:
            log.info("reloaded", **self._identity())
        self.notifier.ready("reloaded; running now, reading every user again")
        self._refresh_next = True
        if self._cycle_task is not None:
            self._run_again = True  # right after the run in flight
        else:
            self.scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))

    def _apply_settings(self, new: Settings) -> None:
        old = self.settings
        new.check_transport()
        CredentialStore.from_settings(new)  # as start checks them, not each cycle after
        # The webhook's secret and the notifiers' files are read again (rotated), before
        # anything changes: a file that cannot be read keeps the previous settings whole.
        webhook, secret_file = self.webhook, new.webhook_secret_file
        rotated = (
            None if webhook is None or secret_file is None else Webhook.from_file(secret_file)
        )
        notifiers = self.notifications.providers_of(new)
        if (webhook is None) != (secret_file is None):
            log.warning("restart_needed", reason="the push hook is set up or removed on restart")
        # Read at start only: the ones in use stay in force, and in self.settings, until
        # a restart, and the warning names each that the reload did not take.
        kept = ("state_dir", "state_url", "state_password_file", "metrics_addr")
        if changed := [k for k in kept if getattr(new, k) != getattr(old, k)]:
            log.warning("restart_needed", settings=changed, reason="read at start only: kept")
            new = new.model_copy(update={k: getattr(old, k) for k in kept})
        if webhook is not None and rotated is not None:
            webhook.secret = rotated.secret
        if (leaving := self.notifications.renew(new, notifiers)) is not None:
            retired = asyncio.ensure_future(leaving.stop())  # drained as at a stop
            self._retired.add(retired)
            retired.add_done_callback(self._retired.discard)
        if new.log_format != old.log_format:
            configure_logging(new.log_format)
        made_of = ("desired", "git_timeout", "git_credentials_file")
        if any(getattr(new, name) != getattr(old, name) for name in made_of):
            self.source = DesiredSource.from_settings(new, self.scope)
            if webhook is not None:
                webhook.ref = self.source.followed_ref
        self.settings = new
        self.metrics.interval = new.interval
        if new.interval != old.interval:
            self.scheduler.reschedule_job(JOB_ID, trigger=self._trigger())
            self.scheduler.modify_job(JOB_ID, misfire_grace_time=max(1, round(new.interval)))
        save_daemon_state(self.db, self._identity())

    def _trigger(self) -> IntervalTrigger:
        interval = self.settings.interval
        return IntervalTrigger(seconds=interval, jitter=jitter_for(interval), timezone=UTC)

    def _on_scheduler_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            # _scheduled catches everything, so this is a bug; keep its trace.
            log.error("run_crashed", error=repr(getattr(event, "exception", None)))
            return
        reason = "missed" if event.code == EVENT_JOB_MISSED else "overlap"
        self.metrics.skipped.labels(reason).inc()
        log.warning(
            "run_skipped",
            reason="too late to start" if reason == "missed" else "the previous run is running",
        )

    # -- one run ----------------------------------------------------------------

    async def _scheduled(self) -> None:
        self._cycle_task = asyncio.current_task()
        if self._hook_due is not None:  # this cycle fetches what the hooks announced
            self._hook_due, self._hook_started = None, datetime.now(UTC)
        try:
            refresh, self._refresh_next = self._refresh_next, False
            cycle = Cycle(
                self.settings,
                self.source,
                self.store,
                self.metrics,
                refresh=refresh,
                # `run --once` ends as `apply` would: past the limit all or nothing,
                # exit 3 (what the operator decided it does as any cycle).
                hold_deletions=not self.once,
            )
            outcome = await cycle.run()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            log.warning("run_abandoned", reason="stopping")
            return  # we cancelled it ourselves: the run record and the audit say the rest
        finally:
            self._cycle_task = None
        if self.webhook is not None:  # a name follows its tag when it is not a branch
            self.webhook.ref = self.source.followed_ref
        if outcome.result == RunResult.ERROR and not self.store.holds_lock():
            # Its session ended (cut off, the server restarted): another instance
            # may be active now. Stop, and stand by again (syncd.service.leadership).
            log.error("lock_lost", error=outcome.message, state=self.store.where)
            self.metrics.observe_run(outcome, self.failures, None)  # a cycle all the same
            self.lost_lock = True
            self.stop("lost the lock")
            return
        try:
            self._report(outcome)
        except SyncdError as error:  # the state failed under the report: said, not fatal
            log.error("report_failed", error=str(error), result=outcome.result)
        finally:
            if self.once:  # one cycle, whatever its report met
                self.last = outcome
                self.stop("--once: one cycle done")

    def _report(self, outcome: CycleOutcome) -> None:
        # A cycle that does not back off resets the count, whatever it found: the
        # next failure starts the backoff again from one interval.
        self.failures = self.failures + 1 if outcome.backs_off else 0
        if outcome.planned:  # else the users' state is not known: keep the last one seen
            error_codes = [user.code for user in outcome.failing.values()]
            self.metrics.observe_failing(error_codes)
            self.metrics.observe_findings(outcome.warning_codes, error_codes)
            self.metrics.users_suspended.set(outcome.suspended)
        self.metrics.observe_cycle(outcome.result, api_down=outcome.api_down)
        now = datetime.now(UTC)
        job = self.scheduler.get_job(JOB_ID)
        next_run: datetime | None = job.next_run_time if job else None
        if self._run_again:
            self._run_again = False
            next_run = now
        elif self._hook_due is not None:  # a hook came during the cycle
            due = max(now, self._hook_due)
            next_run = due if next_run is None else min(next_run, due)
        elif self.failures > 1:
            later = now + timedelta(seconds=backoff_delay(self.settings.interval, self.failures))
            next_run = max(next_run, later) if next_run else later
        if job is not None and next_run is not None and next_run != job.next_run_time:
            self.scheduler.modify_job(JOB_ID, next_run_time=next_run)

        self.metrics.observe_run(outcome, self.failures, next_run)
        # Saved before the cycle is said finished (who saw the line reads it in `status`),
        # and said and notified even when the state fails under it (report_failed follows).
        try:
            self._save_state(outcome, next_run, now)
        finally:
            next_in = None if next_run is None else round((next_run - now).total_seconds(), 3)
            (log.info if outcome.result in SUCCESSFUL_RUNS else log.warning)(
                "cycle_finished",
                result=outcome.result,
                revision=outcome.revision,
                applied=outcome.applied,
                drift_users=outcome.drift_users,
                suspended=outcome.suspended or None,
                withheld=outcome.withheld or None,
                failures=self.failures,
                seconds=round(outcome.seconds, 3),
                next_run_at=utc_iso(next_run),
                next_run_in=next_in,
                message=outcome.message or None,
                warning=outcome.warning,
            )
            self.notifier.status(outcome.status_line(self.failures, next_run))
            self._notify(outcome)

    def _save_state(self, outcome: CycleOutcome, next_run: datetime | None, now: datetime) -> None:
        """What `syncd status` and a standby read of this cycle."""
        metrics = self.metrics
        read_at = metrics.source_read_at
        # A source neither read nor failed in this process (a fetch the deadline cut
        # short) says nothing new: what was said before stands, "not current" included.
        told = read_at is not None or metrics.source_error is not None
        source = {
            "current": metrics.source_error is None,
            "error": metrics.source_error,
            "last_success_at": utc_iso(
                None if read_at is None else datetime.fromtimestamp(read_at, UTC)
            ),
        }
        save_daemon_state(
            self.db,
            {
                "next_run_at": utc_iso(next_run),
                "consecutive_failures": self.failures,
                **({"source": source} if told else {}),
                # Its basis, not a sentence: `status` judges it at the time it is read
                # (a sentence made now would say "0 s ago" for ever).
                "readiness": metrics.readiness_basis(),
                "observe": self.settings.observe,
                # Why the last cycle ended as it did, for `syncd status` (not only the journal).
                "last_cycle": {
                    "result": outcome.result,
                    "message": outcome.message or None,
                    "at": utc_iso(now),
                },
            },
        )

    def _notify(self, outcome: CycleOutcome) -> None:
        """Hand the cycle's conditions to the notifications (delivered in the background)."""
        conditions, decided = conditions_of(outcome)
        self.notifications.observe(conditions, decided, outcome.revision)
        if outcome.suspension_ended:
            ended = Condition(
                NotificationEvent.SUSPENSION_EXPIRED,
                tuple(outcome.suspension_ended),
                "managed again from this cycle",
            )
            self.notifications.happened(ended, outcome.revision)
        self._save_told()

    def _save_told(self) -> None:
        """Keep what was told, as far as delivered (firings sent since the last cycle)."""
        # Not those of a `run --once --user`: of some users, they would resolve the others'.
        if not self.scope and not self.lost_lock:
            save_daemon_state(self.db, {"told": self.notifications.told()})

    def _identity(self) -> dict[str, Any]:
        """Who this daemon is: logged at start and reload, kept for `syncd status`."""
        settings = self.settings
        return {
            "pid": os.getpid(),
            # The key keeps its name (older states, the pages): it is when this
            # instance became active, which for a standby is when it took over.
            "started_at": utc_iso(datetime.fromtimestamp(self.metrics.active_since, UTC)),
            "api_url": settings.api_url,
            "desired": str(self.source),
            "state_dir": str(settings.state_dir),
            "state": self.store.where,
            "interval": settings.interval,
            "run_deadline": deadline_for(settings),
            "max_deletions": settings.max_deletions,
        }


def loop_probe(loop: asyncio.AbstractEventLoop) -> Callable[[float], bool]:
    """Asks `loop`, from another thread, to run a no-op within the seconds given."""

    def probe(timeout: float) -> bool:
        answered = threading.Event()
        try:
            loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # the loop has closed
            return False
        return answered.wait(timeout)

    return probe

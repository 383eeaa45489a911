"""The scheduler loop of `syncd run`: converge on a schedule, as a systemd service.

APScheduler 3 (AsyncIOScheduler, an interval trigger in UTC with jitter, the first
run at start, one run at a time, late runs coalesced) calls `Daemon._scheduled`.
Each run reads the desired state again (syncd.desired.gitsource: file, directory or git);
an invalid one is logged and recorded as an `invalid` run, and nothing is applied.
Otherwise it converges like `syncd apply --yes`, within a deadline
(settings.run_deadline) so that a hung request never blocks the schedule. Then it
reports: metrics, STATUS= to systemd, and the `daemon_state` table that `syncd
status` reads (next run, failures). Runs that keep failing push the next one
back, doubling up to an hour; one success resets that.

Signals: SIGTERM and SIGINT cancel the run in flight (a write without its answer
is audited `unknown`, the run `cancelled`) and return, so the process exits 0
well within systemd's stop timeout; SIGHUP re-reads the settings and runs now.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils
import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncd.desired.gitsource import DesiredSource
from syncd.engine.reconcile import PlanResult, connect, converge, planning
from syncd.errors import DesiredStateError, GuardError, SyncdError
from syncd.logs import configure_logging
from syncd.service.metrics import Metrics
from syncd.service.notify import Notifier
from syncd.settings import Settings
from syncd.state.audit import AuditTrail
from syncd.state.statefile import open_state

log = structlog.get_logger("syncd.service.daemon")

JOB_ID = "reconcile"
MAX_BACKOFF = 3600.0
#: How long a cancelled run may take to record its outcomes; systemd waits 10 s by default.
STOP_TIMEOUT = 5.0
SUCCESS = frozenset({"ok", "no_changes"})
# Only these back off: `blocked` waits for an operator and costs cached reads only;
# `invalid` sends nothing, and its fix must be picked up at the next interval.
BACKING_OFF = frozenset({"failed", "error", "deadline", "cancelled"})


def backoff_delay(interval: float, failures: int) -> float:
    """Seconds until the next run after `failures` failed runs in a row: the interval after
    one, then doubling, capped at an hour (or the interval when that is longer)."""
    if failures <= 1:
        return interval
    return min(interval * 2.0 ** (failures - 1), max(MAX_BACKOFF, interval))


def jitter_for(interval: float) -> float:
    """Up to a tenth of the interval (at most 30 s): many daemons started together spread out."""
    return min(interval / 10, 30.0)


def deadline_for(settings: Settings) -> float:
    return settings.run_deadline or 3 * settings.interval


def utc_iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="milliseconds")


def save_daemon_state(db: sqlite_utils.Database, values: Mapping[str, Any]) -> None:
    """Keys of the daemon_state table (JSON values), read by `syncd status`."""
    now = utc_iso(datetime.now(UTC))
    with db.atomic():
        for key, value in values.items():
            db.execute(
                "INSERT INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                [key, json.dumps(value), now],
            )


@dataclass
class CycleOutcome:
    result: str  # a runs.result, or error / deadline when the run never got that far
    revision: str | None = None
    applied: int = 0
    #: Users still differing from the desired state; None when this run could not tell.
    drift_users: int | None = None
    message: str = ""
    warning: str | None = None
    seconds: float = 0.0


class Daemon:
    def __init__(
        self,
        settings: Settings,
        reload_settings: Callable[[], Settings],
        notifier: Notifier,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self._reload_settings = reload_settings
        self.notifier = notifier
        self.metrics = metrics
        self.source = DesiredSource(settings.desired, settings.state_dir, settings.git_timeout)
        self.db = open_state(settings.state_file)
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
        self._began_run = False  # whether converge has written this cycle's run record

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
        save_daemon_state(self.db, self._identity())
        log.info("daemon_started", **self._identity())
        self.notifier.ready(f"started; first run now; desired state {self.source}")
        watchdog = None
        if (every := self.notifier.watchdog_interval) is not None:
            watchdog = asyncio.create_task(self._watchdog(every))
        try:
            await self._stop.wait()
            await self._shutdown()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            self.db.close()

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
        save_daemon_state(self.db, {"pid": None, "next_run_at": None})
        log.info("daemon_stopped")

    async def _watchdog(self, every: float) -> None:
        # Pinged from the event loop: if the loop hangs, systemd restarts the service.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(every)

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
        self.notifier.ready("reloaded; running now")
        if self._cycle_task is not None:
            self._run_again = True  # right after the run in flight
        else:
            self.scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))

    def _apply_settings(self, new: Settings) -> None:
        old = self.settings
        new.check_transport()
        if new.state_dir != old.state_dir or new.metrics_addr != old.metrics_addr:
            log.warning("restart_needed", reason="state_dir and metrics_addr change on restart")
            new = new.model_copy(update={"state_dir": old.state_dir})
        if new.log_format != old.log_format:
            configure_logging(new.log_format)
        if (new.desired, new.git_timeout) != (old.desired, old.git_timeout):
            self.source = DesiredSource(new.desired, new.state_dir, new.git_timeout)
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
        try:
            outcome = await self._cycle()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            log.warning("run_abandoned", reason="stopping")
            return  # we cancelled it ourselves: the run record and the audit say the rest
        finally:
            self._cycle_task = None
        self._report(outcome)

    async def _cycle(self) -> CycleOutcome:
        started = time.monotonic()
        settings = self.settings
        deadline = asyncio.timeout(deadline_for(settings))
        self._began_run = False
        try:
            async with deadline:
                outcome = await self._reconcile(settings)
        except TimeoutError:
            if not deadline.expired():
                raise
            limit = deadline_for(settings)
            outcome = CycleOutcome(
                "deadline", self.source.attempted_revision, message=f"cancelled after {limit:g} s"
            )
        except DesiredStateError as error:
            log.error(
                "desired_state_invalid",
                desired=str(self.source),
                revision=self.source.attempted_revision,
                problems=[str(problem) for problem in error.problems],
            )
            message = f"{len(error.problems)} problems in the desired state; nothing applied"
            outcome = CycleOutcome("invalid", self.source.attempted_revision, message=message)
        except SyncdError as error:  # settings, credentials, state file, git with no good commit
            outcome = CycleOutcome("error", self.source.attempted_revision, message=str(error))
        except Exception as error:
            # The daemon is an edge: a bug fails this run, not the service.
            log.exception("run_crashed")
            outcome = CycleOutcome("error", message=f"internal error {type(error).__name__}")
        if not self._began_run:  # so that `syncd status` lists runs that never got going
            self._record_run(outcome)
        outcome.seconds = time.monotonic() - started
        return outcome

    async def _reconcile(self, settings: Settings) -> CycleOutcome:
        read = await self.source.read()
        desired = read.desired
        if read.stale is not None:
            log.warning("desired_fetch_failed", error=read.stale, using_revision=desired.revision)
        planned: list[PlanResult] = []
        async with connect(settings, on_response=self.metrics.observe_response) as connection:
            self._began_run = True
            try:
                converged = await converge(
                    connection,
                    planning(desired),
                    command="run",
                    deletion_limit=settings.max_deletions,
                    confirm=lambda _: True,
                    on_plan=planned.append,
                )
            except GuardError as error:
                drift = len(planned[0].plan.users_with_changes()) if planned else None
                return CycleOutcome("blocked", desired.revision, 0, drift, str(error), read.stale)
            row = connection.db.execute(
                "SELECT result FROM runs WHERE id = ?", [converged.run_id]
            ).fetchone()
        plan, report = converged.result.plan, converged.report
        failures = report.failures if report is not None else []
        applied = (
            {a.action: report.counts.get(a.action, 0) for a in plan.changes} if report else {}
        )
        self.metrics.observe_changes(applied, [(f.action, f.result) for f in failures])
        drift = len({f.user for f in failures}) if report else len(plan.users_with_changes())
        problems = [f"{f.user}: {f.description}: {f.message}" for f in failures]
        problems += [f"{finding.user}: {finding.message}" for finding in plan.errors]
        message = "; ".join(problems[:3])
        return CycleOutcome(
            row[0], desired.revision, sum(applied.values()), drift, message, read.stale
        )

    def _record_run(self, outcome: CycleOutcome) -> None:
        audit = AuditTrail(self.db, {"files": [], "revision": outcome.revision})
        audit.begin_run("run")
        audit.end_run(outcome.result, {})

    def _report(self, outcome: CycleOutcome) -> None:
        success = outcome.result in SUCCESS
        if success:
            self.failures = 0
        elif outcome.result in BACKING_OFF:
            self.failures += 1
        now = datetime.now(UTC)
        job = self.scheduler.get_job(JOB_ID)
        next_run: datetime | None = job.next_run_time if job else None
        if self._run_again:
            self._run_again = False
            next_run = now
        elif self.failures > 1:
            later = now + timedelta(seconds=backoff_delay(self.settings.interval, self.failures))
            next_run = max(next_run, later) if next_run else later
        if job is not None and next_run is not None and next_run != job.next_run_time:
            self.scheduler.modify_job(JOB_ID, next_run_time=next_run)

        self.metrics.observe_run(
            outcome.result,
            outcome.seconds,
            success=success,
            failures=self.failures,
            drift_users=outcome.drift_users,
            next_run=None if next_run is None else next_run.timestamp(),
        )
        next_in = None if next_run is None else round((next_run - now).total_seconds(), 3)
        (log.info if success else log.warning)(
            "cycle_finished",
            result=outcome.result,
            revision=outcome.revision,
            applied=outcome.applied,
            drift_users=outcome.drift_users,
            failures=self.failures,
            seconds=round(outcome.seconds, 3),
            next_run_at=utc_iso(next_run),
            next_run_in=next_in,
            message=outcome.message or None,
            warning=outcome.warning,
        )
        self.notifier.status(_status_line(outcome, self.failures, next_run))
        save_daemon_state(
            self.db, {"next_run_at": utc_iso(next_run), "consecutive_failures": self.failures}
        )

    def _identity(self) -> dict[str, Any]:
        """Who this daemon is: logged at start and reload, kept for `syncd status`."""
        settings = self.settings
        return {
            "pid": os.getpid(),
            "started_at": utc_iso(datetime.fromtimestamp(self.metrics.started, UTC)),
            "api_url": settings.api_url,
            "desired": str(self.source),
            "state_dir": str(settings.state_dir),
            "interval": settings.interval,
            "run_deadline": deadline_for(settings),
            "max_deletions": settings.max_deletions,
        }


def _status_line(outcome: CycleOutcome, failures: int, next_run: datetime | None) -> str:
    parts = [outcome.result]
    if outcome.result in SUCCESS or outcome.result == "failed":
        parts.append(f"{outcome.applied} changes applied")
    if outcome.drift_users:
        parts.append(f"{outcome.drift_users} users differ")
    if outcome.revision:
        parts.append(f"revision {outcome.revision[:12]}")
    if outcome.warning:
        parts.append("git fetch failed, kept the last good revision")
    if failures > 1:
        parts.append(f"{failures} failures in a row, backing off")
    when = next_run.strftime("%Y-%m-%d %H:%M:%S UTC") if next_run else "none"
    parts.append(f"next run {when}")
    if outcome.result not in SUCCESS and outcome.message:
        parts.append(outcome.message)  # last: systemctl cuts a long line at the end
    return "; ".join(parts)

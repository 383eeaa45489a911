"""The daemon's metrics (prometheus-client), and what /healthz and /readyz report.

Every metric lives in a private CollectorRegistry owned by one `Metrics`, never
in prometheus-client's global registry, so that two daemons in one process
(tests) never share counters. syncd.service.listener serves them over HTTP.

Liveness (/healthz) is whether the process and its event loop answer: a
liveness probe that fails restarts the process, which cures a hung loop and
nothing else, so a failing run or an invalid commit never fails it.
Readiness (/readyz) is whether the last cycle ended well and lately, and the
desired state's source is current (`readiness_at` says each case). A standby
(syncd.service.leadership) says so instead: ready while it can reach the
database and wait for the lock, so that a rolling update proceeds past it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syncd import __version__
from syncd.api.retrying import RETRY_REASONS
from syncd.core.desired import DesiredState
from syncd.core.vocabulary import (
    READ_ERRORS,
    SUCCESSFUL_RUNS,
    ActionName,
    Code,
    RunResult,
    WriteResult,
)
from syncd.service.admission import REFUSALS
from syncd.service.webhook import RESULTS as WEBHOOK_RESULTS

if TYPE_CHECKING:
    from syncd.service.cycle import CycleOutcome

# No `_created` series: a timestamp per counter child that dashboards never use,
# and that doubles what every scrape carries.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The codes a user in error may have (design.md section 4, and a failed write).
FAILURE_CODES = (*sorted(READ_ERRORS), Code.DOES_NOT_CONVERGE, Code.WRITE_FAILED)

#: Runs of many users under a rate limit last minutes; buckets up to an hour.
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
#: The last cycle must have ended within this many intervals for /readyz.
READY_INTERVALS = 3
#: Results of a cycle after which the daemon is ready: it read, compared and wrote
#: (or, observing, reported what it would write).
#: Deletions held for approval are a decision to make, not a fault: the rest was applied.
READY_RESULTS = frozenset(
    {RunResult.OK, RunResult.NO_CHANGES, RunResult.PARTIAL, RunResult.DRIFT, RunResult.HELD}
)
#: Every result a run may end with: each a series of syncd_runs_total from the start.
#: (Not `declined`: the daemon asks no one; nor `interrupted`: a later run says it.)
RUN_RESULTS = tuple(
    result for result in RunResult if result not in (RunResult.DECLINED, RunResult.INTERRUPTED)
)
#: The writes and how they end: each pair a series of syncd_changes_total from the start.
#: (Not `interrupted`: a later run says it, and counts nothing.)
CHANGE_RESULTS = (
    WriteResult.OK,
    WriteResult.FAILED,
    WriteResult.UNKNOWN,
    WriteResult.SKIPPED,
    WriteResult.DOES_NOT_CONVERGE,
)
#: The calls of the API and the statuses they usually meet, present from the start
#: (others appear when they first happen).
HTTP_METHODS = ("GET", "PATCH", "POST", "DELETE")
HTTP_CODES = ("200", "201", "204", "400", "401", "403", "404", "429", "500", "503", "none")
#: Seconds the event loop has to answer /healthz.
LOOP_TIMEOUT = 5.0

#: Asks the event loop to answer within the seconds given; whether it did.
LoopProbe = Callable[[float], bool]


class Moment(Collector):
    """A gauge of a Unix time that has no sample until it is set.

    prometheus-client's Gauge says 0 until set: "1970", and a rule on the age of
    a moment fires forever on an instance that has none yet (a standby has
    never run, nor fetched the desired state).
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.value: float | None = None
        registry.register(self)

    def set(self, when: float) -> None:
        self.value = when

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation)
        if self.value is not None:
            family.add_metric([], self.value)
        yield family


class Metrics:
    """The counters and gauges of one daemon, and the health rule."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.interval = interval
        self._clock = clock
        #: When this process started, then when it became active (a standby that takes
        #: over says so: `syncd status` shows it as "active since").
        self.active_since = clock()
        #: The last cycle's result and when it ended (this process's clock).
        self.last_cycle: tuple[str, float] | None = None
        #: Whether the last cycle sent requests and the API answered none of them.
        self.api_down = False
        #: Why the desired state's source is not current (a failed fetch), or None,
        #: and when it was last read or fetched.
        self.source_error: str | None = None
        self.source_read_at: float | None = None
        #: The desired state this instance's last cycle read: the status pages show it.
        self.desired: DesiredState | None = None
        #: Set by the daemon once its event loop runs (see `liveness`).
        self.loop_probe: LoopProbe | None = None
        #: While this instance stands by: whether it is ready to take over, and why.
        self.standby: tuple[bool, str] | None = None
        r = self.registry
        self.build_info = Gauge(
            "syncd_build_info", "syncd's version, as a label; always 1.", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        self.runs = Counter("syncd_runs", "Daemon runs, by result.", ["result"], registry=r)
        self.changes = Counter(
            "syncd_changes", "Writes sent, by action and result.", ["action", "result"], registry=r
        )
        self.last_run = Moment(
            "syncd_last_run_timestamp_seconds",
            "Unix time the last run ended, whatever its result.",
            registry=r,
        )
        self.findings = Gauge(
            "syncd_findings",
            "Warnings and errors of the last run's plan and writes, by severity and code.",
            ["severity", "code"],
            registry=r,
        )
        self.webhooks = Counter(
            "syncd_webhook_requests",
            "POST /hooks/git requests, by result.",
            ["result"],
            registry=r,
        )
        self.last_success = Moment(
            "syncd_last_success_timestamp_seconds",
            "Unix time of the last run that ended ok or with nothing to change; before "
            "the first, the time this instance became active.",
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
        self.http_retries = Counter(
            "syncd_http_retries",
            "Requests to the accounts API sent again, by method and reason.",
            ["method", "reason"],
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
            "1 while the deletion guard waits for an operator (deletions held, or the "
            "last run refused), else 0.",
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
        self.next_run = Moment(
            "syncd_next_run_timestamp_seconds", "Unix time of the next scheduled run.", registry=r
        )
        self.notifications_failed = Counter(
            "syncd_notifications_failed",
            "Notifications not delivered after their retries (or dropped), by provider.",
            ["provider"],
            registry=r,
        )
        self.users_suspended = Gauge(
            "syncd_users_suspended",
            "Users left alone at the last run: suspended by `syncd suspend` or `suspend:`.",
            registry=r,
        )
        self.users_failing = Gauge(
            "syncd_users_failing",
            "Users in error after the last run, by code (those waiting for their retry too).",
            ["code"],
            registry=r,
        )
        self.listener_refused = Counter(
            "syncd_listener_refused",
            "Connections to the listener closed unserved, by reason: busy (no thread "
            "free), evicted (too many waiting: the oldest went), timeout (no whole "
            "request in time), too_large (its head), reset (by the client).",
            ["reason"],
            registry=r,
        )
        self._present_from_the_start()
        self.source_failures = Counter(
            "syncd_source_fetch_failures",
            "Fetches of the desired state's source (git) that failed; the last good "
            "revision was kept.",
            registry=r,
        )
        self.active = Gauge(
            "syncd_active",
            "1 while this instance holds the state's lock and reconciles (on SQLite, from its "
            "start), 0 while it stands by.",
            registry=r,
        )
        self.source_last_success = Moment(
            "syncd_source_last_success_timestamp_seconds",
            "Unix time the desired state's source was last read or fetched successfully.",
            registry=r,
        )

    def observe_response(self, method: str, status: int | None, seconds: float) -> None:
        """The ResponseObserver of the API client."""
        self.http.labels(method, "none" if status is None else str(status)).inc()
        self.http_seconds.labels(method).observe(seconds)

    def observe_retry(self, method: str, reason: str) -> None:
        """The RetryObserver of the API client."""
        self.http_retries.labels(method, reason).inc()

    def _present_from_the_start(self) -> None:
        """Every label value known in advance, at 0: a rate() over a series that
        appears with its first event misses that event, and alerts need a series."""
        for run_result in RUN_RESULTS:
            self.runs.labels(run_result)
        for action in ActionName:
            for write_result in CHANGE_RESULTS:
                self.changes.labels(action, write_result)
        for method in HTTP_METHODS:
            for code in HTTP_CODES:
                self.http.labels(method, code)
            for reason in RETRY_REASONS:
                self.http_retries.labels(method, reason)
        for reason in ("missed", "overlap"):
            self.skipped.labels(reason)
        self._finding_series: set[tuple[str, str]] = {("error", code) for code in FAILURE_CODES}
        self._finding_series.add(("warning", Code.PRIMARY_EMAIL_NOT_DESIRED))
        for code in FAILURE_CODES:
            self.users_failing.labels(code)
        for severity, code in self._finding_series:
            self.findings.labels(severity, code)
        for webhook_result in WEBHOOK_RESULTS:
            self.webhooks.labels(webhook_result)
        for reason in REFUSALS:
            self.listener_refused.labels(reason)

    def observe_findings(self, warnings: Iterable[str], errors: Iterable[str]) -> None:
        """The codes of the last run's warnings and errors, one per finding."""
        counts = collections.Counter(
            [("warning", code) for code in warnings] + [("error", code) for code in errors]
        )
        self._finding_series |= set(counts)
        for severity, code in self._finding_series:  # a code that went away drops to 0
            self.findings.labels(severity, code).set(counts.get((severity, code), 0))

    def observe_failing(self, codes: Iterable[str]) -> None:
        """The codes of the users in error after a run, one per user."""
        counts = collections.Counter(codes)
        for code in {*FAILURE_CODES, *counts}:
            self.users_failing.labels(code).set(counts.get(code, 0))

    def observe_change(self, action: ActionName, result: WriteResult) -> None:
        """One write as it ends (the applier's ChangeObserver): counted then, not at the
        cycle's end, which a deadline or a lost session may cut short of its report."""
        self.changes.labels(action, result).inc()

    def observe_run(self, outcome: CycleOutcome, failures: int, next_run: datetime | None) -> None:
        """One daemon run's end, `failures` in a row; the drift and the guard only when
        the run could tell."""
        self.runs.labels(outcome.result).inc()
        self.last_run.set(self._clock())
        self.run_seconds.observe(outcome.seconds)
        if outcome.result in SUCCESSFUL_RUNS:
            self.last_success.set(self._clock())
        self.failures.set(failures)
        if outcome.drift_users is not None:
            self.drift.set(outcome.drift_users)
        if (blocked := outcome.guard_blocked) is not None:
            self.guard_blocked.set(blocked)
        if next_run is not None:
            self.next_run.set(next_run.timestamp())

    def became_active(self, last_success: float | None) -> None:
        """The state's lock is ours (on SQLite, from the start): this instance
        reconciles, and the last success is the one its state keeps.

        With none yet, the time it became active: a rule on the age of the last
        success must fire for a daemon whose runs never end ok (a user that always
        fails makes each `partial`), and a series with no sample never does.
        """
        self.standby = None
        self.active_since = self._clock()
        self.active.set(1)
        self.last_success.set(self._clock() if last_success is None else last_success)

    def observe_cycle(self, result: RunResult, *, api_down: bool = False) -> None:
        """A cycle's end; `api_down` when it sent requests and none was answered."""
        self.last_cycle = (result, self._clock())
        self.api_down = api_down

    def observe_source(self, error: str | None) -> None:
        """The desired state's source was read (None) or its fetch failed (why)."""
        self.source_error = error
        if error is None:
            self.source_read_at = self._clock()
            self.source_last_success.set(self.source_read_at)
        else:
            self.source_failures.inc()

    def liveness(self) -> tuple[bool, str]:
        """Whether the event loop answers (it is not asked before it runs)."""
        probe = self.loop_probe
        if probe is None:
            return True, "starting"
        if probe(LOOP_TIMEOUT):
            return True, "the event loop answers"
        return False, f"the event loop did not answer within {LOOP_TIMEOUT:g} s"

    def probe_readiness(self) -> tuple[bool, str]:
        """What /readyz answers whoever reaches it: readiness and a short reason.

        The details (the git URL and git's message, the database, the active
        instance) are for `syncd status` and the log: each reason of `readiness`
        puts them after its first ": ", and the probe leaves them out.
        """
        ready, reason = self.readiness()
        return ready, reason.partition(": ")[0]

    def readiness(self) -> tuple[bool, str]:
        """Whether the last cycle ended well and recently, and the source is current;
        why, in a short reason followed by its details after ": " (if any)."""
        if self.standby is not None:
            ready, why = self.standby
            return ready, f"standby: {why}"
        basis = self.readiness_basis()
        if basis is None:
            return False, "no cycle has finished yet"
        return readiness_at(self._clock(), basis)

    def readiness_basis(self) -> dict[str, Any] | None:
        """What readiness is judged from, as `syncd status` keeps it (None: no cycle yet):
        the times, not a sentence, so that whoever reads it later judges at its own now."""
        if self.last_cycle is None:
            return None
        result, ended = self.last_cycle
        return {
            "result": str(result),
            "ended_at": ended,
            "interval": self.interval,
            "api_down": self.api_down,
            "source_error": self.source_error,
        }


def readiness_at(now: float, basis: Mapping[str, Any]) -> tuple[bool, str]:
    """Readiness at `now` (a Unix time) of a daemon whose last cycle is `basis`
    (`Metrics.readiness_basis`): its age and the limit are of `now`, not of its end."""
    result, age = basis["result"], now - basis["ended_at"]
    limit = READY_INTERVALS * basis["interval"]
    if basis["api_down"]:  # first: the cause, where `failed` would say only the result
        return False, f"the API answered none of the last cycle's requests {age:.0f} s ago"
    if result not in READY_RESULTS:
        return False, f"the last cycle ended {result} {age:.0f} s ago"
    if age >= limit:
        return False, f"the last cycle ended {age:.0f} s ago (limit {limit:.0f} s)"
    if basis["source_error"] is not None:
        return False, f"the desired state's source is not current: {basis['source_error']}"
    return True, f"the last cycle ended {result} {age:.0f} s ago"

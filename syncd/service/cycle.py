"""One cycle of the daemon: read the desired state, converge within a deadline, summarise.

A cycle never raises for a condition it can name: an invalid desired state is
an `invalid` run (nothing applied), the deadline a `deadline` run, a settings,
credentials, state-file or git failure an `error` run, and even a bug fails
only this cycle. Every cycle leaves a run record, so that `syncd status` lists
the ones that never got as far as a converge too. What the scheduler needs to
know comes back as a CycleOutcome.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from syncd.api.client import AccountsClient
from syncd.core.api_url import normal_api_url
from syncd.core.desired import DesiredState
from syncd.core.plan import Action, DeleteEmail, Plan
from syncd.core.problem import Problem
from syncd.core.vocabulary import (
    SUCCESSFUL_RUNS,
    HeldStatus,
    RunResult,
    SuspensionSource,
    WriteResult,
)
from syncd.desired.gitsource import DesiredSource
from syncd.engine.fetching import Freshness
from syncd.engine.reconcile import Deadline, PlanResult, connect, converge, planning
from syncd.errors import (
    ApiUnreachable,
    DeadlineExceeded,
    DesiredStateError,
    GitSourceError,
    GuardError,
    SyncdError,
)
from syncd.service.deletion_guard import DeletionGuard, revision_of
from syncd.service.isolation import held_users, record_cycle
from syncd.service.metrics import Metrics
from syncd.service.schedule import BACKING_OFF, deadline_for, drift_share
from syncd.settings import Settings
from syncd.state.audit import AuditTrail
from syncd.state.backend import StateStore
from syncd.state.daemon_state import read_daemon_state, save_daemon_state
from syncd.state.held_changes import HeldChanges
from syncd.state.pending import save_pending
from syncd.state.suspensions import SuspensionTable
from syncd.state.user_failures import UserFailures
from syncd.visible import counted

log = structlog.get_logger("syncd.service.cycle")

#: The results of a cycle that sent writes, and so count the changes applied.
_APPLYING_RUNS = SUCCESSFUL_RUNS | {RunResult.PARTIAL, RunResult.FAILED}


@dataclass(frozen=True, slots=True)
class CycleOutcome:
    result: RunResult  # a runs.result, or error / deadline when the run never got that far
    revision: str | None = None
    applied: int = 0
    #: Users still differing from the desired state; None when this run could not tell.
    drift_users: int | None = None
    message: str = ""
    warning: str | None = None
    seconds: float = 0.0
    #: The users in error after this cycle, those waiting for their own retry included.
    failing: dict[str, Problem] = field(default_factory=dict)
    #: Whether the cycle sent requests and every one of them failed.
    every_request_failed: bool = False
    #: Whether the cycle sent requests and the API answered none of them (no answer,
    #: or only 5xx): it is down. A 401 or 404 is an answer: that user's failure alone.
    api_down: bool = False
    #: Whether the API answered one of the cycle's requests at least: it is up.
    api_answered: bool = False
    #: The codes of the plan's warnings, and of the users in error, one per finding.
    warning_codes: list[str] = field(default_factory=list)
    #: Whether the cycle got as far as a plan: only then do `failing` and the codes
    #: say what the users' state is (else they are not known, and not empty).
    planned: bool = False
    #: Whether it read nobody, every user being suspended: it cannot tell whether what
    #: was pending still is (notifications leave those conditions as they were).
    all_suspended: bool = False
    #: Users left alone this cycle (suspended), and those whose writes a suspension
    #: said during the cycle stopped.
    suspended: int = 0
    withheld: list[str] = field(default_factory=list)
    #: The changes still pending after the cycle, as the plan's JSON shows them, and
    #: the users whose suspension ended: what notifications tell.
    pending: list[dict[str, Any]] = field(default_factory=list)
    suspension_ended: list[str] = field(default_factory=list)
    #: The deletions of the sets held by the guard that wait for `syncd approve` or
    #: `syncd reject` after the cycle, as the plan's JSON shows them (known only
    #: when it planned): what the guard_held notification names.
    held: list[dict[str, Any]] = field(default_factory=list)
    #: The ids of those sets (of a `blocked` cycle too, which knows no deletions of
    #: theirs): a set replaced is told again, one still held is not told cleared.
    held_sets: list[str] = field(default_factory=list)
    #: The deletions the guard refused (`blocked`), not those rejected: what its
    #: guard_held names.
    refused: list[dict[str, Any]] = field(default_factory=list)
    #: Whether the desired state could not be read (invalid, or a git source with no
    #: good revision), or only its last good revision (`warning`): source_failed.
    source_failed: bool = False

    @property
    def guard_blocked(self) -> bool | None:
        """Whether the deletion guard waits for an operator after this cycle; None when
        the cycle did not get as far as a plan (it cannot tell).

        Whatever the run result: a user failing beside the held deletions makes the
        run `partial`, not `held` (the rest was not all applied), and the deletions
        wait for a decision all the same.
        """
        if self.result == RunResult.BLOCKED:
            return True
        return bool(self.held) if self.planned else None

    @property
    def backs_off(self) -> bool:
        """Whether the whole schedule backs off after this cycle (not for one user).

        `failed` backs off when every request failed (every credential refused, say);
        an API that answered none of the cycle's requests backs it off whatever the
        result: the users answered from the cache, or held back for their own
        retry, can make it `partial`.
        """
        if self.result == RunResult.FAILED and self.every_request_failed:
            return True
        return self.api_down or self.result in BACKING_OFF

    def status_line(self, failures: int, next_run: datetime | None) -> str:
        """One line for systemd's STATUS=: the result first, the message last."""
        parts: list[str] = [self.result]
        if self.result == RunResult.DRIFT:
            parts.append("observing: nothing written")
        elif self.result in _APPLYING_RUNS:
            parts.append(f"{counted(self.applied, 'change')} applied")
        if self.drift_users:
            differ = "differs" if self.drift_users == 1 else "differ"
            parts.append(f"{counted(self.drift_users, 'user')} {differ}")
        if self.failing:
            parts.append(f"{counted(len(self.failing), 'user')} in error")
        if self.suspended:
            parts.append(f"{counted(self.suspended, 'user')} suspended")
        if self.revision:
            parts.append(f"revision {self.revision[:12]}")
        if self.warning:
            parts.append("git fetch failed, kept the last good revision")
        if failures > 1:
            parts.append(f"{failures} failures in a row, backing off")
        when = next_run.strftime("%Y-%m-%d %H:%M:%S UTC") if next_run else "none"
        parts.append(f"next run {when}")
        if self.result not in SUCCESSFUL_RUNS and self.message:
            parts.append(self.message)  # last: systemctl cuts a long line at the end
        return "; ".join(parts)


#: Users whose own error the summary of a cycle quotes; the others are counted.
QUOTED_USERS = 3


def failing_summary(failing: Mapping[str, Problem]) -> str:
    """The users in error in a few words, whatever their number (cycle_finished, systemd's
    status): the count of each code, a failure they share once, the first users' own."""
    if not failing:
        return ""
    codes = Counter(problem.code for problem in failing.values())
    parts = [", ".join(f"{code} {count}" for code, count in sorted(codes.items()))]
    shared = sorted({problem.cause for problem in failing.values() if problem.shared})
    parts += [f"every request failed alike: {cause}" for cause in shared]
    own = [(name, problem) for name, problem in failing.items() if not problem.shared]
    parts += [f"{name}: {p.code}: {p.message}" for name, p in own[:QUOTED_USERS]]
    if len(own) > QUOTED_USERS:
        parts.append(f"and {len(own) - QUOTED_USERS} more users")
    return "; ".join(parts)


def _report_drift(plan: Plan) -> None:
    """Observing: what a converge would write, one log event per user."""
    changes: dict[str, list[str]] = {}
    for action in plan.changes:
        changes.setdefault(action.user, []).append(action.describe())
    for user, described in changes.items():
        log.info("drift", user=user, would=described)


class Cycle:
    """One run of the daemon over its settings, source, state and metrics."""

    def __init__(
        self,
        settings: Settings,
        source: DesiredSource,
        store: StateStore,
        metrics: Metrics,
        *,
        refresh: bool = False,
        hold_deletions: bool = True,
    ) -> None:
        self.settings = settings
        #: Whether deletions past the limit are held and the rest applied (the
        #: daemon), or the plan refused whole, as `apply` does (`run --once`, which
        #: honours the operator's decisions all the same).
        self.hold_deletions = hold_deletions
        self.source = source
        #: Whose lock the daemon holds: every write goes through it (the fence).
        self.store = store
        self.db = store.history
        self.metrics = metrics
        #: Read every user again (SIGHUP), not only this cycle's share.
        self.refresh = refresh
        self._began_run = False  # whether converge has written this cycle's run record
        self._client: AccountsClient | None = None  # what the API answered, once connected

    async def run(self) -> CycleOutcome:
        started = time.monotonic()
        settings = self.settings
        deadline = Deadline(deadline_for(settings))
        try:
            async with deadline:
                outcome = await self._reconcile(settings, deadline)
        except DeadlineExceeded:
            outcome = self._stopped(RunResult.DEADLINE, f"cancelled after {deadline.seconds:g} s")
            _, down, answered = self._api_seen()  # an API that hangs is down: told
            outcome = replace(outcome, api_down=down, api_answered=answered)
        except DesiredStateError as error:
            log.error(
                "desired_state_invalid",
                desired=str(self.source),
                revision=self.source.attempted_revision,
                problems=[str(problem) for problem in error.problems],
            )
            # The first place, so that `syncd status` says where without the journal.
            message = (
                f"{counted(len(error.problems), 'problem')} in the desired state, the first "
                f"{error.problems[0]}; nothing applied"
                if error.problems
                else "the desired state is invalid; nothing applied"
            )
            outcome = replace(self._stopped(RunResult.INVALID, message), source_failed=True)
        except ApiUnreachable as error:  # the API, not syncd: as the run record says it
            # The API down: the schedule backs off and the failures are counted.
            outcome = replace(self._stopped(RunResult.FAILED, str(error)), api_down=True)
        except GitSourceError as error:  # no good commit to fall back on: nothing to apply
            outcome = replace(self._stopped(RunResult.ERROR, str(error)), source_failed=True)
        except SyncdError as error:  # settings, credentials, state file
            outcome = self._stopped(RunResult.ERROR, str(error))
        except Exception as error:
            # The daemon is an edge: a bug fails this run, not the service.
            log.exception("run_crashed")
            outcome = CycleOutcome(
                RunResult.ERROR, message=f"internal error {type(error).__name__}"
            )
        if not self._began_run:  # so that `syncd status` lists runs that never got going
            try:
                self._record_run(outcome)
            except SyncdError as error:  # the state itself failed: still an outcome
                outcome = CycleOutcome(RunResult.ERROR, outcome.revision, message=str(error))
        return replace(outcome, seconds=time.monotonic() - started)

    def _stopped(self, result: RunResult, message: str) -> CycleOutcome:
        """A cycle cut short: its result and why, at the revision it tried to read."""
        return CycleOutcome(result, self.source.attempted_revision, message=message)

    async def _reconcile(self, settings: Settings, deadline: Deadline) -> CycleOutcome:
        try:
            read = await self.source.read()
        except GitSourceError as error:  # no good revision to fall back on
            self.metrics.observe_source(str(error))
            raise
        self.metrics.observe_source(read.stale)
        desired = self.metrics.desired = read.desired
        if read.stale is not None:
            log.warning("desired_fetch_failed", error=read.stale, using_revision=desired.revision)
        failures = UserFailures(self.db, normal_api_url(settings.api_url))
        if self.refresh:
            failures.clear()  # SIGHUP: every user is read again, those in error too
        held = held_users(failures, desired.usernames(), settings, time.time())
        planned: list[PlanResult] = []
        written: set[Action] = set()
        # The writers' lock for this cycle alone: an `apply --lock-timeout` may write
        # between two cycles (the deadline bounds the wait for it to finish).
        async with contextlib.AsyncExitStack() as held_open:
            held_open.enter_context(await self.store.write_lock("run", deadline_for(settings)))
            connection = await held_open.enter_async_context(
                connect(
                    settings,
                    on_response=self.metrics.observe_response,
                    on_retry=self.metrics.observe_retry,
                    store=self.store,
                )
            )
            self._began_run = True
            self._client = connection.client
            try:
                # The daemon's freshness is the drift window alone, each cycle
                # reading its share of the users, those read longest ago.
                freshness = Freshness(
                    settings.drift_window,
                    refresh=self.refresh,
                    refresh_oldest=drift_share(len(desired.users), settings),
                )
                guard = (
                    None  # observing: it sends none
                    if settings.observe
                    else DeletionGuard(
                        HeldChanges(self.db, connection.api),
                        settings.max_deletions,
                        revision_of(desired),
                        hold=self.hold_deletions,
                        # `run --once --user`: decides nothing about the others' sets.
                        users=frozenset(desired.usernames()) if self.source.scope else None,
                    )
                )
                converged = await converge(
                    connection,
                    planning(desired, freshness=freshness, hold=held),
                    command="run",
                    deletion_limit=settings.max_deletions,
                    confirm=lambda _: True,
                    on_plan=planned.append,
                    observe=settings.observe,
                    cancelled_as=deadline.cancelled_as,
                    hold_deletions=None if guard is None else guard.split,
                    on_change=lambda action, result, _: self._changed(written, action, result),
                )
            except GuardError as error:
                drift = len(planned[0].plan.users_with_changes()) if planned else None
                _, down, answered = self._api_seen()
                return CycleOutcome(
                    RunResult.BLOCKED,
                    desired.revision,
                    0,
                    drift,
                    str(error),
                    read.stale,
                    api_down=down,
                    api_answered=answered,
                    # Nothing applied: what it planned is pending (notifications tell it).
                    pending=[a.to_json() for a in planned[0].plan.changes] if planned else [],
                    refused=[a.to_json() for a in guard.last.held] if guard and guard.last else [],
                    # A set held earlier (by the daemon) still waits: not cleared by this.
                    held_sets=[
                        held_set.id
                        for held_set in HeldChanges(self.db, connection.api).with_status(
                            HeldStatus.HELD
                        )
                    ],
                )
            every_request_failed, api_down, api_answered = self._api_seen()
        failing = record_cycle(failures, desired.usernames(), converged.failing, held, settings)
        plan, report = converged.result.plan, converged.report
        # With the rejected deletions of users not read: not planned, still asked for.
        rejected = guard.rejections.deletions if guard is not None else ()
        pending = [a for a in dict.fromkeys((*plan.changes, *rejected)) if a not in written]
        save_pending(self.db, pending, desired.usernames() if self.source.scope else None)
        if settings.observe:
            _report_drift(plan)
        applied = (
            {a.action: report.counts.get(a.action, 0) for a in plan.changes} if report else {}
        )
        drift_users = (
            {f.user for f in report.failures} if report else set(plan.users_with_changes())
        )
        # A user in error is not known to be equal, and one held back for its own retry
        # is not even planned: counted, or the gauge drops to 0 between its retries.
        drift_users |= failing.keys()
        held_notes: list[str] = []
        if guard is not None:
            if (split := guard.last) is not None:
                drift_users |= {action.user for action in (*split.held, *split.rejected)}
            held_notes = guard.conclude(plan)
        message = "; ".join(
            part
            for part in (
                *held_notes,
                failing_summary(failing),
                # Why a cycle that found nothing to do is `held`: it read nobody.
                "every user suspended: none read" if plan.all_suspended else "",
            )
            if part
        )
        drift = len(drift_users)
        withheld = report.withheld if report else []
        ended = self._report_suspensions(converged.result, desired, withheld)
        held_sets = HeldChanges(self.db, connection.api).with_status(HeldStatus.HELD)
        return CycleOutcome(
            converged.outcome,
            desired.revision,
            sum(applied.values()),
            drift,
            message,
            read.stale,
            failing=failing,
            every_request_failed=every_request_failed,
            api_down=api_down,
            api_answered=api_answered,
            warning_codes=[warning.code for warning in plan.warnings],
            planned=True,
            all_suspended=plan.all_suspended,
            suspended=len(plan.suspended),
            withheld=withheld,
            pending=[action.to_json() for action in pending],
            suspension_ended=ended,
            # From the table: a set held earlier waits too while this cycle
            # could not plan its deletions (its users not read), or observed.
            held=[
                DeleteEmail(user, email).to_json()
                for held_set in held_sets
                for user, email in held_set.deletions
            ],
            held_sets=[held_set.id for held_set in held_sets],
        )

    def _changed(self, written: set[Action], action: Action, result: WriteResult) -> None:
        """A write ended: counted now, for a deadline or a lost session cuts the cycle
        short of its report, not of the writes it sent."""
        self.metrics.observe_change(action.action, result)
        if result == WriteResult.OK:
            written.add(action)

    def _api_seen(self) -> tuple[bool, bool, bool]:
        """Whether every request the cycle sent failed, whether the API answered none
        (it is down), and whether it answered one (it is up); none when nothing was sent."""
        client = self._client
        if client is None:
            return False, False, False
        sent = sum(client.requests.values()) > 0
        return sent and not client.succeeded, sent and not client.answered, client.answered > 0

    def _report_suspensions(
        self, result: PlanResult, desired: DesiredState, withheld: list[str]
    ) -> list[str]:
        """Say which users were left alone, and whose suspension ended: the users to tell.

        A `syncd suspend` that ended is forgotten, so it ends once. A `suspend:` stays
        in the desired state until someone removes it: the daemon keeps those that
        hold (`desired_suspensions`, which `syncd status` and the pages show), and
        tells the end of one that held at the last cycle that recorded them (of any
        when none did), so once, across restarts too.
        """
        plan = result.plan
        for user, suspension in plan.suspended:
            log.info(
                "user_suspended",
                user=user,
                reason=suspension.reason,
                until=suspension.until_text(),
                by=suspension.by,
            )
        for user in withheld:
            log.info(
                "user_suspended", user=user, reason="suspended during the cycle", nothing_sent=True
            )
        recorded = read_daemon_state(self.db).get("desired_suspensions")
        held_before = None if recorded is None else {entry["user"] for entry in recorded}
        ended = [
            (user, suspension)
            for user, suspension in plan.suspension_ended
            if suspension.source == SuspensionSource.CLI
            or held_before is None
            or user in held_before
        ]
        for user, suspension in ended:
            log.info(
                "suspension_ended",
                user=user,
                reason=suspension.reason,
                ended=suspension.until_text(),
                by=suspension.by,
            )
        if any(s.source == SuspensionSource.CLI for _, s in plan.suspension_ended):
            SuspensionTable(self.db).drop_ended(time.time())
        # A cycle limited to some users (`run --once --user`) keeps what is known of the others.
        names = set(desired.usernames()) if self.source.scope else None
        others = [e for e in recorded or [] if names is not None and e["user"] not in names]
        holding = [
            user.suspend.to_json(user.username)
            for user in desired.users
            if user.suspend is not None and user.suspend.holds(result.read_at)
        ]
        save_daemon_state(self.db, {"desired_suspensions": others + holding})
        return [user for user, _ in ended]

    def _record_run(self, outcome: CycleOutcome) -> None:
        audit = AuditTrail(self.db, {"files": [], "revision": outcome.revision})
        audit.begin_run("run")
        audit.end_run(outcome.result, {})

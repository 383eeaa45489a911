"""One reconciliation, end to end: desired state → live state → plan → guard → apply.

The glue between the pure core and the edges, shared by `syncd plan`, `syncd
apply` and the daemon, so that all of them see the same plan for the same
input and write through the same audited path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

from syncd.api.client import AccountsClient, ResponseObserver, RetryObserver
from syncd.api.credentials import CredentialStore
from syncd.core.api_url import normal_api_url
from syncd.core.desired import DesiredState, EmailsMode
from syncd.core.held import GuardSplit, Rejections
from syncd.core.live import LiveAccount
from syncd.core.plan import DeleteEmail, Plan, build_plan
from syncd.core.problem import Problem
from syncd.core.suspension import Suspensions, suspensions_at
from syncd.core.vocabulary import SUCCESSFUL_RUNS, Code, RunResult, SuspensionSource
from syncd.engine.applying import Applier, ApplyReport, ChangeObserver
from syncd.engine.fetching import (
    FetchOptions,
    Freshness,
    LiveRead,
    ProgressCallback,
    Wanted,
    fetch_live,
)
from syncd.engine.outcome import failing_users, run_result, users_left
from syncd.engine.planfile import SavedPlan, first_difference, primary_deletions, staleness
from syncd.errors import DaemonError, DeadlineExceeded, GuardError, PlanFileError
from syncd.settings import Settings
from syncd.state.audit import AuditTrail
from syncd.state.audit_queries import OpenIntent, open_intents
from syncd.state.backend import Database, StateStore, off_the_loop, open_store
from syncd.state.cache import LiveCache
from syncd.state.held_changes import HeldChanges
from syncd.state.not_kept import NotKeptRecords
from syncd.state.ownership import Claim, OwnershipLedger
from syncd.state.suspensions import SuspensionTable
from syncd.visible import counted


@dataclass
class PlanResult:
    plan: Plan
    #: The live state it was made from, and how much of it the cache answered.
    read: LiveRead
    #: Where the desired state came from: files with their sha256, git revision.
    source: dict[str, Any]
    requests: Counter[str] = field(default_factory=Counter)
    #: When this plan read the live state.
    read_at: float = 0.0
    #: The deletions a standing rejection leaves out of `plan` (`plan`, `apply`:
    #: leaving_out_rejected; a daemon's cycle keeps them in the plan for its guard).
    rejections: Rejections = field(default_factory=Rejections)

    @property
    def oldest_age(self) -> float | None:
        """Seconds since the oldest cached answer the plan used was read; None: none used."""
        oldest = self.read.oldest_read_at
        return None if oldest is None else self.read_at - oldest

    def document(self) -> dict[str, Any]:
        """The `plan --output json` document: the plan's, and how fresh its basis is."""
        document = self.plan.to_json(self.source)
        age = self.oldest_age
        document["summary"]["from_cache"] = self.read.from_cache
        document["summary"]["oldest_answer_age_seconds"] = None if age is None else round(age, 1)
        if self.rejections.deletions:  # not among the changes: apply will not make them
            document["rejected"] = self.rejections.to_json()
        return document

    def __repr__(self) -> str:
        # Short on purpose: asyncio.run formats the main task's result when it
        # restores the SIGINT handler: a full repr of 10,000 accounts was a fifth
        # of a warm plan, and even a summary of them is formatted twice.
        plan = self.plan
        return f"PlanResult({len(plan.changes)} changes, {len(plan.errors)} errors)"


def source_of(desired: DesiredState) -> dict[str, Any]:
    """Where the desired state came from, and which of its users a run was limited to."""
    source: dict[str, Any] = {
        "files": [{"path": s.path, "sha256": s.sha256} for s in desired.sources],
        "revision": desired.revision,
    }
    if desired.scope:
        source["scope"] = desired.scope.to_json()
    return source


@dataclass
class Connection:
    """What a run talks to: the API, the state (syncd.state.backend), and the credentials."""

    settings: Settings
    credentials: CredentialStore
    #: The history: runs and the audit trail (syncd.db, or the PostgreSQL database).
    db: Database
    #: The live-state cache (cache.db; on PostgreSQL the same database as `db`).
    cache_db: Database
    client: AccountsClient
    #: Whether what is read goes into the state (the cache, the ledger's releases): not
    #: for a plan on PostgreSQL (`connect`).
    keeps_answers: bool = True

    @property
    def api(self) -> str:
        """The API this run talks to, as the state keys what it keeps of it."""
        return normal_api_url(self.settings.api_url)

    @property
    def cache(self) -> LiveCache:
        return LiveCache(self.cache_db, self.api, keeps_answers=self.keeps_answers)


@asynccontextmanager
async def connect(
    settings: Settings,
    on_response: ResponseObserver | None = None,
    *,
    on_retry: RetryObserver | None = None,
    store: StateStore | None = None,
    purpose: str = "apply",
    lock_timeout: float = 0,
) -> AsyncIterator[Connection]:
    """The API client, state and credentials of one run; `on_response` sees every call,
    `on_retry` every retry.

    Given no `store` (the daemon passes the one whose lock it holds, and takes the
    writers' lock for each cycle itself), it opens the one the settings name and
    takes its lock for `purpose`, the command: one writer at a time. A plan takes
    no lock, so that it may look beside the daemon; where hosts share the state it
    writes nothing, not even the cache (a role that may only read plans with the
    daemon's ownership ledger, as a pull request's check does). With a
    `lock_timeout` (`apply --lock-timeout`), a lock a daemon holds for its life
    does not refuse: the run waits that long for the writers' lock, which the
    daemon lets go between its cycles.
    """
    credentials = CredentialStore.from_settings(settings)
    with contextlib.ExitStack() as held:
        if store is None:
            store = held.enter_context(open_store(settings, purpose))
            if purpose != "plan":
                try:
                    held.enter_context(store.lock(purpose))
                except DaemonError:
                    if not lock_timeout:
                        raise
                held.enter_context(await store.write_lock(purpose, lock_timeout))
        session = held.enter_context(store.session())
        async with AccountsClient(
            settings, credentials.for_user, on_response=on_response, on_retry=on_retry
        ) as client:
            yield Connection(
                settings,
                credentials,
                session.history,
                session.cache,
                client,
                # Unlocked, its writes would race the active instance's.
                keeps_answers=purpose != "plan" or not store.shared,
            )


class Deadline:
    """SYNCD_RUN_DEADLINE around a `plan`, an `apply` or a daemon's cycle.

    When it is up the run is cancelled: writes in flight are audited as unknown
    (their users are read again next time), and DeadlineExceeded says so once.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._timeout = asyncio.timeout(seconds)

    async def __aenter__(self) -> Deadline:
        await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._timeout.__aexit__(kind, error, tb)
        except TimeoutError:
            if not self._timeout.expired():
                raise
            raise DeadlineExceeded(
                f"stopped after {self.seconds:g} s (SYNCD_RUN_DEADLINE, --deadline): the run "
                "did not finish; writes in flight are audited as unknown and read again next run"
            ) from None

    def cancelled_as(self) -> RunResult:
        """The run record's result when converge is cancelled: by the deadline, or a stop."""
        return RunResult.DEADLINE if self._timeout.expired() else RunResult.CANCELLED


def _owned_users(desired: DesiredState) -> list[str]:
    """The users whose `emails_mode` is owned and who list their emails."""
    return [
        user.username
        for user in desired.users
        if user.mode is EmailsMode.OWNED and user.emails is not None
    ]


def owned_addresses(connection: Connection, desired: DesiredState) -> dict[str, frozenset[str]]:
    """What the ledger says syncd owns, for the users whose addresses are read: in any
    `emails_mode`, so that a user's address found gone is released even while the user
    is `exact` or `additive` for a time."""
    users = [user.username for user in desired.users if user.emails is not None]
    ledger = OwnershipLedger(connection.db, connection.api)
    if not users or not ledger.holds_any():
        return {}
    return ledger.load(users)


def ownership_unknown(connection: Connection, desired: DesiredState, plan: Plan) -> Problem | None:
    """The plan's one warning when it has users in `emails_mode: owned` and the state it
    plans with holds no ownership record for this API; None otherwise.

    Such a state (a CI job's fresh one, a laptop's) owns nothing, so every address of
    those users looks never listed, and a plan against it shows none of the deletions
    that the daemon, whose ledger owns them, will make.
    """
    users = set(_owned_users(desired)) - {user for user, _ in plan.suspended}
    if not users or OwnershipLedger(connection.db, connection.api).holds_any():
        return None
    return Problem(
        "",
        Code.OWNERSHIP_UNKNOWN,
        f"{counted(len(users), 'user')} in emails_mode: owned, and this state holds no "
        f"record of the addresses syncd owns on {connection.api}: deletions of addresses "
        "syncd added or saw listed, as a daemon's state records them, are not shown. "
        "Plan with the daemon's state to see them (docs/operations.md, \"A GitOps "
        'workflow", says where one can), or accept that they are not shown',
    )


async def compute_plan(
    settings: Settings,
    desired: DesiredState,
    *,
    refresh: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PlanResult:
    """The plan of `syncd plan`: the one the daemon and `apply` make, and it says when
    its state cannot tell which addresses syncd owns. Only here: a plan is what people
    read to know what the daemon will do, while a daemon's first cycle, or an apply
    against a fresh state, starts the ledger it would warn about."""
    step = leaving_out_rejected(planning(desired, refresh=refresh, on_progress=on_progress))
    async with Deadline(settings.run_deadline), connect(settings, purpose="plan") as connection:
        result = await step(connection)
        if warning := ownership_unknown(connection, desired, result.plan):
            result.plan = replace(result.plan, warnings=(*result.plan.warnings, warning))
        return result


def recover_interrupted(connection: Connection, audit: AuditTrail) -> list[OpenIntent]:
    """Close writes a crashed run left open, and forget their users so they are re-read.

    Also closes the runs that a killed process left without a result: the
    caller holds the lock, so no run of this state directory is alive.
    """
    audit.close_dead_runs()
    # The cache first: a crash in between leaves the intents open, and the
    # next run forgets the same users again. The other order could close the
    # intents and leave their stale cache entries trusted.
    for username in {intent.user for intent in open_intents(connection.db)}:
        connection.cache.forget(username)
    return audit.close_interrupted()


def check_deletion_guard(plan: Plan, limit: int, command: str = "apply") -> None:
    """Refuse, before any write, a run that deletes more addresses than allowed; say
    how to allow them to `command` (only `apply` has --allow-deletions)."""
    deletions = [action for action in plan.changes if isinstance(action, DeleteEmail)]
    if len(deletions) <= limit:
        return
    per_user = Counter(action.user for action in deletions)
    shown = ", ".join(f"{user} ({count})" for user, count in sorted(per_user.items())[:10])
    more = f" and {len(per_user) - 10} more users" if len(per_user) > 10 else ""
    allow = f"--allow-deletions {len(deletions)}"
    if command != "apply":  # `run --once`: the setting, or an apply
        allow = f"SYNCD_MAX_DELETIONS={len(deletions)} (or syncd apply {allow})"
    raise GuardError(
        f"refusing to delete {counted(len(deletions), 'email address', 'email addresses')} "
        f"(the limit is {limit}): {shown}{more}. Nothing was applied. If this is intended, "
        f"run again with {allow}"
    )


def claim_ownership(connection: Connection, plan: Plan) -> None:
    """Record the plan's claims: listed and read on the account in this run, syncd's
    from now on (its releases are recorded as the plan is made: plan_from).

    Called once the run is committed to its plan: past the deletion guard and the
    operator's "yes" (a daemon's cycle, which nobody confirms, past its guard, which
    holds deletions and refuses nothing), before the first write; or when it concludes
    that nothing needs writing. A run that sends nothing because it was declined, refused
    by the guard, only observing, or a saved plan found stale, claims nothing: what
    an engineer previews and declines must not change what the daemon deletes next.
    """
    if plan.claims:
        with connection.db.atomic():
            OwnershipLedger(connection.db, connection.api).record(plan.claims, Claim.LISTED)


async def apply_plan(
    connection: Connection,
    plan: Plan,
    live: Mapping[str, LiveAccount | Problem],
    audit: AuditTrail,
    on_change: ChangeObserver | None = None,
    report: ApplyReport | None = None,
) -> ApplyReport:
    """Apply `plan`; what ends is counted in `report` (a new one if None) as it ends."""
    readable = {user: state for user, state in live.items() if isinstance(state, LiveAccount)}
    suspensions = SuspensionTable(connection.db)
    applier = Applier(
        connection.client,
        connection.cache,
        audit,
        readable,
        NotKeptRecords(connection.db, connection.api, connection.settings.not_kept_ttl),
        OwnershipLedger(connection.db, connection.api),
        suspended=lambda user: suspensions.holds(user, time.time()),
        on_change=on_change,
        report=report,
    )
    return await applier.apply(plan.changes, connection.settings.concurrency)


@dataclass
class ConvergeResult:
    result: PlanResult
    run_id: str
    interrupted: list[OpenIntent]
    #: None when nothing was applied (no changes, or the operator said no).
    report: ApplyReport | None = None
    #: How the run ended, as its run record says (syncd.engine.outcome).
    outcome: RunResult = RunResult.NO_CHANGES
    #: The users that failed this run, and why.
    failing: dict[str, Problem] = field(default_factory=dict)

    @property
    def declined(self) -> bool:
        return self.outcome == RunResult.DECLINED

    def conclude(self, report: ApplyReport | None, *, observe: bool = False) -> RunResult:
        """Record what was applied, and work out which users failed and the run's result."""
        self.report = report
        self.failing = failing_users(self.result.plan, report)
        self.outcome = run_result(self.result.plan, report, self.failing, observe=observe)
        return self.outcome

    def __repr__(self) -> str:  # see PlanResult.__repr__
        return f"ConvergeResult(run {self.run_id}, {self.result!r})"


PlanStep = Callable[[Connection], Awaitable[PlanResult]]


def planning(
    desired: DesiredState,
    *,
    refresh: bool = False,
    freshness: Freshness | None = None,
    hold: Mapping[str, Problem] | None = None,
    on_progress: ProgressCallback | None = None,
) -> PlanStep:
    """The usual planning step of a converge: read what the plan needs (cache first,
    as `freshness` allows) and plan.

    `freshness` defaults to the settings' cache TTL (with `refresh`: none). The
    users in `hold` are not read: each stands for the error it holds; nor are
    the suspended ones (the desired state's `suspend:`, `syncd suspend`).
    """

    async def step(connection: Connection) -> PlanResult:
        policy = freshness or Freshness(connection.settings.cache_ttl, refresh=refresh)
        now = time.time()
        suspensions = suspended(connection, desired, now)
        options = FetchOptions(
            now=now,
            ttl=policy.ttl,
            refresh=policy.refresh,
            concurrency=connection.settings.concurrency,
            # A write without an outcome may or may not have happened: read the truth.
            distrust=frozenset(
                intent.user for intent in await off_the_loop(open_intents, connection.db)
            ),
            refresh_oldest=policy.refresh_oldest,
            hold=hold or {},
        )
        wanted = (
            Wanted.for_desired(user) for user in desired.users if user.username not in suspensions
        )
        read = await fetch_live(
            wanted,
            connection.client,
            connection.credentials,
            connection.cache,
            options,
            on_progress,
        )
        plan = plan_from(connection, desired, read, suspensions, now)
        # A claim only from an address list read now: a cached one may still show an
        # address its owner has removed since, and would make their own, added again
        # by hand, syncd's to delete.
        plan = replace(plan, claims=tuple(c for c in plan.claims if c.user in read.emails_read))
        return PlanResult(plan, read, source_of(desired), Counter(connection.client.requests), now)

    return step


def leaving_out_rejected(step: PlanStep) -> PlanStep:
    """`step`, with the deletions a standing rejection leaves out taken out of the plan
    into its `rejections`: what `plan` shows and `apply` sends, as the daemon's guard
    leaves them out of each cycle (docs/operations.md, "The operator in the loop")."""

    async def left_out(connection: Connection) -> PlanResult:
        result = await step(connection)
        held = HeldChanges(connection.db, connection.api)
        result.rejections = await off_the_loop(held.rejections, result.plan)
        result.plan = without(result.plan, result.rejections)
        return result

    return left_out


def without(plan: Plan, rejections: Rejections) -> Plan:
    """`plan` less the rejected deletions."""
    if not rejections.deletions:
        return plan
    rejected = set(rejections.deletions)
    return replace(plan, changes=tuple(a for a in plan.changes if a not in rejected))


def suspended(connection: Connection, desired: DesiredState, now: float) -> Suspensions:
    """Whom a plan made at `now` leaves alone: the desired state's `suspend:`, `syncd suspend`."""
    from_yaml = {user.username: user.suspend for user in desired.users if user.suspend}
    table = SuspensionTable(connection.db).all()
    return suspensions_at(now, desired.usernames(), from_yaml, table)


def plan_from(
    connection: Connection,
    desired: DesiredState,
    read: LiveRead,
    suspensions: Suspensions,
    read_from: float,
) -> Plan:
    """The plan for `desired` and what was `read` (from the moment `read_from`), with what
    the state remembers: the writes the server did not keep, the addresses syncd owns.

    The addresses syncd owns that a list read from the API now found gone are released
    here, whatever the run does next (a plan, an apply declined or refused): a claim
    never outlives a read that found its address gone, or the owner's adding it again
    would be syncd's to delete. Not from a cached list, nor a claim made after the read
    began: a plan takes no lock, and an apply may add that address meanwhile. A plan
    that may not write this state (beside the active instance on a shared one)
    releases nothing.
    """
    not_kept = NotKeptRecords(
        connection.db, connection.api, connection.settings.not_kept_ttl
    ).load(desired.usernames())
    owned = owned_addresses(connection, desired)
    plan = build_plan(desired, read.states, not_kept, owned, suspensions)
    releases = [gone for gone in plan.releases if gone.user in read.emails_read]
    if releases and connection.keeps_answers:
        with connection.db.atomic():
            OwnershipLedger(connection.db, connection.api).release(releases, read_from)
    return plan


def saved_planning(saved: SavedPlan, desired: DesiredState) -> PlanStep:
    """The planning step for a saved plan, its API and desired state checked before the
    run begins (SavedPlan.check_api, check_source): read its users again and refuse it
    if stale, or if its changes are not those that `desired` plans for them now (an
    edited plan)."""

    async def step(connection: Connection) -> PlanResult:
        options = FetchOptions(
            now=time.time(), ttl=0, refresh=True, concurrency=connection.settings.concurrency
        )
        read = await fetch_live(
            saved.wanted(), connection.client, connection.credentials, connection.cache, options
        )
        live = read.states
        changed = staleness(saved, live)
        if changed:
            raise PlanFileError(
                f"{saved.path} is stale: the accounts changed since it was made; nothing was "
                "applied. Make a new plan.\n  " + "\n  ".join(changed)
            )
        if refused := primary_deletions(saved, live):
            raise PlanFileError(
                f"{saved.path} would delete the primary address, which is never deleted; "
                "nothing was applied.\n  " + "\n  ".join(refused)
            )
        # Planned again for its users as a new plan would be. A user suspended with `syncd
        # suspend` since is left out: the applier withholds its writes and says so.
        touched = set(saved.plan.users_with_changes())
        scoped = desired.select(saved.scope)
        mine = replace(scoped, users=tuple(u for u in scoped.users if u.username in touched))
        suspensions = suspended(connection, mine, options.now)
        planned = plan_from(connection, mine, read, suspensions, options.now)
        withheld = {user for user, why in planned.suspended if why.source is SuspensionSource.CLI}
        # A deletion rejected since the plan was made is left out, as a new plan would:
        # compared without it here; the caller drops it from what is sent
        # (`apply` wraps this step in leaving_out_rejected).
        rejections = HeldChanges(connection.db, connection.api).rejections(planned)
        planned, left_out = without(planned, rejections), set(rejections.deletions)
        kept = [
            action
            for action in saved.plan.changes
            if action.user not in withheld and action not in left_out
        ]
        if differs := first_difference(kept, planned.changes):
            raise PlanFileError(
                f"{saved.path} does not match what the desired state and this state plan "
                "now (the plan edited, or made with another state: its ownership ledger, "
                "not-kept records or suspensions); nothing was applied. Make a new plan."
                "\n  " + "\n  ".join(differs)
            )
        requests = Counter(connection.client.requests)
        # The users the saved plan could not read stay errors of this run: applying
        # it converges the others, and the run says partial rather than ok. What syncd
        # comes to own, or owns no more, is the plan made now: the applier records it.
        made = saved.plan
        plan = Plan(
            made.changes,
            (),
            made.errors,
            made.users,
            claims=planned.claims,
            releases=planned.releases,
        )
        return PlanResult(plan, read, saved.source, requests, read_at=options.now)

    return step


async def converge(
    connection: Connection,
    make_plan: PlanStep,
    *,
    command: str,
    deletion_limit: int,
    confirm: Callable[[PlanResult], bool],
    on_plan: Callable[[PlanResult], None] | None = None,
    on_change: ChangeObserver | None = None,
    observe: bool = False,
    cancelled_as: Callable[[], RunResult] = lambda: RunResult.CANCELLED,
    hold_deletions: Callable[[Plan], GuardSplit] | None = None,
) -> ConvergeResult:
    """Plan, guard, confirm and apply, with a run record and an audit event per write.

    `on_plan` sees the plan before it is confirmed, `on_change` each write as it ends.
    With `observe`, the run plans and reports and sends no write at all (the
    deletion guard has nothing to refuse then): its result is `drift` when
    changes are pending. `cancelled_as` names the result of a run cancelled from
    outside (the daemon's deadline says `deadline`). With `hold_deletions` (a
    cycle's: syncd.service.deletion_guard), that guard says what to apply now, or
    refuses the run (a GuardError: `run --once` past the limit); a run that held
    or left out deletions and applied the rest ends `held`. Without it, the limit
    refuses the run past it, and the deletions the planning step left out as
    rejected (leaving_out_rejected) make it `held`.
    """
    audit = AuditTrail(connection.db, {})
    audit.begin_run(command)
    outcome = RunResult.FAILED
    counts: Counter[str] = Counter()
    try:
        # Off the event loop: /healthz answers while the state is read.
        interrupted = await off_the_loop(recover_interrupted, connection, audit)
        result = await make_plan(connection)
        audit.set_source(result.source)
        counts.update(result.plan.summary())
        if on_plan is not None:
            on_plan(result)
        converged = ConvergeResult(result, audit.run_id, interrupted)
        if observe:
            outcome = converged.conclude(None, observe=observe)
            return converged
        now, held = result.plan, False
        try:
            if hold_deletions is not None:
                # Rejected deletions are left out, not held for a decision: the operator
                # has answered, and their users are counted as drift until the desired
                # state stops asking. Still, the run made less than its plan: `held`,
                # never ok or no_changes (a success, which would say the accounts match).
                # Split even when empty: a rejection of a user not read stands too.
                split = hold_deletions(result.plan)
                now, held = split.now, bool(split.held or split.rejected)
            else:
                held = bool(result.rejections.deletions)  # left out by the planning step
                check_deletion_guard(result.plan, deletion_limit, command)
        except GuardError:
            outcome = RunResult.BLOCKED
            raise
        if not now.is_empty and not confirm(result):
            outcome = converged.outcome = RunResult.DECLINED
            return converged
        claim_ownership(connection, result.plan)
        report = None
        if not now.is_empty:
            report = ApplyReport()
            try:
                await apply_plan(connection, now, result.read.states, audit, on_change, report)
            finally:  # stopped or failed too: the run record counts the writes that ended
                counts.update({f"applied_{key}": value for key, value in report.counts.items()})
        outcome = converged.conclude(report)
        if held and outcome in SUCCESSFUL_RUNS:
            outcome = converged.outcome = RunResult.HELD
        if result.plan.is_empty:
            return converged
        # Who exactly: after a partial apply the plan's count of users is only a bound.
        counts["users_pending"] = len(users_left(result.plan, now, report))
        return converged
    except asyncio.CancelledError:
        # Stopped from outside (the daemon's shutdown or deadline); writes in flight
        # are already recorded as `unknown` by the applier.
        outcome = cancelled_as()
        raise
    finally:
        audit.end_run(outcome, counts)

"""What the daemon did and is doing, gathered from the state: for `syncd status` and the pages.

`syncd status` (syncd.cli.status_command) prints it; the status pages
(syncd.service.pages) show the same data, from the same function. Nothing here
calls the API or writes: the state is opened read-only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from syncd.core.api_url import normal_api_url
from syncd.core.problem import Problem
from syncd.core.suspension import EVERYONE, Suspension
from syncd.core.vocabulary import ActionName, HeldStatus, RunResult
from syncd.errors import StateError, UsageError
from syncd.service.metrics import readiness_at
from syncd.settings import Settings
from syncd.state.audit_queries import last_successful_run, last_write, recent_runs, run_writes
from syncd.state.backend import StateStore, open_store
from syncd.state.cache import last_read
from syncd.state.daemon_state import read_daemon_state
from syncd.state.held_changes import HeldChanges, HeldSet
from syncd.state.pending import pending_for
from syncd.state.suspensions import SuspensionTable
from syncd.state.user_failures import UserFailures

#: The commands whose runs plan and converge (the others record an operator's decision).
CONVERGES = frozenset({"run", "apply"})
#: Users detailed by the JSON view without --user: those with changes pending, so many.
USERS_DETAILED = 100


def read_status(
    settings: Settings, limit: int = 10, users: tuple[str, ...] = ()
) -> dict[str, Any]:
    """What `syncd status` shows, as data (also its --output json); `users` in detail."""
    path = settings.state_file
    if not settings.on_postgresql and not path.exists():
        raise UsageError(f"no state file at {path}: syncd has not run with this state directory")
    with open_store(settings, "status", read_only=True) as store:
        return gather_status(store, settings, limit, users=users)


def gather_status(
    store: StateStore,
    settings: Settings,
    limit: int = 10,
    in_error: int | None = None,
    users: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`read_status` from a store already open; only the first `in_error` users in error
    when given (a page shows so many, and their count). The users detailed are `users`,
    else the first USERS_DETAILED of those with changes pending (a few queries a user)."""
    holders = store.holders()
    db = store.history
    if settings.on_postgresql and not db.has_table("runs"):
        raise StateError(f"state database {store.where}: syncd has not run with it")
    daemon = read_daemon_state(db)
    runs = recent_runs(db, limit)
    last_success = last_successful_run(db) or (None, None)
    api = api_shown(daemon, settings)
    failing = UserFailures(db, api).all(in_error)
    suspended = SuspensionTable(db).all()
    in_desired = desired_suspensions(daemon)
    held = HeldChanges(db, api).with_status(HeldStatus.HELD, HeldStatus.APPROVED)
    named = users or tuple(pending_for(db))[:USERS_DETAILED]
    per_user = read_users(store, api, named, suspended, held, in_desired)
    active = next((holder for holder in holders if holder.active), None)
    running = active is not None
    for entry in runs:
        if entry["result"] is None and not running:
            # Nothing holds the lock, so nothing runs: its process died. The next
            # apply or run records it so; until then, say what it is.
            entry["result"] = RunResult.INTERRUPTED
        if entry["result"] == RunResult.INTERRUPTED and not entry["counts"]:
            # Killed before it counted: what it wrote is in its audit trail.
            entry["counts"] = run_writes(db, entry["id"])
        entry["applied"], entry["failed"] = _writes(entry["counts"])
    # The last converge that ended: a suspend, an approval or a prune is a run of its
    # own, and says nothing of what is pending or of the guard; one in progress has
    # counted nothing yet.
    converges = [entry for entry in runs if entry["command"] in CONVERGES]
    last = next((entry for entry in converges if entry["result"] is not None), None)
    counts = last["counts"] if last else {}
    limit_deletions = daemon.get("max_deletions", settings.max_deletions)
    return {
        "state_file": settings.state_location,
        "daemon": {
            "running": running,
            "pid": (active.pid or None) if active else None,
            # Who holds the lock, where hosts share the state (no pid of this host's).
            "active": active.name if active and active.pid is None else None,
            "standbys": [
                {"name": holder.name, "since": holder.since}
                for holder in holders
                if not holder.active
            ],
            "started_at": daemon.get("started_at"),
            "desired": daemon.get("desired"),
            "interval": daemon.get("interval"),
            "observe": bool(daemon.get("observe")),
        },
        "next_run_at": daemon.get("next_run_at") if running else None,
        "consecutive_failures": daemon.get("consecutive_failures", 0),
        "last_success_at": last_success[0],
        "last_good_revision": last_success[1],
        "pending": pending_changes(last["result"], counts) if last else None,
        "run_in_progress": any(entry["result"] is None for entry in converges),
        "guard": {
            "max_deletions": limit_deletions,
            "blocked": bool(last and last["result"] == RunResult.BLOCKED),
            # While a set waits for a decision, whatever the last run's result: a user
            # failing beside the held deletions makes it `partial`.
            "held": any(held_set.status == HeldStatus.HELD for held_set in held),
            "deletions_planned": counts.get(ActionName.DELETE_EMAIL, 0),
        },
        # As the last cycle left it, running or not: a `run --once` (cron) on the last
        # good revision, its fetch failed, said so nowhere else.
        "source": daemon.get("source"),
        "readiness": _readiness(daemon.get("readiness")) if running else None,
        "users_in_error": [_in_error(problem) for problem in failing.values()],
        # By `syncd suspend` ("*": every user), then the desired state's `suspend:`s.
        "suspensions": [s.to_json(user) for user, s in suspended.items()]
        + list(in_desired.values()),
        # Deletions the daemon's guard held: waiting for a decision, or approved.
        "held_changes": [held_set.to_json() for held_set in held],
        # How the daemon's last cycle ended, and why (the first problem's file:line:col).
        "last_cycle": daemon.get("last_cycle"),
        "users": per_user,
        "runs": runs,
    }


def api_shown(daemon: Mapping[str, Any], settings: Settings) -> str:
    """The API whose failures, cache and held deletions the state is shown for: the one
    the daemon (`daemon`, its read_daemon_state) runs against, which it records at start
    and at each reload; else the settings' own. Never the settings alone: a listener's
    are those of its start, and a standby's need not be the active instance's."""
    return normal_api_url(str(daemon.get("api_url") or settings.api_url))


def read_users(
    store: StateStore,
    api: str,
    users: tuple[str, ...],
    suspensions: Mapping[str, Suspension],
    held_sets: list[HeldSet],
    in_desired: Mapping[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """What the state knows of each of `users`, for `status --user` and its JSON view;
    `suspensions`, `held_sets` and `in_desired` as gather_status read them."""
    db = store.history
    cache = store.cache_for_reading()
    pending = pending_for(db, users)
    failing = UserFailures(db, api).all()
    report = []
    for user in users:
        profile_at, emails_at = (None, None) if cache is None else last_read(cache, api, user)
        problem = failing.get(user)
        report.append(
            {
                "user": user,
                "last_read": {"profile": _iso(profile_at), "emails": _iso(emails_at)},
                "pending": pending.get(user),
                "last_write": last_write(db, user),
                "error": None
                if problem is None
                else {"code": problem.code, "message": problem.message, "since": problem.since},
                "suspension": suspension_shown(suspensions, user, in_desired),
                "held_deletions": [
                    {"id": held.id, "status": str(held.status), "email": email}
                    for held in held_sets
                    for who, email in held.deletions
                    if who == user
                ],
            }
        )
    return report


def suspension_shown(
    suspensions: Mapping[str, Suspension], user: str, in_desired: Mapping[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The user's suspension as `status` shows it: by `syncd suspend`, its own or
    everyone's (the newer decision, as the plan has it), else its `suspend:`."""
    suspension = suspensions.get(user) or suspensions.get(EVERYONE)
    return in_desired.get(user) if suspension is None else suspension.to_json(user)


def desired_suspensions(daemon: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The desired state's `suspend:`s that held at the daemon's last cycle, by user, as
    `status` shows them: the daemon records them (syncd.service.cycle), as nothing
    here reads the desired state."""
    return {entry["user"]: entry for entry in daemon.get("desired_suspensions") or []}


def _readiness(saved: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Readiness as of now, judged from what the daemon kept of its last cycle."""
    if saved is None or "ended_at" not in saved:  # no cycle yet, or an older daemon's words
        return saved
    ready, reason = readiness_at(time.time(), saved)
    return {"ready": ready, "reason": reason}


def _iso(moment: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, to the second."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def _in_error(problem: Problem) -> dict[str, Any]:
    """A user in error as `status --output json` lists it."""
    return {
        "user": problem.user,
        "code": problem.code,
        "message": problem.message,
        "since": problem.since,
        "cycles": problem.failures,
        "retry_at": _iso(problem.retry_at),
    }


def pending_changes(result: str | None, counts: Mapping[str, int]) -> dict[str, Any]:
    """The changes of the last run's plan that it did not apply (its counts say both)."""
    by_action = {
        action: max(counts.get(action, 0) - counts.get(f"applied_{action}", 0), 0)
        for action in ActionName
    }
    total = sum(by_action.values())
    applied_any = any(counts.get(f"applied_{action}", 0) for action in ActionName)
    users, exact = (counts.get("users_changed", 0) if total else 0), not (total and applied_any)
    if "users_pending" in counts:  # counted by the run (not by one from before it was)
        users, exact = counts["users_pending"], True
    return {
        "as_of": result,
        "changes": total,
        "by_action": by_action,
        # Else, after a partial apply, the plan's user count is an upper bound.
        "users": users,
        "users_exact": exact,
        "errors": counts.get("errors", 0),
        # Whether the run got as far as a plan (its counts hold the plan's summary):
        # a run that did not knows nothing of what is pending.
        "planned": "users" in counts,
        "users_unreadable": counts.get("users_unreadable", 0),
        # Not read either: nothing is known of what they would change.
        "users_suspended": counts.get("users_suspended", 0),
    }


def _writes(counts: dict[str, int]) -> tuple[int, int]:
    """A run's writes that succeeded, and those that did not (failed, unknown, not kept,
    skipped): `applied_<action>` and `applied_<action>_<result>` in its counts."""
    applied = sum(counts.get(f"applied_{action}", 0) for action in ActionName)
    ended = sum(value for key, value in counts.items() if key.startswith("applied_"))
    return applied, ended - applied

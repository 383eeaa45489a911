"""What the daemon did and is doing, gathered from the state: for `syncd status` and the pages.

`syncd status` (syncd.cli.status_command) prints it; the status pages
(syncd.service.pages) show the same data, from the same function. Nothing here
calls the API or writes: the state is opened read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from syncd.core.problem import Problem
from syncd.core.vocabulary import ActionName, RunResult
from syncd.errors import StateError, UsageError
from syncd.settings import Settings
from syncd.state.audit import last_successful_run, recent_runs
from syncd.state.backend import StateStore, open_store
from syncd.state.daemon_state import read_daemon_state
from syncd.state.user_failures import UserFailures


def read_status(settings: Settings, limit: int = 10) -> dict[str, Any]:
    """What `syncd status` shows, as data (also its --output json)."""
    path = settings.state_file
    if not settings.on_postgresql and not path.exists():
        raise UsageError(f"no state file at {path}: syncd has not run with this state directory")
    with open_store(settings, "status", read_only=True) as store:
        return gather_status(store, settings, limit)


def gather_status(
    store: StateStore, settings: Settings, limit: int = 10, in_error: int | None = None
) -> dict[str, Any]:
    """`read_status` from a store already open; only the first `in_error` users in error
    when given (a page shows so many, and their count)."""
    holders = store.holders()
    db = store.history
    if settings.on_postgresql and not db.has_table("runs"):
        raise StateError(f"state database {store.where}: syncd has not run with it")
    daemon = read_daemon_state(db)
    runs = recent_runs(db, limit)
    last_success = last_successful_run(db) or (None, None)
    # A state file from before the daemon kept users in error has no such table.
    failing = UserFailures(db).all(in_error) if db.has_table("user_failures") else {}
    active = next((holder for holder in holders if holder.active), None)
    running = active is not None
    for entry in runs:
        if entry["result"] is None and not running:
            # Nothing holds the lock, so nothing runs: its process died. The next
            # apply or run records it so; until then, say what it is.
            entry["result"] = RunResult.INTERRUPTED
    last = runs[0] if runs else None
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
        "guard": {
            "max_deletions": limit_deletions,
            "blocked": bool(last and last["result"] == RunResult.BLOCKED),
            "deletions_planned": counts.get(ActionName.DELETE_EMAIL, 0),
        },
        "source": daemon.get("source") if running else None,
        "readiness": daemon.get("readiness") if running else None,
        "users_in_error": [_in_error(problem) for problem in failing.values()],
        "runs": runs,
    }


def _in_error(problem: Problem) -> dict[str, Any]:
    """A user in error as `status --output json` lists it."""
    retry_at = problem.retry_at
    return {
        "user": problem.user,
        "code": problem.code,
        "message": problem.message,
        "since": problem.since,
        "cycles": problem.failures,
        "retry_at": (
            None if retry_at is None else utc_iso_seconds(datetime.fromtimestamp(retry_at, UTC))
        ),
    }


def utc_iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def pending_changes(result: str | None, counts: Mapping[str, int]) -> dict[str, Any]:
    """The changes of the last run's plan that it did not apply (its counts say both)."""
    by_action = {
        action: max(counts.get(action, 0) - counts.get(f"applied_{action}", 0), 0)
        for action in ActionName
    }
    total = sum(by_action.values())
    applied_any = any(counts.get(f"applied_{action}", 0) for action in ActionName)
    users = counts.get("users_changed", 0) if total else 0
    return {
        "as_of": result,
        "changes": total,
        "by_action": by_action,
        # After a partial apply the plan's user count is an upper bound.
        "users": users,
        "users_exact": not (total and applied_any),
        "errors": counts.get("errors", 0),
        # Whether the run got as far as a plan (its counts hold the plan's summary):
        # a run that did not knows nothing of what is pending.
        "planned": "users" in counts,
        "users_unreadable": counts.get("users_unreadable", 0),
    }

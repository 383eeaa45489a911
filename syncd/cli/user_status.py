"""`syncd status --user U`: what syncd knows of one user, from the state alone.

When it was last read, the changes still pending after the daemon's last
cycle (as the plan shows them), the last write and how it ended, its error
and since when, its suspension and its held deletions: "what is wrong with
alice?" without a plan. Nothing is read from the API, nothing written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncd.visible import visible

if TYPE_CHECKING:
    from syncd.state.backend import StateStore


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def read_users(store: StateStore, users: tuple[str, ...]) -> list[dict[str, Any]]:
    from syncd.core.suspension import EVERYONE
    from syncd.core.vocabulary import HeldStatus
    from syncd.state.audit import last_write
    from syncd.state.cache import last_read
    from syncd.state.held_changes import HeldChanges
    from syncd.state.pending import pending_for
    from syncd.state.suspensions import SuspensionTable
    from syncd.state.user_failures import UserFailures

    db = store.history
    cache = store.cache_for_reading()
    pending = pending_for(db, users)
    failing = UserFailures(db).all() if db.has_table("user_failures") else {}
    suspensions = SuspensionTable(db).all()
    held_sets = HeldChanges(db).with_status(HeldStatus.HELD, HeldStatus.APPROVED)
    report = []
    for user in users:
        profile_at, emails_at = (None, None) if cache is None else last_read(cache, user)
        problem = failing.get(user)
        suspension = suspensions.get(user) or suspensions.get(EVERYONE)
        report.append(
            {
                "user": user,
                "last_read": {"profile": _iso(profile_at), "emails": _iso(emails_at)},
                "pending": pending.get(user),
                "last_write": last_write(db, user),
                "error": None
                if problem is None
                else {"code": problem.code, "message": problem.message, "since": problem.since},
                "suspension": None if suspension is None else suspension.to_json(user),
                "held_deletions": [
                    {"id": held.id, "status": str(held.status), "email": email}
                    for held in held_sets
                    for who, email in held.deletions
                    if who == user
                ],
            }
        )
    return report


def render_users(users: list[Mapping[str, Any]]) -> list[str]:
    lines = []
    for entry in users:
        lines.append(f"user {visible(entry['user'])}")
        read = entry["last_read"]
        lines.append(
            f"  last read    profile {read['profile'] or '-'}, addresses {read['emails'] or '-'}"
        )
        pending = entry["pending"]
        if pending is None:
            lines.append("  pending      none after the last cycle")
        else:
            lines.append(f"  pending      as of {pending['as_of']}:")
            lines.extend(f"    {_change(change)}" for change in pending["changes"])
        write = entry["last_write"]
        if write is None:
            lines.append("  last write   none recorded")
        else:
            message = f": {visible(write['message'])}" if write["message"] else ""
            lines.append(
                f"  last write   {write['timestamp'][:19]} {write['action']} "
                f"{visible(write['target'] or '')} {write['result']}{message}"
            )
        error = entry["error"]
        if error is not None:
            lines.append(
                f"  error        {error['code']} since {error['since']}: "
                f"{visible(error['message'])}"
            )
        suspension = entry["suspension"]
        if suspension is not None:
            lines.append(
                f"  suspended    {visible(suspension['reason'])} (until "
                f"{suspension['until'] or 'resumed'}, by {visible(suspension['by'] or '-')})"
            )
        for held in entry["held_deletions"]:
            lines.append(
                f"  held         delete {visible(held['email'])} ({held['status']}, set "
                f"{held['id']}: syncd approve {held['id']} or syncd reject {held['id']})"
            )
    return lines


def _change(change: Mapping[str, Any]) -> str:
    """One pending change as the plan shows it."""
    if change["action"] == "update_profile":
        return "; ".join(
            f"~ {name}: {_quoted(values['before'])} → {_quoted(values['after'])}"
            for name, values in change["fields"].items()
        )
    sign = "+" if change["action"] == "add_email" else "-"
    return f"{sign} {visible(change['email'])}"


def _quoted(value: str | None) -> str:
    # As the plan prints it (syncd.cli.render).
    return (
        "(write-only, differs)"
        if value is None
        else visible(json.dumps(value, ensure_ascii=False))
    )

"""The `pending_changes` table: what each user still had to change after the daemon's last cycle.

Rows only for users with something pending, as the plan's JSON shows their
changes, replaced whole at each cycle: a cycle costs in proportion to what
is pending, and `syncd status --user` reads one row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from syncd.core.plan import Action
from syncd.state.backend import Database


def save_pending(
    db: Database, actions: Iterable[Action], users: Iterable[str] | None = None
) -> None:
    """Replace the pending changes by `actions` (those the last cycle did not apply): of
    every user, or of `users` alone (a run limited to them knows nothing of the others)."""
    by_user: dict[str, list[dict[str, Any]]] = {}
    for action in actions:
        by_user.setdefault(action.user, []).append(action.to_json())
    as_of = datetime.now(UTC).isoformat(timespec="seconds")
    with db.atomic():
        if users is None:
            db.execute("DELETE FROM pending_changes")
        else:
            where = f"username IN ({db.dialect.json_values})"
            db.execute(f"DELETE FROM pending_changes WHERE {where}", [json.dumps(list(users))])
        db.execute_many(
            "INSERT INTO pending_changes (username, changes, as_of) VALUES (?, ?, ?)",
            [(user, json.dumps(changes), as_of) for user, changes in by_user.items()],
        )


def pending_for(db: Database, users: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """The pending changes of `users` (None: every user that has some), by user."""
    if not db.has_table("pending_changes"):
        return {}
    sql = "SELECT username, changes, as_of FROM pending_changes"
    parameters: list[Any] = []
    if users is not None:
        sql += f" WHERE username IN ({db.dialect.json_values})"
        parameters.append(json.dumps(list(users)))
    rows = db.execute(sql + " ORDER BY username", parameters)
    return {
        user: {"changes": json.loads(changes), "as_of": as_of} for user, changes, as_of in rows
    }

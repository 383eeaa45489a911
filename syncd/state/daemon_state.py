"""The `daemon_state` table: what `syncd run` last said about itself, for `syncd status`.

One row per key (pid, start, desired state, interval, next run, failures in a
row, the conditions notified and not yet resolved, the desired state's
`suspend:`s that held at the last cycle), the value JSON. The daemon
writes it through its own connection; status reads it from a read-only one, and
a file no daemon has used has no rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from syncd.state.backend import Database


def utc_iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="milliseconds")


def save_daemon_state(db: Database, values: Mapping[str, Any]) -> None:
    """Set keys of the daemon_state table (JSON values)."""
    now = utc_iso(datetime.now(UTC))
    with db.atomic():
        for key, value in values.items():
            db.execute(
                "INSERT INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                [key, json.dumps(value), now],
            )


def read_daemon_state(db: Database) -> dict[str, Any]:
    """Every key the daemon saved; nothing in a file no daemon has used."""
    if not db.has_table("daemon_state"):  # made by a syncd from before the daemon, read-only
        return {}
    rows = db.execute("SELECT key, value FROM daemon_state").fetchall()
    return {key: json.loads(value) for key, value in rows}

"""`syncd state migrate`: the history copied from one backend to another, and the copy checked.

What moves is what cannot be rebuilt: the runs, the audit trail (each event
with its number, since an outcome names its intent by it) and the writes the
server did not keep. What does not: the live cache (disposable: one cold read
rebuilds it), daemon_state and user_failures (the daemon writes them again in
its first cycle). Both sides are locked while it copies, so that nothing
writes to either, and the target must hold no history yet: two histories are
never merged. The copy is one transaction on the target; then every table's
count, and the audit trail's last number, are compared on both sides, and a
difference is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.errors import StateError
from syncd.state.backend import Database, StateStore

#: The tables copied, each with its columns (the same on every backend).
COPIED: dict[str, tuple[str, ...]] = {
    "runs": (
        "id",
        "command",
        "started_at",
        "ended_at",
        "source",
        "revision",
        "result",
        "counts",
        "os_user",
        "sudo_user",
        "host",
        "version",
        "pid",
    ),
    "audit": (
        "seq",
        "run_id",
        "timestamp",
        "event",
        "intent_seq",
        '"user"',
        "action",
        "target",
        "before",
        "after",
        "result",
        "status",
        "message",
        "source",
    ),
    "not_kept": ("username", "field", "sent_key", "sent", "kept", "recorded_at"),
}
#: Rows sent to the target at a time.
BATCH = 5000


@dataclass(frozen=True, slots=True)
class Copied:
    """How many rows of each table are now on both sides."""

    counts: dict[str, int]
    last_event: int | None


def count(db: Database, table: str) -> int:
    (rows,) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(rows)


def last_event(db: Database) -> int | None:
    (seq,) = db.execute("SELECT MAX(seq) FROM audit").fetchone()
    return None if seq is None else int(seq)


def migrate(source: StateStore, target: StateStore) -> Copied:
    """Copy the history of `source` into the empty `target`; raise StateError on a difference."""
    with source.lock("state migrate"), target.lock("state migrate"):
        origin, into = source.history, target.history
        held = {table: count(into, table) for table in COPIED}
        if any(held.values()):
            raise StateError(
                f"{target.where} already holds a history ({held['runs']} runs, "
                f"{held['audit']} audit events): refused, a history is copied into an empty one"
            )
        with into.atomic():
            for table, columns in COPIED.items():
                _copy(origin, into, table, columns)
            into.advance_identity("audit", "seq")
        expected = {table: count(origin, table) for table in COPIED}
        copied = {table: count(into, table) for table in COPIED}
        if copied != expected or last_event(into) != last_event(origin):
            raise StateError(
                f"the copy to {target.where} does not match {source.where}: "
                f"{copied} rows against {expected}"
            )
        return Copied(copied, last_event(into))


def _copy(origin: Database, into: Database, table: str, columns: tuple[str, ...]) -> None:
    names = ", ".join(columns)
    # In the order of each table's key, read whole: a history of years is some
    # hundreds of MB at most, and is read once.
    key = {"runs": "id", "audit": "seq", "not_kept": "username, field, sent_key"}[table]
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
    rows = origin.execute(f"SELECT {names} FROM {table} ORDER BY {key}").fetchall()
    for start in range(0, len(rows), BATCH):
        into.execute_many(insert, rows[start : start + BATCH])

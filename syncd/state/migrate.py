"""`syncd state migrate`: the history copied from one backend to another, and the copy checked.

What moves is what cannot be rebuilt: the runs, the audit trail (each event
with its number, since an outcome names its intent by it), which of its
intents are open, and the cuts of its prunes (without them the chain of the
kept events would start nowhere, and `audit verify` would call the prune a
removal), the writes the server did not keep, the addresses syncd owns, and
the operator's decisions (suspensions, held deletions approved or rejected).
What does not: the live cache (disposable: one cold read rebuilds it),
daemon_state, user_failures and pending_changes (the daemon writes them again
in its first cycle). Both sides are locked while it copies, so that nothing writes
to either, and the target must hold no history yet: two histories are never
merged. The copy is one transaction on the target; then every table's count,
and the audit trail's last number, are compared on both sides, and a
difference is an error.
"""

from __future__ import annotations

from syncd.errors import StateError
from syncd.state.backend import BATCH, Database, StateStore
from syncd.state.chain import read_head
from syncd.state.schema import columns
from syncd.visible import counted

#: The tables copied, each with the key it is read in the order of.
COPIED = {
    "runs": "id",
    "audit": "seq",
    "open_intents": "seq",
    "audit_cuts": "seq",
    "not_kept": "api, username, field, sent_key",
    "email_ownership": "api, username, email_key",
    "suspensions": "username",
    "held_changes": "id",
}


def count(db: Database, table: str) -> int:
    (rows,) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(rows)


def last_event(db: Database) -> int | None:
    (seq,) = db.execute("SELECT MAX(seq) FROM audit").fetchone()
    return None if seq is None else int(seq)


def migrate(source: StateStore, target: StateStore) -> dict[str, int]:
    """Copy the history of `source` into the empty `target`; raise StateError on a difference.

    Returns how many rows of each table are now on both sides.
    """
    with source.lock("state migrate"), target.lock("state migrate"):
        origin, into = source.history, target.history
        held = {table: count(into, table) for table in COPIED}
        if any(held.values()):
            raise StateError(
                f"{target.where} already holds a history ({counted(held['runs'], 'run')}, "
                f"{counted(held['audit'], 'audit event')}): refused, a history is copied into "
                "an empty one"
            )
        with into.atomic():
            for table, key in COPIED.items():
                _copy(origin, into, table, key)
            into.advance_identity("audit", "seq")
            head = read_head(origin)  # the chain goes on from where it was
            into.execute("UPDATE audit_head SET seq = ?, hash = ?", [head.seq, head.hash])
        expected = {table: count(origin, table) for table in COPIED}
        copied = {table: count(into, table) for table in COPIED}
        if (
            copied != expected
            or last_event(into) != last_event(origin)
            or read_head(into) != read_head(origin)
        ):
            raise StateError(
                f"the copy to {target.where} does not match {source.where}: "
                f"{copied} rows against {expected}"
            )
        return copied


def _copy(origin: Database, into: Database, table: str, key: str) -> None:
    # Both sides have the same columns (syncd.state.schema), each named as the target
    # lists it, quoted: "user" is a keyword to PostgreSQL.
    quoted = [f'"{name}"' for name in columns(into, table)]
    names = ", ".join(quoted)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in quoted)})"
    # In the order of each table's key, BATCH rows at a time: memory stays bounded
    # whatever the size of the history.
    for rows in origin.stream(f"SELECT {names} FROM {table} ORDER BY {key}", BATCH):
        into.execute_many(insert, rows)

"""The audit trail's hash chain: each event carries the SHA-256 of the one before it.

An event's `hash` is the SHA-256 of its canonical form: the JSON, keys sorted,
of its columns (its number included) and `prev_hash`, the hash of the event
before it. Changing an event changes its hash; removing or inserting one breaks
the link of the next. `verify` walks the chain from the first kept event and
names the first that does not match, whoever changed it: the append-only
triggers stop a role that does not own the table; the chain is how the owner's
changes, or those of anyone with the file, are noticed. Its head (the last
event's number and hash, `syncd audit head`) kept elsewhere proves the past.

The head also lives in the one-row table `audit_head`. Each append moves it
from the head it read to the new event, by an UPDATE that names the old head:
a writer that read a head another one has moved since updates no row, reads it
again and retries, so that two writers never chain to the same event. On
PostgreSQL the row lock makes the second wait for the first's commit; on
SQLite one writer at a time holds the file. The event's number is the head's
plus one, known before its hash is computed.

Events older than the migration that made the chain have no hash: the chain
starts at the first hashed event, whose `prev_hash` is NULL; after a prune
(syncd.state.retention), at the cut it recorded. A state from before that
migration, opened read-only (`audit verify`, `audit head`), is read as it is:
all its events are from before the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from syncd.errors import StateError
from syncd.state.backend import Database
from syncd.state.schema import has_column

#: The columns an event's hash covers, as the table names them.
HASHED = (
    "seq",
    "run_id",
    "timestamp",
    "event",
    "intent_seq",
    "user",
    "action",
    "target",
    "before",
    "after",
    "result",
    "status",
    "message",
    "source",
)
SELECTED = ", ".join(f'"{column}"' for column in (*HASHED, "prev_hash", "hash"))
#: The same, of an audit table from before the chain (not migrated: read-only).
UNCHAINED = ", ".join(f'"{column}"' for column in HASHED) + ", NULL AS prev_hash, NULL AS hash"


@dataclass(frozen=True, slots=True)
class Head:
    """The last event of the chain: its number and hash (None before the first hashed one)."""

    seq: int
    hash: str | None

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash or ''}"

    @classmethod
    def parse(cls, text: str) -> Head:
        seq, _, digest = text.strip().partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise StateError(
                f"not an audit head (SEQ:SHA256, as `syncd audit head` prints): {text[:80]!r}"
            )
        return cls(int(seq), digest)


def digest(event: Mapping[str, Any], prev_hash: str | None) -> str:
    """The SHA-256 of an event's canonical form, chained to `prev_hash`."""
    canonical = {column: event.get(column) for column in HASHED}
    canonical["prev_hash"] = prev_hash
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def read_head(db: Database) -> Head:
    # No table: a state from before the chain, read-only; made empty by hand: start
    # after the last event.
    chained = db.has_table("audit_head")
    row = db.execute("SELECT seq, hash FROM audit_head").fetchone() if chained else None
    if row is None:
        (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()
        return Head(int(last), None)
    return Head(int(row[0]), row[1])


def link(event: Mapping[str, Any], head: Head) -> dict[str, Any]:
    """The row of `event` (columns of HASHED but seq) appended after `head`: its number,
    `prev_hash` and `hash` added. Chain.append writes it; the bench's history too."""
    row = {**event, "seq": head.seq + 1, "prev_hash": head.hash}
    row["hash"] = digest(row, head.hash)
    return row


class Chain:
    """Appends events to the audit trail of `db`, each chained to the one before."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: The head this process appended last; read again when another moved it.
        self._head: Head | None = None

    def append(self, event: Mapping[str, Any]) -> int:
        """Insert one event (columns of HASHED but seq), inside the caller's transaction."""
        for _ in range(2):
            head = self._head or read_head(self.db)
            row = link(event, head)
            seq: int = row["seq"]
            moved = self.db.execute(
                "UPDATE audit_head SET seq = ?, hash = ? WHERE seq = ? AND COALESCE(hash, '') = ?",
                [seq, row["hash"], head.seq, head.hash or ""],
            ).rowcount
            if moved == 1:
                break
            self._head = None  # another process appended, or our transaction rolled back
        else:
            raise StateError(
                f"state {self.db.name}: the audit trail's head moved while an event was added"
            )
        quoted = ", ".join(f'"{name}"' for name in row)  # "user": a keyword to PostgreSQL
        self.db.execute(
            f"INSERT INTO audit ({quoted}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )
        self._head = Head(seq, row["hash"])
        return seq


def events(db: Database) -> Iterator[dict[str, Any]]:
    """Every event, oldest first, read in batches by number."""
    # A read-only state may be older than the chain's columns.
    selected = SELECTED if has_column(db, "audit", "hash") else UNCHAINED
    return db.read_by_key(f"SELECT {selected} FROM audit WHERE seq > ? ORDER BY seq", [], "seq", 0)


@dataclass(frozen=True, slots=True)
class Verified:
    """A chain that holds: what was checked."""

    #: Events older than the chain, without a hash.
    unhashed: int
    #: Hashed events checked, and the first and last of them.
    checked: int
    first: int | None
    head: Head | None
    #: The hash the first checked event follows: None, the start of the chain.
    follows: str | None


def verify_events(
    found: Iterator[Mapping[str, Any]], *, starts: frozenset[str | None] | None = None
) -> Verified:
    """Check each event's hash and its link to the one before; raise at the first that fails.

    `starts`: the hashes the first hashed event may follow (None: the chain's
    start; a prune's cut); None accepts any (an export verified on its own).
    """
    unhashed = checked = 0
    first: int | None = None
    follows: str | None = None
    last: Mapping[str, Any] | None = None
    for event in found:
        seq = event["seq"]
        if event["hash"] is None:
            if last is not None:
                raise StateError(f"audit event {seq} has no hash, inside the chain: inserted")
            unhashed += 1
            continue
        if last is None:
            first, follows = seq, event["prev_hash"]
            if starts is not None and follows not in starts:
                raise StateError(
                    f"audit event {seq}, the first kept, follows no recorded start of the "
                    "chain: events before it were removed"
                )
        elif event["prev_hash"] != last["hash"]:
            raise StateError(
                f"audit event {seq} does not follow event {last['seq']}: an event between "
                "them was removed or inserted, or one of them changed"
            )
        if digest(event, event["prev_hash"]) != event["hash"]:
            raise StateError(f"audit event {seq} does not match its hash: it was changed")
        checked += 1
        last = event
    head = None if last is None else Head(last["seq"], last["hash"])
    return Verified(unhashed, checked, first, head, follows)


def verify(db: Database, kept_head: Head | None = None) -> Verified:
    """Check the chain of `db` from its first kept event to its recorded head.

    `kept_head`, a head written out before, must still be in the chain.
    """
    pruned = cuts(db)
    starts = frozenset({None, *(cut.hash for cut in pruned)})
    verified = verify_events(events(db), starts=starts)
    recorded = read_head(db)
    # With no event left, the chain ends where the last prune cut it.
    ends = verified.head or (max(pruned, key=lambda cut: cut.seq) if pruned else None)
    if recorded.hash is not None and ends != recorded:
        last = ends.seq if ends else "none"
        raise StateError(
            f"the audit trail ends at event {last}, but its head is event {recorded.seq}: "
            "events at its end were removed"
        )
    if kept_head is not None:
        row = (
            db.execute("SELECT hash FROM audit WHERE seq = ?", [kept_head.seq]).fetchone()
            if verified.checked
            else None  # no hashed event: none is the kept head (nor, unchained, its column)
        )
        if row is None and kept_head.seq < (verified.first or 0):
            if kept_head.hash not in starts:
                raise StateError(
                    f"the kept head, event {kept_head.seq}, was pruned: verify it against "
                    "the export that holds it (`syncd audit verify --file`)"
                )
        elif row is None or row[0] != kept_head.hash:
            raise StateError(
                f"the kept head, event {kept_head.seq}, is not in the audit trail as it was: "
                "the history up to it was rewritten"
            )
    return verified


def cuts(db: Database) -> list[Head]:
    """The last events that prunes removed (syncd.state.retention)."""
    if not db.has_table("audit_cuts"):
        return []
    rows = db.execute("SELECT seq, hash FROM audit_cuts WHERE hash IS NOT NULL")
    return [Head(int(seq), digest) for seq, digest in rows]

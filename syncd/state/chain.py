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

A cut is a row outside the chain: whoever may write the tables may record one
and delete the events before it, as the owner's `audit prune --force` does, and
the kept chain still holds. The chain cannot tell that from a prune, so
`verify` names every cut it relies on and the run that made it; what proves a
removed prefix is its export, which must hold the cut's event as it is (`syncd
audit verify --file EXPORT --head SEQ:SHA256`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from syncd.core.vocabulary import RunResult
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
class RecordedCut:
    """A prune's cut as audit_cuts records it (syncd.state.retention): the kept chain may
    start after it. A row anyone who may write the table could have added: what vouches
    for it is the run that made it, and the export, which must hold `head` as it is."""

    #: The last event removed: its number and hash.
    head: Head
    cut_at: str
    events: int
    run_id: str
    #: The export the prune checked (None: forced), as it was named then.
    export: str | None
    #: Whether its run is an `audit prune` that ended ok: a cut recorded by hand has none.
    by_prune: bool


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
    #: The cuts the chain may start at, oldest first.
    cuts: tuple[RecordedCut, ...] = ()
    #: The cut at the kept head (`verify(…, kept_head)`), if the prune removed it.
    kept_pruned: RecordedCut | None = None


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

    `kept_head`, a head written out before, must still be in the chain, or be a
    recorded cut with the cut's own hash. One before a cut is only in its export,
    which is not checked here: raised as not proven, naming the command that checks it.
    """
    pruned = cuts(db)
    starts = frozenset({None, *(cut.head.hash for cut in pruned)})
    verified = replace(verify_events(events(db), starts=starts), cuts=tuple(pruned))
    recorded = read_head(db)
    # With no event left, the chain ends where the last prune cut it.
    ends = verified.head or (pruned[-1].head if pruned else None)
    if recorded.hash is not None and ends != recorded:
        last = ends.seq if ends else "none"
        raise StateError(
            f"the audit trail ends at event {last}, but its head is event {recorded.seq}: "
            "events at its end were removed"
        )
    if kept_head is None:
        return verified
    row = (
        db.execute("SELECT hash FROM audit WHERE seq = ?", [kept_head.seq]).fetchone()
        if verified.checked
        else None  # no hashed event: none is the kept head (nor, unchained, its column)
    )
    if row is not None and row[0] == kept_head.hash:
        return verified
    # Not kept: the first cut at or after it removed it (its hash, at the cut itself).
    cut = next((cut for cut in pruned if cut.head.seq >= kept_head.seq), None)
    if row is None and cut and cut.head == kept_head:
        return replace(verified, kept_pruned=cut)
    if row is None and cut and cut.head.seq > kept_head.seq:
        # Any hash would pass here: the cut records only its own event's.
        into = f"into {cut.export}" if cut.export else "with no export (--force)"
        check = f"syncd audit verify --file {cut.export or 'EXPORT'} --head {kept_head}"
        raise StateError(
            f"the kept head, event {kept_head.seq}, was pruned on {cut.cut_at} {into}: "
            f"the state cannot prove it; `{check}` checks it there"
        )
    raise StateError(
        f"the kept head, event {kept_head.seq}, is not in the audit trail as it was: "
        "the history up to it was rewritten"
    )


def cuts(db: Database) -> list[RecordedCut]:
    """The cuts prunes recorded in the chain (syncd.state.retention), oldest first, each
    with whether an `audit prune` run that ended ok made it."""
    if not db.has_table("audit_cuts"):
        return []
    rows = db.execute(
        "SELECT c.seq, c.hash, c.cut_at, c.events, c.run_id, c.export,"
        " r.command = 'audit prune' AND r.result = ?"
        " FROM audit_cuts AS c LEFT JOIN runs AS r ON r.id = c.run_id"
        " WHERE c.hash IS NOT NULL ORDER BY c.seq",
        [RunResult.OK],
    )
    return [
        RecordedCut(Head(int(seq), digest), cut_at, int(count), run_id, export, bool(by_prune))
        for seq, digest, cut_at, count, run_id, export, by_prune in rows
    ]

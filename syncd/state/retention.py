"""Retention: the audit events and runs before a date exported, checked, and pruned.

What goes is a prefix of the chain (syncd.state.chain): the events in order
of number up to the first one at or after the date, or the first intent still
open, whichever comes first; and the runs that ended before the date and have
no event left, but for those `syncd status` reads (RUNS_BEFORE). An export is
JSON Lines (gzip when its name ends in `.gz`), written as the events are read,
in batches:

    {"kind": "export", "before": DATE}
    {"kind": "event", <its columns, hash and prev_hash included>}   one per event
    {"kind": "run", <its columns>}                                   one per run
    {"kind": "end", "events": N, "runs": M, "last": SEQ, "hash": SHA256}

so an export verifies on its own: its events' chain holds, and the end line
says how many there are and the hash they end with. A prune deletes only what
an export holds, checked by the count and the chain's last hash (or, with
force, what an export would hold), and records the cut (audit_cuts: the last
event removed and its hash, where the kept chain starts; none when only runs
go) and a run of its own, in one transaction. The append-only trigger lets a
DELETE through only for events at or before the last cut recorded. A cut
recorded by hand is a prune the chain cannot tell apart (syncd.state.chain):
`audit verify` names each cut and its run, and the export is the proof of what
a cut removed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from syncd.core.vocabulary import RunResult
from syncd.errors import StateError
from syncd.state.audit import AuditTrail
from syncd.state.backend import Database
from syncd.state.chain import Head, cuts, events, verify_events
from syncd.wholefiles import replacing

#: The last converge; the last that ended ok; the last with no changes.
_LAST_RUNS = tuple(
    f"SELECT id FROM runs WHERE command IN ('apply', 'run'){where} ORDER BY {order} DESC LIMIT 1"
    for where, order in (
        ("", "started_at"),
        (f" AND result = '{RunResult.OK}'", "ended_at"),
        (f" AND result = '{RunResult.NO_CHANGES}'", "ended_at"),
    )
)
#: The runs that go with the events up to `?` (the cut) and ended before `?` (the date).
#: Kept whatever their age: each `audit prune` (a cut names its run: syncd.state.chain),
#: and the runs whose facts `syncd status` and the daemon read: the last converge (the
#: changes pending, the guard) and the last success.
RUNS_BEFORE = (
    "FROM runs WHERE ended_at < ? AND command <> 'audit prune'"
    + "".join(f" AND id NOT IN ({last})" for last in _LAST_RUNS)
    + " AND NOT EXISTS (SELECT 1 FROM audit AS a WHERE a.run_id = runs.id AND a.seq > ?)"
)


@dataclass(frozen=True, slots=True)
class Cut:
    """What goes before a date: the events up to `last` (0: none), its hash, the runs."""

    before: str
    events: int
    runs: int
    last: int
    hash: str | None

    @property
    def held(self) -> tuple[int, int, int, str | None]:
        """What an export's end line says it holds: events, runs, the last and its hash."""
        return (self.events, self.runs, self.last, self.hash)


def iso(moment: datetime) -> str:
    """A date as the tables hold times, so that they compare as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _prefix(db: Database, before: str) -> Iterator[dict[str, Any]]:
    """The events that go, in order: up to the date, and to the first open intent."""
    row = db.execute("SELECT MIN(seq) FROM open_intents").fetchone()
    open_from = row[0] if row and row[0] is not None else None
    for event in events(db):
        if event["timestamp"] >= before or (open_from is not None and event["seq"] >= open_from):
            return
        yield event


def find_cut(db: Database, moment: datetime) -> Cut:
    """What a prune before `moment` removes (the events read in batches), its chain
    checked from the start the trail recorded: a prune of a broken chain would record
    a cut after the break, and the kept chain would hold again, the damage unseen."""
    before = iso(moment)
    count, last = 0, None

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count, last
        for event in _prefix(db, before):
            count += 1
            last = event
            yield event

    verify_events(counted(), starts=frozenset({None, *(cut.head.hash for cut in cuts(db))}))
    end = 0 if last is None else last["seq"]
    (runs,) = db.execute(f"SELECT COUNT(*) {RUNS_BEFORE}", [before, end]).fetchone()
    return Cut(before, count, int(runs), end, None if last is None else last["hash"])


@contextlib.contextmanager
def _text(path: Path, mode: str) -> Iterator[IO[str]]:
    """The export's text, gzipped when its name ends in .gz. Written whole or not at all
    (syncd.wholefiles): a crash must not leave a pruned history's only copy an empty
    file."""
    try:
        with replacing(path) if mode == "w" else path.open("rb") as raw:
            binary: IO[bytes] = raw
            if path.name.endswith(".gz"):
                binary = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode=mode + "b"))
            with binary, io.TextIOWrapper(binary, encoding="utf-8") as text:
                yield text
    except OSError as error:
        raise StateError(f"{path}: {error.strerror or error}") from None


def export(db: Database, moment: datetime, out: Path) -> Cut:
    """Write the events and runs before `moment` to `out`; what it holds."""
    if not db.has_table("open_intents"):
        # Opened read-only, and from before the intents were kept apart: which events
        # may go is not known until it is migrated.
        raise StateError(
            f"state {db.name} is older than this syncd: migrate it first (`syncd plan`; "
            "on PostgreSQL as the role that owns the tables), then export"
        )
    before = iso(moment)
    count, last = 0, None
    with _text(out, "w") as text:
        text.write(json.dumps({"kind": "export", "before": before}) + "\n")
        for event in _prefix(db, before):
            text.write(json.dumps({"kind": "event", **event}) + "\n")
            count += 1
            last = event
        end = 0 if last is None else last["seq"]
        runs = 0
        for run in db.read_by_key(
            f"SELECT * {RUNS_BEFORE} AND id > ? ORDER BY id", [before, end], "id", ""
        ):
            text.write(json.dumps({"kind": "run", **run}) + "\n")
            runs += 1
        digest = None if last is None else last["hash"]
        end_line = {"kind": "end", "events": count, "runs": runs, "last": end, "hash": digest}
        text.write(json.dumps(end_line) + "\n")
    return Cut(before, count, runs, end, digest)


def verify_export(path: Path, kept: Head | None = None) -> Cut:
    """Check an export on its own: its chain holds, and its end line matches what it holds;
    with `kept`, a head written out before, that the export holds it as it was."""
    ended: dict[str, Any] | None = None
    runs = 0
    header: dict[str, Any] = {}
    kept_hash: str | None = None

    def exported() -> Iterator[dict[str, Any]]:
        nonlocal ended, runs, header, kept_hash
        with _text(path, "r") as text:
            for number, line in enumerate(text, 1):
                try:
                    item = json.loads(line)
                    kind = item.pop("kind")
                except (ValueError, KeyError, AttributeError):
                    raise StateError(f"{path}:{number}: not a line of an audit export") from None
                if ended is not None:
                    raise StateError(f"{path}:{number}: a line after the end line")
                if kind == "export":
                    header = item
                elif kind == "event":
                    if kept is not None and item.get("seq") == kept.seq:
                        kept_hash = item.get("hash")
                    yield item
                elif kind == "run":
                    runs += 1
                elif kind == "end":
                    ended = item

    try:
        verified = verify_events(exported())
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise StateError(f"{path}: {error}") from None
    except StateError as error:
        raise StateError(f"{path}: {error}") from None
    if ended is None or "before" not in header:
        raise StateError(f"{path}: the export is incomplete (no end line)")
    head = verified.head or Head(0, None)
    events = verified.checked + verified.unhashed
    cut = Cut(header["before"], events, runs, head.seq, head.hash)
    if cut.held != (ended["events"], ended["runs"], ended["last"], ended["hash"]):
        raise StateError(f"{path}: the export does not hold what its end line says")
    if kept is not None and kept_hash != kept.hash:
        if kept_hash is None:
            raise StateError(f"{path}: the kept head, event {kept.seq}, is not in this export")
        raise StateError(
            f"{path}: the kept head, event {kept.seq}, is not in the export as it was: "
            "the history up to it was rewritten"
        )
    return cut


def prune(db: Database, moment: datetime, *, export_file: Path | None) -> Cut:
    """Delete the events and runs before `moment`, which `export_file` must hold (None:
    forced); record the cut and a run of the prune. The caller holds the lock."""
    cut = find_cut(db, moment)
    if export_file is not None:
        exported = verify_export(export_file)
        if exported.held != cut.held:
            raise StateError(
                f"{export_file} does not hold the {cut.events} events and {cut.runs} runs "
                f"before {cut.before} (it holds {exported.events} and {exported.runs}): "
                "nothing was pruned; export them again"
            )
    if not cut.events and not cut.runs:
        return cut
    audit = AuditTrail(db, {})
    try:
        # The prune's run too, all or nothing, and begun last: a refused prune leaves no
        # run open, nor a log of one.
        with db.atomic():
            # Runs alone cut no chain: a row at event 0 would only say so falsely. (A cut
            # of events from before the chain has no hash: the trigger still needs it.)
            if cut.events:
                db.execute(
                    "INSERT INTO audit_cuts"
                    " (seq, hash, cut_at, run_id, before, events, runs, export)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        cut.last,
                        cut.hash,
                        iso(datetime.now(UTC)),
                        audit.run_id,
                        cut.before,
                        cut.events,
                        cut.runs,
                        None if export_file is None else str(export_file),
                    ],
                )
                db.execute("DELETE FROM audit WHERE seq <= ?", [cut.last])
            db.execute(f"DELETE {RUNS_BEFORE}", [cut.before, cut.last])
            audit.begin_run("audit prune")
            audit.end_run(RunResult.OK, {"pruned_events": cut.events, "pruned_runs": cut.runs})
    except StateError as error:
        # PostgreSQL's insufficient_privilege: the daemon's role, which may not delete.
        if getattr(error.__context__, "sqlstate", None) == "42501":
            raise StateError(
                f"state {db.name}: this role may not prune the audit trail: run `syncd audit"
                " prune` as the role that owns the tables (docs/postgresql-roles.md); nothing"
                f" was pruned: {' '.join(str(error.__context__).split())}"
            ) from None
        raise
    return cut

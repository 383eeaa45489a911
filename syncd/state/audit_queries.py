"""Reading the audit trail and the runs back: for a cycle, a takeover, `status` and `audit`.

The writer is syncd.state.audit. The table `open_intents` holds exactly the
intents without an outcome (the writer keeps it so), so finding them reads
those rows alone, not the years of closed ones. Every query of a cycle, a
takeover, `syncd status` and `syncd audit --user … --since …` is answered
through an index, by what it returns (tests/state/test_query_plans.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd.core.vocabulary import RunResult, WriteResult
from syncd.state.backend import Database, as_dicts


@dataclass(frozen=True, slots=True)
class OpenIntent:
    """A write that was started and never got an outcome: the process died."""

    seq: int
    run_id: str
    timestamp: str
    user: str
    action: str
    target: str


def open_intents(db: Database) -> list[OpenIntent]:
    """Writes started and never given an outcome: in flight elsewhere, or lost in a crash."""
    rows = db.execute(
        'SELECT a.seq, a.run_id, a.timestamp, a."user", a.action, a.target'
        " FROM open_intents AS o JOIN audit AS a ON a.seq = o.seq ORDER BY o.seq"
    )
    return [OpenIntent(*row) for row in rows.fetchall()]


#: The last run that ended with one result: one step down the index (result, ended_at).
#: Only a converge reads and compares the accounts: an operator's command (`syncd
#: suspend`, `approve`, `audit prune`) also ends ok, and is no success of syncd's.
LAST_RUN_ENDED = (
    "SELECT ended_at, revision FROM runs WHERE result = ? AND ended_at IS NOT NULL"
    " AND command IN ('apply', 'run') ORDER BY result DESC, ended_at DESC LIMIT 1"
)


def last_successful_run(db: Database) -> tuple[str, str | None] | None:
    """When the last run that ended ok or with nothing to change ended, and its revision."""
    # One query per result: `result IN (…) ORDER BY ended_at` would read every good run.
    found = [
        (row[0], row[1])
        for result in (RunResult.OK, RunResult.NO_CHANGES)
        if (row := db.execute(LAST_RUN_ENDED, [result]).fetchone()) is not None
    ]
    return max(found, default=None)


def recent_runs(db: Database, limit: int) -> list[dict[str, Any]]:
    """The last `limit` runs, newest first, for `syncd status` (counts decoded)."""
    runs = as_dicts(
        db.execute(
            "SELECT id, command, started_at, ended_at, result, revision, counts FROM runs"
            " ORDER BY started_at DESC LIMIT ?",
            [limit],
        )
    )
    for run in runs:
        run["counts"] = json.loads(run["counts"] or "{}")
    return runs


def run_writes(db: Database, run_id: str) -> dict[str, int]:
    """A run's writes, counted from its audit events as its run record counts them
    (`applied_<action>` ok, `applied_<action>_<result>` otherwise): for a run killed before
    it counted them. Its intents without an outcome of its own count as `interrupted`."""
    rows = db.execute(
        "SELECT event, action, result, COUNT(*) FROM audit WHERE run_id = ?"
        " GROUP BY event, action, result",
        [run_id],
    ).fetchall()
    counts: dict[str, int] = {}
    unanswered: dict[str, int] = {}
    for event, action, result, n in rows:
        if event == "intent":
            unanswered[action] = unanswered.get(action, 0) + n
        # An `interrupted` outcome is a recovering run's, closing an intent of another run.
        elif event == "outcome" and result != WriteResult.INTERRUPTED:
            key = f"applied_{action}" if result == WriteResult.OK else f"applied_{action}_{result}"
            counts[key] = n
            unanswered[action] = unanswered.get(action, 0) - n
    for action, n in unanswered.items():
        if n > 0:
            counts[f"applied_{action}_{WriteResult.INTERRUPTED}"] = n
    return counts


def last_write(db: Database, user: str) -> dict[str, Any] | None:
    """The last write to `user` and how it ended, for `syncd status --user`."""
    found = as_dicts(
        db.execute(
            'SELECT timestamp, action, target, result, status, message FROM audit WHERE "user" = ?'
            " AND event = 'outcome' ORDER BY timestamp DESC LIMIT 1",
            [user],
        )
    )
    return found[0] if found else None


#: What `query_events` tells of an event's run: the columns of `runs` it selects.
_RUN_COLUMNS = ("command", "os_user", "sudo_user", "host", "version", "pid")


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What `syncd audit` may select by: --user, --since, --run, --action, --result."""

    users: tuple[str, ...] = ()
    since: datetime | None = None
    runs: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    #: An outcome's result; its intent is shown with it.
    results: tuple[str, ...] = ()


def query_events(
    db: Database, where: EventFilter | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Audit events, oldest first (the last `limit` of them), for `syncd audit`.

    Each event carries its run's command and who made it (`run`), and an
    outcome the before and after of its intent, so that one line can say it all.
    """
    where = where or EventFilter()
    values = db.dialect.json_values
    conditions: list[str] = []
    parameters: list[Any] = []
    if where.since:
        conditions.append("a.timestamp >= ?")
        parameters.append(where.since.astimezone(UTC).isoformat(timespec="microseconds"))
    for column, chosen in (
        ('a."user"', where.users),
        ("a.run_id", where.runs),
        ("a.action", where.actions),
    ):
        if chosen:
            conditions.append(f"{column} IN ({values})")
            parameters.append(json.dumps(list(chosen)))
    if where.results:
        conditions.append(
            f"a.seq IN (SELECT o.seq FROM audit AS o WHERE o.result IN ({values})"
            f" UNION SELECT o.intent_seq FROM audit AS o WHERE o.result IN ({values}))"
        )
        parameters += [json.dumps(list(where.results))] * 2
    sql = (
        "SELECT a.*, r.command, r.os_user, r.sudo_user, r.host, r.version, r.pid,"
        " COALESCE(a.before, i.before) AS before, COALESCE(a.after, i.after) AS after"
        " FROM audit AS a LEFT JOIN runs AS r ON r.id = a.run_id"
        " LEFT JOIN audit AS i ON i.seq = a.intent_seq"
        + (" WHERE " + " AND ".join(conditions) if conditions else "")
        + " ORDER BY a.seq DESC"
    )
    if limit:
        sql += " LIMIT ?"
        parameters.append(limit)
    # before and after come twice: the event's own, then its intent's (the later wins)
    events = as_dicts(db.execute(sql, parameters))
    for event in events:
        for key in ("before", "after", "source"):
            if event.get(key) is not None:
                event[key] = json.loads(event[key])
        event["run"] = {column: event.pop(column) for column in _RUN_COLUMNS}
    return events[::-1]

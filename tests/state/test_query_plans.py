"""Costs that do not grow with the history: every statement that a cycle, a takeover,
`syncd status` and `syncd audit --user … --since …` send to the history tables is
answered through an index, on both backends (EXPLAIN QUERY PLAN on SQLite; EXPLAIN
with sequential scans disabled on PostgreSQL, which then shows one only where no
index can serve)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.core.plan import AddEmail
from syncd.core.vocabulary import RunResult, WriteResult
from syncd.state.audit import AuditTrail
from syncd.state.audit_queries import (
    EventFilter,
    last_successful_run,
    open_intents,
    query_events,
    recent_runs,
    run_writes,
)
from syncd.state.backend import Database, StateStore
from syncd.state.daemon_state import read_daemon_state

#: Tables that grow with the history: never read whole.
GROWING = {"audit", "runs", "open_intents"}


@pytest.fixture
def recorded(store: StateStore) -> Iterator[tuple[Database, list[tuple[str, Sequence[Any]]]]]:
    db = store.history
    statements: list[tuple[str, Sequence[Any]]] = []
    execute = db.execute

    def recording(sql: str, parameters: Sequence[Any] = ()) -> Any:
        statements.append((sql, tuple(parameters)))
        return execute(sql, parameters)

    db.execute = recording  # type: ignore[method-assign]
    yield db, statements
    db.execute = execute  # type: ignore[method-assign]


def full_scans(db: Database, sql: str, parameters: Sequence[Any]) -> list[str]:
    """The growing tables that `sql` reads whole, as the engine plans it."""
    if db.dialect.name == "sqlite":
        plan = db.execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
        aliases = _aliases(sql)
        scanned = [
            m.group(1)
            for row in plan
            if (m := re.fullmatch(r"SCAN (\w+)", row[-1]))  # no "USING … INDEX": whole
        ]
        return [aliases.get(name, name) for name in scanned if aliases.get(name, name) in GROWING]
    db.execute("SET enable_seqscan = off")
    try:
        plan = db.execute(f"EXPLAIN {sql}", parameters).fetchall()
    finally:
        db.execute("RESET enable_seqscan")
    return [
        m.group(1)
        for (line,) in plan
        if (m := re.search(r"Seq Scan on (\w+)", line)) and m.group(1) in GROWING
    ]


def _aliases(sql: str) -> dict[str, str]:
    return {alias: table for table, alias in re.findall(r"\b(\w+) AS (\w+)", sql)}


def cycle(db: Database, clock: Callable[[], datetime]) -> None:
    """What the state sees of a cycle that applies one write, and of a takeover."""
    last_successful_run(db)
    audit = AuditTrail(db, {"revision": "abc"}, clock=clock)
    audit.begin_run("run")
    audit.close_dead_runs()
    open_intents(db)
    audit.close_interrupted()
    audit.set_source({"revision": "abc"})
    action = AddEmail("alice", "alice@example.com")
    seq = audit.intent(action)
    audit.outcome(seq, action, WriteResult.OK, status=201)
    audit.end_run(RunResult.OK, {"add_email": 1})


def test_a_cycle_a_takeover_status_and_audit_by_user_read_through_indexes(
    recorded: tuple[Database, list[tuple[str, Sequence[Any]]]],
) -> None:
    db, statements = recorded
    now = datetime(2026, 12, 1, tzinfo=UTC)
    for day in range(3):
        cycle(db, lambda day=day: now + timedelta(days=day))  # type: ignore[misc]
    # A run killed with a write in flight: the next one closes both.
    crashed = AuditTrail(db, {}, clock=lambda: now)
    crashed.begin_run("apply")
    crashed.intent(AddEmail("bob", "bob@example.com"))
    cycle(db, lambda: now + timedelta(days=4))
    recent_runs(db, 10)
    # What status shows of the killed run: its intent without its own outcome.
    assert run_writes(db, crashed.run_id) == {"applied_add_email_interrupted": 1}
    read_daemon_state(db)
    events = query_events(db, EventFilter(users=("alice",), since=now), limit=1000)
    assert len(events) == 8
    assert not open_intents(db)

    reads = [
        (sql, parameters)
        for sql, parameters in statements
        if re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT INTO \w+ \([^)]*\) SELECT)", sql)
    ]
    assert len(reads) > 10
    scans = {sql: found for sql, parameters in reads if (found := full_scans(db, sql, parameters))}
    assert not scans

"""The bench's history (bench/history.py) is the history syncd writes: `syncd audit verify`
accepts its chain, it holds the events and runs asked for and no open intent, and its
rows are those AuditTrail writes for the same run, hashes included."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from bench import history
from bench.history import make_history
from syncd.core.plan import FieldChange, UpdateProfile
from syncd.core.vocabulary import RunResult, WriteResult
from syncd.state.audit import AuditTrail
from syncd.state.audit_queries import open_intents
from syncd.state.chain import read_head
from syncd.state.sqlite_backend import SqliteStore

EVENTS = 2_000
RUNS = 100


def rows(state: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(state / "syncd.db")) as db:
        return db.execute(sql).fetchall()


def test_the_history_holds_what_was_asked_and_syncd_verifies_its_chain(tmp_path: Path) -> None:
    state = tmp_path / "state"
    make_history(state, EVENTS, RUNS)

    env = {key: value for key, value in os.environ.items() if not key.startswith("SYNCD_")}
    verified = subprocess.run(
        [sys.executable, "-m", "syncd", "audit", "--state-dir", str(state), "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr
    assert f"the chain holds: {EVENTS} events, 1 to {EVENTS}" in verified.stdout

    assert rows(state, "SELECT event, COUNT(*) FROM audit GROUP BY event") == [
        ("intent", EVENTS // 2),
        ("outcome", EVENTS // 2),
    ]
    assert rows(
        state, "SELECT result, COUNT(*) FROM runs WHERE ended_at IS NOT NULL GROUP BY 1"
    ) == [("ok", RUNS)]
    with SqliteStore(state) as store:
        assert open_intents(store.history) == []
        assert read_head(store.history).seq == EVENTS
    # Over the past year, oldest first.
    first, last = rows(state, "SELECT MIN(started_at), MAX(started_at) FROM runs")[0]
    assert (datetime.fromisoformat(str(last)) - datetime.fromisoformat(str(first))).days > 360


def test_its_rows_are_those_audit_trail_writes(tmp_path: Path) -> None:
    made = tmp_path / "made"
    make_history(made, EVENTS, RUNS)
    run_id, started_at = rows(made, "SELECT id, started_at FROM runs ORDER BY started_at")[0]
    intents = rows(
        made,
        f"SELECT seq, \"user\", before, after FROM audit WHERE run_id = '{run_id}'"
        " AND event = 'intent' ORDER BY seq",
    )

    # The same run again, written one event at a time by AuditTrail, on a state of its own.
    moment = datetime.fromisoformat(str(started_at))
    written = tmp_path / "written"
    with SqliteStore(written) as store:
        audit = AuditTrail(store.history, {"revision": "bench"}, clock=lambda: moment)
        audit.run_id = str(run_id)  # the bench's run, written again under its id
        audit.begin_run("run")
        for _, user, before, after in intents:
            (field, old), (_, new) = (
                *json.loads(str(before)).items(),
                *json.loads(str(after)).items(),
            )
            action = UpdateProfile(str(user), (FieldChange(field, old, new),))
            seq = audit.intent(action)
            audit.outcome(seq, action, WriteResult.OK, status=200)
        audit.end_run(RunResult.OK, {})

    # The first run starts the chain in both: every column alike, the hashes too.
    for table in ("runs", "audit"):
        query = f"SELECT * FROM {table} WHERE {'id' if table == 'runs' else 'run_id'} = '{run_id}'"
        assert rows(made, query + " ORDER BY 1") == rows(written, query + " ORDER BY 1")
    assert len(rows(written, "SELECT * FROM audit")) == 2 * len(intents) > 0


@pytest.mark.parametrize("verified", [EVENTS, EVENTS // 4], ids=["whole chain", "first events"])
def test_the_bench_stops_on_a_history_whose_chain_is_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verified: int
) -> None:
    monkeypatch.setattr(history, "VERIFIED", verified)
    state = tmp_path / "state"
    make_history(state, EVENTS, RUNS)
    history.check_history(state, EVENTS)

    with contextlib.closing(sqlite3.connect(state / "syncd.db")) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET message = 'changed' WHERE seq = 2")
        db.commit()
    with pytest.raises(SystemExit, match="event 2 does not match its hash"):
        history.check_history(state, EVENTS)

"""The state's contracts, on each backend: schema, append-only audit, intents, group commit,
the lock, and the daemon's own tables. A second store on the same state plays the other
process (another host's instance, or `syncd status`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from syncd.core.live import LiveAccount, LiveEmail, LiveProfile
from syncd.core.not_kept import NotKept
from syncd.core.plan import AddEmail, UpdateProfile
from syncd.core.problem import Problem
from syncd.core.vocabulary import Code, WriteResult
from syncd.errors import DaemonError, StateError
from syncd.state.audit import AuditTrail
from syncd.state.audit_queries import EventFilter, open_intents, query_events
from syncd.state.backend import StateStore
from syncd.state.cache import LiveCache, Snapshot
from syncd.state.daemon_state import read_daemon_state, save_daemon_state
from syncd.state.groupcommit import group_commit
from syncd.state.not_kept import NotKeptRecords
from syncd.state.schema import CACHE, HISTORY
from syncd.state.user_failures import UserFailures
from tests.postgres import Cluster
from tests.state.conftest import API, OTHER_API

Opener = Callable[..., StateStore]
ADD = AddEmail("janedoe", "jane@example.com")


def count(store: StateStore, table: str) -> int:
    (found,) = store.history.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(found)


def test_the_schema_is_made_once_with_its_migrations(open_new: Opener, backend: str):
    recorded = HISTORY + (CACHE if backend == "postgresql" else ())  # cache.db records none
    first = open_new()
    again = open_new()  # a second instance on a state that exists: nothing made twice
    for store in (first, again):
        rows = store.history.execute("SELECT name FROM schema_migrations").fetchall()
        assert sorted(row[0] for row in rows) == sorted(m.name for m in recorded)
    for table in ("runs", "audit", "daemon_state", "not_kept", "user_failures"):
        assert again.history.has_table(table), table
    assert not again.history.has_table("no_such_table")


def test_a_schema_made_by_a_newer_syncd_is_refused(open_new: Opener):
    first = open_new()
    with first.history.atomic():
        first.history.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES ('from_2030', '2030-01-01')"
        )
    first.close()
    with pytest.raises(StateError, match="schema migration from_2030 was made by a newer syncd"):
        open_new().history.execute("SELECT 1")  # SQLite opens its file on first use


@pytest.mark.parametrize("statement", ["UPDATE audit SET result = 'ok'", "DELETE FROM audit"])
def test_the_audit_trail_is_append_only(store: StateStore, statement: str):
    audit = AuditTrail(store.history, {})
    audit.begin_run("apply")
    audit.intent(ADD)
    with pytest.raises(StateError, match="append-only"):
        store.history.execute(statement)
    assert count(store, "audit") == 1


def test_an_error_inside_atomic_leaves_nothing_half_written(store: StateStore):
    audit = AuditTrail(store.history, {})
    audit.begin_run("apply")

    def intent_then_a_failure() -> None:
        with store.history.atomic():
            audit.intent(ADD)
            store.history.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(StateError):
        intent_then_a_failure()
    assert count(store, "audit") == 0
    audit.intent(ADD)  # the handle is still good
    assert count(store, "audit") == 1


def test_a_block_failing_on_our_side_inside_a_transaction_is_never_committed(
    store: StateStore,
):
    # Inside an apply's open transaction, a block that fails before its statement
    # reaches the engine (here a Python error; a value psycopg cannot encode alike).
    audit = AuditTrail(store.history, {})
    audit.begin_run("apply")
    db = store.history
    db.begin()

    def intent_then_our_failure() -> None:
        with db.atomic():
            audit.intent(ADD)
            raise LookupError("after the intent's row, before the block's end")

    with pytest.raises(LookupError):
        intent_then_our_failure()
    with contextlib.suppress(StateError):  # PostgreSQL: the transaction fails whole
        db.commit()
    assert count(store, "audit") == 0


def test_an_intent_stays_open_until_its_outcome(store: StateStore):
    audit = AuditTrail(store.history, {})
    audit.begin_run("apply")
    seq = audit.intent(ADD)
    assert [(i.seq, i.user, i.action) for i in open_intents(store.history)] == [
        (seq, "janedoe", "add_email")
    ]
    audit.outcome(seq, ADD, WriteResult.OK, status=201)
    assert open_intents(store.history) == []
    events = query_events(store.history)
    assert [(e["event"], e["user"], e["result"]) for e in events] == [
        ("intent", "janedoe", None),
        ("outcome", "janedoe", "ok"),
    ]
    assert events[1]["after"] == "jane@example.com"  # the intent's, shown with its outcome
    assert events[0]["run"]["command"] == "apply"


def test_a_dead_run_and_its_open_write_are_closed_as_interrupted(open_new: Opener):
    dead = open_new()
    crashed = AuditTrail(dead.history, {})
    crashed.begin_run("run")
    crashed.intent(UpdateProfile("johnsmith", ()))
    dead.close()  # as a killed process leaves it

    store = open_new()
    audit = AuditTrail(store.history, {})
    audit.begin_run("run")
    assert audit.close_dead_runs() == [crashed.run_id]
    closed = audit.close_interrupted()
    assert [intent.user for intent in closed] == ["johnsmith"]
    assert open_intents(store.history) == []
    (result,) = store.history.execute(
        "SELECT result FROM runs WHERE id = ?", [crashed.run_id]
    ).fetchone()
    assert result == WriteResult.INTERRUPTED
    outcomes = query_events(store.history, EventFilter(results=(WriteResult.INTERRUPTED,)))
    assert [e["event"] for e in outcomes] == ["intent", "outcome"]


def test_query_events_selects_by_user_action_run_and_since(store: StateStore):
    audit = AuditTrail(store.history, {})
    audit.begin_run("apply")
    for action in (ADD, UpdateProfile("johnsmith", ())):
        audit.outcome(audit.intent(action), action, WriteResult.OK)
    db = store.history
    assert {e["user"] for e in query_events(db, EventFilter(users=("johnsmith",)))} == {
        "johnsmith"
    }
    assert len(query_events(db, EventFilter(actions=("add_email",)))) == 2
    assert len(query_events(db, EventFilter(runs=(audit.run_id,)))) == 4
    assert query_events(db, EventFilter(runs=("nope",))) == []
    assert query_events(db, EventFilter(since=datetime(2999, 1, 1, tzinfo=UTC))) == []
    assert [e["event"] for e in query_events(db, limit=1)] == ["outcome"]


def test_the_group_commit_makes_an_intent_durable_and_outcomes_with_the_next(
    open_new: Opener,
):
    store, other = open_new(), open_new("status")
    with store.session() as session:
        audit = AuditTrail(session.history, {})
        audit.begin_run("apply")
        commits = group_commit(session.history, session.cache)
        commits.open()

        async def write() -> None:
            seq = commits.submit(lambda: audit.intent(ADD))
            assert count(other, "audit") == 0  # not yet durable
            await commits.durable()
            assert count(other, "audit") == 1  # durable before the request is sent
            account = LiveAccount("janedoe", emails=(LiveEmail("j@example.com", True, True),))
            commits.submit(
                lambda: audit.outcome(
                    seq.result(),
                    ADD,
                    WriteResult.OK,
                    then=lambda: LiveCache(session.cache, API).put(Snapshot(account, 1.0)),
                )
            )
            assert count(other, "audit") == 1
            await commits.close()

        asyncio.run(write())
    assert count(other, "audit") == 2
    with other.session() as seen:
        assert "janedoe" in LiveCache(seen.cache, API).read_fresh(["janedoe"], 1.0, 10.0)


def test_one_writer_at_a_time(open_new: Opener):
    first, second = open_new("run"), open_new("apply")
    held = first.lock("run")
    with pytest.raises(DaemonError, match="holds"):
        second.lock("apply")
    assert first.holds_lock()
    holders = open_new("status", read_only=True).holders()
    assert [holder.active for holder in holders][:1] == [True]
    held.release()
    second.lock("apply").release()


def test_the_daemon_tables_round_trip(store: StateStore):
    db = store.history
    save_daemon_state(db, {"pid": 12, "source": {"current": True}})
    save_daemon_state(db, {"pid": 13})
    assert read_daemon_state(db) == {"pid": 13, "source": {"current": True}}

    records = NotKeptRecords(db, API)
    records.save([NotKept("janedoe", "company", "ACME ", "ACME")])
    records.save([NotKept("janedoe", "company", "ACME  ", "ACME")])
    assert records.load(["janedoe", "nobody"]) == {
        "janedoe": [NotKept("janedoe", "company", "ACME  ", "ACME")]
    }

    failures = UserFailures(db, API)
    UNAUTHORIZED = Problem("janedoe", Code.UNAUTHORIZED, "HTTP 401")
    failing = failures.update(100.0, [UNAUTHORIZED], [], lambda problem: float(problem.failures))
    assert failing["janedoe"].failures == 1
    assert failing["janedoe"].retry_at == 101.0
    failing = failures.update(200.0, [UNAUTHORIZED], [], lambda problem: float(problem.failures))
    assert failing["janedoe"].failures == 2
    assert failing["janedoe"].since == failures.all()["janedoe"].since
    failures.forget_except(["someone"])
    assert failures.all() == {}


def test_a_read_only_store_writes_nothing(open_new: Opener):
    open_new().close()  # the state exists
    reader = open_new("status", read_only=True)
    with pytest.raises(StateError):
        save_daemon_state(reader.history, {"pid": 1})


@pytest.mark.parametrize("backend", ["postgresql"])
def test_an_instance_that_lost_its_session_cannot_make_an_intent_durable(
    backend: str, open_new: Opener, postgres_cluster: Cluster
):
    store, other = open_new("run"), open_new("status")
    store.lock("run")
    with store.session() as session:
        audit = AuditTrail(session.history, {})
        audit.begin_run("run")
        commits = group_commit(session.history, session.cache)
        commits.open()
        audit.intent(ADD)
        (backend_pid,) = session.history.execute("SELECT pg_backend_pid()").fetchone()
        with postgres_cluster.admin() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
        with pytest.raises(StateError, match="state database postgresql://syncd@"):
            asyncio.run(commits.durable())  # so the applier sends nothing
    assert not store.holds_lock()
    assert count(other, "audit") == 0
    other.lock("run")  # free: the session that held it has ended


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_session_the_server_ended_is_said_to_be_ended_by_the_server(
    backend: str, open_new: Opener, postgres_cluster: Cluster
):
    # The trial (hist D10): after `pg_ctl stop -m immediate` mid-apply the only line was
    # "the connection is closed", psycopg's words for every statement after the loss.
    db = open_new("run").history
    (backend_pid,) = db.execute("SELECT pg_backend_pid()").fetchone()
    with postgres_cluster.admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
    for cause in (
        "terminating connection due to administrator command",
        "the connection is closed",
    ):
        with pytest.raises(StateError) as raised:
            db.execute("SELECT 1")
        assert str(raised.value) == (
            f"state database {db.name}: the server closed the session or went away ({cause})"
        )


def test_what_is_kept_of_one_api_is_not_seen_for_another(store: StateStore):
    """Two servers with the same usernames: answers, not-kept records and failures of
    one are never taken for the other's, and each API keeps its own row per user."""
    db = store.history
    with store.session() as session:
        for api, name in ((API, "Jane"), (OTHER_API, "Jane Staging")):
            profile = LiveProfile(name, "", "", "", "", "jane@example.com")
            LiveCache(session.cache, api).save([Snapshot(LiveAccount("janedoe", profile), 1.0)])
        (cached,) = LiveCache(session.cache, API).read_fresh(["janedoe"], 1.0, 10.0).values()
        assert cached.account.profile is not None
        assert cached.account.profile.full_name == "Jane"
        assert (
            LiveCache(session.cache, "https://third.example").read_fresh(["janedoe"], 1.0, 10.0)
            == {}
        )

    NotKeptRecords(db, API).save([NotKept("janedoe", "company", "ACME ", "ACME")])
    assert NotKeptRecords(db, OTHER_API).load(["janedoe"]) == {}
    assert list(NotKeptRecords(db, API).load(["janedoe"])) == ["janedoe"]

    failing = Problem("janedoe", Code.UNAUTHORIZED, "HTTP 401")
    UserFailures(db, API).update(100.0, [failing], [], lambda problem: 60.0)
    others = UserFailures(db, OTHER_API)
    assert others.all() == {}
    others.update(100.0, [], ["janedoe"], lambda problem: None)  # fine there: not here
    assert list(UserFailures(db, API).all()) == ["janedoe"]
    others.clear()
    assert list(UserFailures(db, API).all()) == ["janedoe"]


def test_a_select_is_streamed_in_batches(store: StateStore) -> None:
    db = store.history
    db.execute_many(
        "INSERT INTO daemon_state (key, value, updated_at) VALUES (?, '1', 'now')",
        [[f"key{n:02d}"] for n in range(25)],
    )
    batches = list(db.stream("SELECT key FROM daemon_state ORDER BY key", 10))
    assert [len(rows) for rows in batches] == [10, 10, 5]
    assert batches[2][-1][0] == "key24"

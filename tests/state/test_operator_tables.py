"""The operator's tables on both backends: suspensions, held deletions, the writers' lock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from syncd.core.plan import DeleteEmail, Plan, UserEmail
from syncd.core.problem import Problem
from syncd.core.suspension import EVERYONE, Suspension
from syncd.core.vocabulary import Code, HeldStatus, RunResult, SuspensionSource
from syncd.errors import DaemonError, GuardError, UsageError
from syncd.service.deletion_guard import DeletionGuard
from syncd.state.audit import AuditTrail
from syncd.state.audit_queries import last_successful_run
from syncd.state.backend import StateStore
from syncd.state.held_changes import HeldChanges, decide
from syncd.state.ownership import Claim, OwnershipLedger
from syncd.state.pending import pending_for, save_pending
from syncd.state.suspensions import SuspensionTable
from tests.state.conftest import API, OTHER_API

CLI = SuspensionSource.CLI
START, DAY = datetime(2026, 1, 1, tzinfo=UTC), timedelta(days=1)


def test_suspensions_round_trip_and_end(store: StateStore):
    table = SuspensionTable(store.history)
    table.suspend(["alice"], Suspension("INC-1", 2000.0, "ops@host", CLI))
    table.suspend([EVERYONE], Suspension("freeze", None, "ops@host", CLI))
    assert table.all()["alice"] == Suspension("INC-1", 2000.0, "ops@host", CLI)
    assert table.holds("alice", 1000.0)
    assert table.holds("bobsmith", 3000.0)  # everyone's, with no end
    assert table.resume([EVERYONE]) == [EVERYONE]
    assert not table.holds("alice", 3000.0)
    assert table.drop_ended(3000.0) == {"alice": Suspension("INC-1", 2000.0, "ops@host", CLI)}
    assert table.all() == {}


def test_a_rejection_leaves_out_every_spelling_the_plan_deletes(store: StateStore):
    # A live list holding one address twice plans a DELETE for each spelling: a
    # rejection kept by key left one of them in the plan, sent.
    held = HeldChanges(store.history, API)
    made, _ = held.hold("rev1", [DeleteEmail("alice", "old@example.com")], 0)
    assert made is not None
    decide(store.history, made.id, HeldStatus.REJECTED, "ops@host")
    both = (DeleteEmail("alice", "old@example.com"), DeleteEmail("alice", "OLD@example.com"))
    assert held.rejections(Plan(both)).deletions == both


def test_a_held_set_is_asked_once_and_decided_once(store: StateStore):
    held = HeldChanges(store.history, API)
    deletions = [DeleteEmail("alice", "Old@Example.com"), DeleteEmail("bobsmith", "x@example.com")]
    first, new = held.hold("rev1", deletions, 0)
    assert new
    again, new = held.hold("rev1", [DeleteEmail("alice", "old@example.com"), deletions[1]], 0)
    assert (again.id, new) == (first.id, False)
    assert first.to_json()["per_user"] == {"alice": 1, "bobsmith": 1}
    rejected = decide(store.history, first.id, HeldStatus.REJECTED, "ops@host")
    assert rejected.status == HeldStatus.REJECTED
    with pytest.raises(UsageError, match="rejected already"):
        decide(store.history, first.id, HeldStatus.REJECTED, "ops@host")
    assert held.decisions().rejected == {
        ("alice", "old@example.com"),
        ("bobsmith", "x@example.com"),
    }
    assert held.hold("rev2", deletions[:1], 0) == (None, False)  # rejected still
    # Approved after all (the way to let a rejected deletion through): the later word.
    decide(store.history, first.id, HeldStatus.APPROVED, "ops@host")
    assert held.decisions().rejected == set()
    with pytest.raises(UsageError, match="approved already"):
        decide(store.history, first.id, HeldStatus.APPROVED, "ops@host")


def test_a_rejection_stands_across_revisions_until_the_deletion_is_no_longer_planned(
    store: StateStore,
):
    # The trial's severity 1: rejected at r1, the deletion fit under the limit at r2
    # (an unrelated commit) and was made unasked. It stands while planned, lapses
    # when a cycle that read the user plans it no more, and is then a new question.
    held = HeldChanges(store.history, API)
    a, b = DeleteEmail("alice", "a@example.com"), DeleteEmail("alice", "b@example.com")
    rejected, _ = held.hold("r1", (a, b), 1)
    assert rejected is not None
    decide(store.history, rejected.id, HeldStatus.REJECTED, "ops@host")
    r2 = DeletionGuard(held, 1, "r2")
    split = r2.split(Plan((a,)))  # b is listed again; a alone fits under the limit
    assert (split.now.changes, split.rejected) == ((), (a,))
    r2.conclude(Plan((a,)))
    # b lapsed, a stands: the set is still rejected, for a alone.
    (still,) = held.with_status(HeldStatus.REJECTED)
    assert still.deletions == (("alice", "a@example.com"),)
    # alice not read (in error): nothing lapses, whatever the plan lacks.
    unread = Plan((), errors=(Problem("alice", Code.FETCH_FAILED, "refused"),))
    DeletionGuard(held, 1, "r3").conclude(unread)
    assert [s.id for s in held.with_status(HeldStatus.REJECTED)] == [rejected.id]
    r3 = DeletionGuard(held, 1, "r3")
    r3.split(Plan(()))
    r3.conclude(Plan(()))  # a is listed again: the rejection lapses, the set closes
    assert held.with_status(HeldStatus.REJECTED) == []
    (closed,) = held.with_status(HeldStatus.SUPERSEDED)
    assert (closed.id, closed.decided_by) == (rejected.id, "ops@host")
    assert held.decisions().rejected == set()
    # Planned again at r4: a new question, applied under the limit, held over it.
    assert DeletionGuard(held, 1, "r4").split(Plan((a,))).now.changes == (a,)
    assert DeletionGuard(held, 0, "r4").split(Plan((a,))).held == (a,)


def test_a_cycle_limited_to_some_users_decides_nothing_of_the_others_sets(store: StateStore):
    # A review's severity 1: `run --once --user bobsmith` plans bobsmith alone, and its
    # guard took alice, in no error and not suspended, for read and planning nothing:
    # her rejection lapsed, her open set closed, her approval was spent unsent.
    held, sets = HeldChanges(store.history, API), []
    for email, decision in (("a", HeldStatus.REJECTED), ("b", HeldStatus.APPROVED), ("c", None)):
        made, _ = held.hold("r1", [DeleteEmail("alice", f"{email}@example.com")], 0)
        assert made is not None
        sets.append(made.id)
        if decision is not None:
            decide(store.history, made.id, decision, "ops@host")
    statuses = {s.id: s.status for s in held.with_status(*HeldStatus)}
    decided = (HeldStatus.REJECTED, HeldStatus.APPROVED, HeldStatus.HELD)
    assert statuses == dict(zip(sets, decided, strict=True))
    limited = DeletionGuard(held, 0, "r2", hold=False, users=frozenset({"bobsmith"}))
    limited.split(Plan((), users=1))
    limited.conclude(Plan((), users=1))
    assert {s.id: s.status for s in held.with_status(*HeldStatus)} == statuses
    # A cycle of everyone that plans none of them decides all three, as before.
    everyone = DeletionGuard(held, 0, "r2")
    everyone.split(Plan(()))
    everyone.conclude(Plan(()))
    assert {s.id for s in held.with_status(HeldStatus.SUPERSEDED)} == set(sets)


def test_pending_changes_are_replaced_at_each_cycle(store: StateStore):
    save_pending(store.history, [DeleteEmail("alice", "a@example.com")])
    save_pending(store.history, [DeleteEmail("bobsmith", "b@example.com")])
    assert list(pending_for(store.history)) == ["bobsmith"]
    assert pending_for(store.history, ["alice"]) == {}
    # A review: `run --once --user alice` wiped everyone's, bobsmith's rejection too.
    save_pending(store.history, [DeleteEmail("alice", "a@example.com")], ["alice"])
    assert list(pending_for(store.history)) == ["alice", "bobsmith"]
    save_pending(store.history, [], ["alice"])
    assert list(pending_for(store.history)) == ["bobsmith"]


def test_a_run_limited_to_some_users_spends_no_approval_reaching_past_them(store: StateStore):
    # A review's severity 1: `run --once --user alice` sent alice's deletions on a set
    # approved for alice and bobsmith and left it approved, so the same deletions,
    # planned again later, went through on it again, unasked.
    held = HeldChanges(store.history, API)
    a1, b1 = DeleteEmail("alice", "a1@example.com"), DeleteEmail("bobsmith", "b1@example.com")
    made, _ = held.hold("r1", [a1, b1], 0)
    assert made is not None
    decide(store.history, made.id, HeldStatus.APPROVED, "ops@host")
    limited = DeletionGuard(held, 1, "r2", hold=False, users=frozenset({"alice"}))
    assert limited.split(Plan((a1,), users=1)).now.changes == (a1,)  # within the limit
    limited = DeletionGuard(held, 0, "r2", hold=False, users=frozenset({"alice"}))
    with pytest.raises(GuardError):  # not let through by the approval it cannot spend
        limited.split(Plan((a1,), users=1))
    # A cycle of everyone spends it, as before.
    everyone = DeletionGuard(held, 0, "r3")
    assert set(everyone.split(Plan((a1, b1))).now.changes) == {a1, b1}


def test_one_writer_at_a_time_and_a_bounded_wait(open_new: Callable[..., StateStore]):
    first, second = open_new(), open_new()
    held = first.try_write_lock("run")
    assert held is not None
    assert second.try_write_lock("apply") is None
    with pytest.raises(DaemonError, match="still writes"):
        asyncio.run(second.write_lock("apply", 0.3))
    held.release()
    asyncio.run(second.write_lock("apply", 0.3)).release()


@pytest.mark.parametrize("command", ["suspend", "approve", "audit prune"])
def test_the_last_success_is_a_converges_not_an_operators_command(store: StateStore, command: str):
    # `syncd status` and the daemon's last-success gauge (what an alert on a
    # daemon that stopped converging watches) say when accounts were last read and
    # matched: a `syncd suspend` or a prune that ended ok is no such thing.
    def run(name: str, result: RunResult, day: int) -> None:
        audit = AuditTrail(store.history, {"revision": name}, clock=lambda: START + day * DAY)
        audit.begin_run(name)
        audit.end_run(result, {})

    run("run", RunResult.NO_CHANGES, 1)
    run("run", RunResult.FAILED, 2)
    run(command, RunResult.OK, 3)
    last = last_successful_run(store.history)
    assert last is not None
    assert datetime.fromisoformat(last[0]) == START + DAY


def test_a_set_held_again_at_a_new_revision_is_rejected_for_that_revision(store: StateStore):
    # The same deletions planned at a new revision keep the open set (asked once);
    # rejecting it must then hold for the revision the daemon plans now, or the
    # next cycle holds them again as a new set and asks again at once.
    held = HeldChanges(store.history, API)
    deletions = [DeleteEmail("alice", "old@example.com")]
    first, _ = held.hold("rev1", deletions, 0)
    kept, new = held.hold("rev2", deletions, 0)
    assert (kept.id, new) == (first.id, False)
    decide(store.history, first.id, HeldStatus.REJECTED, "ops@host")
    assert held.decisions().rejected == {("alice", "old@example.com")}


def test_a_set_decided_for_one_api_lets_nothing_through_on_another(store: StateStore):
    # SYNCD_API_URL changed between the hold and the next cycle: the deletions
    # approved against one API are not the other API's to send past the guard,
    # and one rejected there is still asked about here.
    deletions = (DeleteEmail("alice", "old@example.com"),)
    plan = Plan(deletions)
    approved, _ = HeldChanges(store.history, API).hold("rev1", deletions, 0)
    decide(store.history, approved.id, HeldStatus.APPROVED, "ops@host")
    elsewhere = DeletionGuard(HeldChanges(store.history, OTHER_API), 0, "rev1").split(plan)
    assert (elsewhere.now.changes, elsewhere.held) == ((), deletions)
    here = DeletionGuard(HeldChanges(store.history, API), 0, "rev1").split(plan)
    assert (here.now.changes, here.held) == (deletions, ())

    rejected, _ = HeldChanges(store.history, OTHER_API).hold("rev1", deletions, 0)
    decide(store.history, rejected.id, HeldStatus.REJECTED, "ops@host")
    assert HeldChanges(store.history, API).decisions().rejected == set()


TWO = (DeleteEmail("alice", "a1@example.com"), DeleteEmail("alice", "a2@example.com"))


def test_an_approval_given_while_a_cycle_ran_is_not_asked_about_again(
    open_new: Callable[..., StateStore],
):
    # The trial's severity 1: `syncd approve X` while a cycle planned made that
    # cycle hold the same deletions again as a new set Y; rejecting Y ("not asked
    # about again") then did not stop the next cycle from applying them under X.
    daemon, operator = open_new(), open_new()  # the daemon's session, `syncd approve`'s
    held, plan = HeldChanges(daemon.history, API), Plan(TWO)
    first, _ = held.hold("rev1", TWO, 1)  # by the cycle before, past a limit of 1
    assert first is not None
    cycle = DeletionGuard(held, 1, "rev1")
    assert cycle.split(plan).held == TWO  # planned while the set was still open
    decide(operator.history, first.id, HeldStatus.APPROVED, "ops@host")
    said = cycle.conclude(plan)
    assert held.with_status(HeldStatus.HELD) == []  # nothing new to decide
    assert [approved.id for approved in held.with_status(HeldStatus.APPROVED)] == [first.id]
    assert said == [
        "not holding 2 deletions: the operator decided on them while the cycle ran, "
        "and the next cycle does as decided"
    ]
    after = DeletionGuard(held, 1, "rev1")
    assert after.split(plan).now.changes == TWO
    after.conclude(plan)
    assert held.with_status(HeldStatus.APPROVED) == []


def opened_by_a_race(store: StateStore, held_id: str, revision: str, deletions: str) -> None:
    """A held set written as a race could leave it, beside the sets `hold` made."""
    store.history.execute(
        "INSERT INTO held_changes (id, api, revision, held_at, deletions, status)"
        " VALUES (?, ?, ?, '2026-12-07T19:21:53+00:00', ?, 'held')",
        [held_id, API, revision, deletions],
    )


def test_a_rejection_after_an_approval_of_the_same_deletions_stops_them(store: StateStore):
    # Two sets of the same deletions, one approved and a later one open: what the
    # race left in a state (a syncd before the fix made the second). The operator's
    # last word on them is the rejection.
    held, plan = HeldChanges(store.history, API), Plan(TWO)
    first, _ = held.hold("rev1", TWO, 0)
    assert first is not None
    decide(store.history, first.id, HeldStatus.APPROVED, "ops@host")
    opened_by_a_race(
        store, "second1", "rev1", '[["alice", "a1@example.com"], ["alice", "a2@example.com"]]'
    )
    decide(store.history, "second1", HeldStatus.REJECTED, "ops@host")
    # Replaced by the later word: `syncd status` no longer says the next cycle applies it.
    assert held.with_status(HeldStatus.APPROVED) == []
    cycle = DeletionGuard(held, 0, "rev1")
    split = cycle.split(plan)
    assert (split.now.changes, split.held, split.rejected) == ((), (), TWO)
    cycle.conclude(plan)
    (spent,) = [s for s in held.with_status(HeldStatus.SUPERSEDED) if s.id == first.id]
    assert spent.decided_by == "ops@host"
    # At a later revision, still planned, they stay rejected: not let through.
    later = DeletionGuard(held, 0, "rev2").split(plan)
    assert (later.now.changes, later.held, later.rejected) == ((), (), TWO)


def test_an_approval_after_a_rejection_lifts_it_for_good(store: StateStore):
    # A set of a rejected deletion opened anyway (as a race could): approving it is
    # the later word. Once the approval is spent (the write failed, say), the old
    # rejection must not stand again over the deletion planned once more.
    held, plan = HeldChanges(store.history, API), Plan(TWO[:1])
    first, _ = held.hold("rev1", TWO, 0)
    assert first is not None
    decide(store.history, first.id, HeldStatus.REJECTED, "ops@host")
    opened_by_a_race(store, "again1", "rev2", '[["alice", "a1@example.com"]]')
    decide(store.history, "again1", HeldStatus.APPROVED, "ops@host")
    (rejected,) = held.with_status(HeldStatus.REJECTED)
    assert rejected.deletions == (("alice", "a2@example.com"),)
    cycle = DeletionGuard(held, 0, "rev2")
    assert cycle.split(plan).now.changes == TWO[:1]
    cycle.conclude(plan)  # spends the approval
    assert DeletionGuard(held, 0, "rev3").split(plan).held == TWO[:1]  # asked again


@pytest.mark.parametrize(
    ("approved_at", "rejected_at", "let_through"),
    [
        pytest.param("19:00:00", "19:00:05", False, id="rejected-last"),
        pytest.param("19:00:05", "19:00:00", True, id="approved-last"),
        pytest.param("19:00:00", "19:00:00", False, id="same-second-rejected"),
    ],
)
def test_the_later_decision_about_a_deletion_wins(
    store: StateStore, approved_at: str, rejected_at: str, let_through: bool
):
    held = HeldChanges(store.history, API)
    decided_sets = (("ok1", "approved", approved_at), ("no1", "rejected", rejected_at))
    for held_id, status, at in decided_sets:
        store.history.execute(
            "INSERT INTO held_changes"
            " (id, api, revision, held_at, deletions, status, decided_by, decided_at)"
            " VALUES (?, ?, 'rev1', '2026-12-07T18:00:00+00:00', ?, ?, 'ops@host', ?)",
            [held_id, API, '[["alice", "A1@example.com"]]', status, f"2026-12-07T{at}+00:00"],
        )
    decided = held.decisions()
    key = ("alice", "a1@example.com")
    assert (key in decided.approved, key in decided.rejected) == (let_through, not let_through)
    assert [approved.id for approved in decided.approved_sets] == ["ok1"]


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite: one writer holds the file
def test_a_set_the_cycle_replaces_is_not_approved_in_the_same_moment(
    open_new: Callable[..., StateStore],
):
    # `syncd approve` read the set open, then the daemon's cycle (another session)
    # replaced it: the approval, written over the `superseded` as it was, told the
    # operator "the next cycle applies them" of a set no cycle spends.
    daemon, operator, watcher = open_new(), open_new(), open_new()
    held = HeldChanges(daemon.history, API)
    first, _ = held.hold("rev1", TWO[:1], 0)
    assert first is not None
    (operator_pid,) = operator.history.execute("SELECT pg_backend_pid()").fetchone()
    daemon.history.begin()
    replacing, _ = held.hold("rev1", TWO, 0)  # supersedes `first`, not committed yet
    refused: list[str] = []

    def approve() -> None:
        try:
            decide(operator.history, first.id, HeldStatus.APPROVED, "ops@host")
        except UsageError as error:
            refused.append(str(error))

    approving = threading.Thread(target=approve)
    approving.start()
    deadline = time.monotonic() + 30
    waiting = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?"
    while watcher.history.execute(waiting, [operator_pid]).fetchone() != ("Lock",):
        assert time.monotonic() < deadline, "the approval never waited for the cycle's row"
        time.sleep(0.01)  # polls a condition of the server; what it waits for is the row lock
    daemon.history.commit()
    approving.join(30)
    assert refused == [
        f"held change set {first.id} was closed by the daemon meanwhile: "
        "`syncd status` shows what it holds now"
    ]
    assert replacing is not None
    assert [h.id for h in held.with_status(HeldStatus.HELD)] == [replacing.id]
    assert held.with_status(HeldStatus.APPROVED) == []


def test_a_release_keeps_a_claim_made_after_the_read_began(store: StateStore):
    # Review: a plan takes no lock. Its read found X gone, an apply then added X (claiming
    # it), and the plan's release dropped that claim: X, syncd's own, was never deleted.
    ledger = OwnershipLedger(store.history, API)
    read_began = time.time() - 2
    with store.history.atomic():
        ledger.record([UserEmail("janedoe", "x@example.com")], Claim.ADDED)
        ledger.release([UserEmail("janedoe", "x@example.com")], read_began)
    assert ledger.load(["janedoe"]) == {"janedoe": frozenset({"x@example.com"})}
    with store.history.atomic():
        ledger.release([UserEmail("janedoe", "x@example.com")], time.time() + 2)
    assert ledger.load(["janedoe"]) == {}

"""The audit trail's hash chain, on both backends: it holds as syncd writes it, and a
change made by anyone (the file's owner with sqlite3, the table's owner with its
triggers disabled) is found, and named by the first event that does not match."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.core.plan import AddEmail
from syncd.core.vocabulary import RunResult, WriteResult
from syncd.errors import StateError
from syncd.settings import Settings
from syncd.state.audit import AuditTrail
from syncd.state.backend import StateStore
from syncd.state.chain import Head, digest, read_head, verify
from tests.state.conftest import tamper


def write_events(store: StateStore, writes: int = 3) -> list[int]:
    """A run of `writes` writes (an intent and an outcome each); the events' numbers."""
    audit = AuditTrail(store.history, {"revision": "r1"})
    audit.begin_run("apply")
    numbers = []
    for n in range(writes):
        action = AddEmail(f"user{n}", f"user{n}@example.com")
        seq = audit.intent(action)
        audit.outcome(seq, action, WriteResult.OK, status=201)
        numbers += [seq, seq + 1]
    audit.end_run(RunResult.OK, {})
    return numbers


def test_the_chain_holds_and_its_head_is_the_last_event(store: StateStore) -> None:
    numbers = write_events(store)
    verified = verify(store.history)
    assert (verified.checked, verified.first, verified.unhashed) == (6, numbers[0], 0)
    assert verified.head == read_head(store.history)
    assert verified.head is not None
    assert verified.head.seq == numbers[-1]
    assert verify(store.history, verified.head).head == verified.head


@pytest.mark.parametrize(
    ("change", "named", "why"),
    [
        ("UPDATE audit SET message = 'nothing here' WHERE seq = {3}", 3, "was changed"),
        ("UPDATE audit SET \"user\" = 'mallory' WHERE seq = {0}", 0, "was changed"),
        ("DELETE FROM audit WHERE seq = {2}", 3, "does not follow event"),
        ("DELETE FROM audit WHERE seq <= {1}", 2, "follows no recorded start"),
        ("DELETE FROM audit WHERE seq = {5}", 4, "events at its end were removed"),
        (
            'INSERT INTO audit (seq, run_id, timestamp, event, "user", action, prev_hash, hash)'
            ' SELECT seq + 1000, run_id, timestamp, event, "user", action, hash, hash'
            " FROM audit WHERE seq = {5}",
            1005,
            "does not match its hash",
        ),
    ],
    ids=["update-message", "update-user", "delete-middle", "delete-start", "delete-end", "insert"],
)
def test_a_change_made_past_the_triggers_is_found_and_named(
    store: StateStore, open_new: Callable[..., StateStore], change: str, named: int, why: str
) -> None:
    numbers = write_events(store)
    tamper(store, change.format(*numbers))
    expected = numbers[named] if named < 1000 else numbers[named - 1000] + 1000
    again = open_new()
    with pytest.raises(StateError, match=why) as found:
        verify(again.history)
    assert f"event {expected}" in str(found.value)


def test_a_rewritten_chain_holds_alone_and_fails_against_a_kept_head(
    store: StateStore, open_new: Callable[..., StateStore]
) -> None:
    numbers = write_events(store, 2)
    kept = read_head(store.history)
    # Whoever rewrites the last event and recomputes its hash and the head: the
    # chain holds, and only the head kept elsewhere shows that the past changed.
    cursor = store.history.execute("SELECT * FROM audit WHERE seq = ?", [numbers[-1]])
    row = dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))
    row["message"] = "nothing happened"
    forged = digest(row, row["prev_hash"])
    tamper(
        store,
        f"UPDATE audit SET message = 'nothing happened', hash = '{forged}'"
        f" WHERE seq = {numbers[-1]}",
        f"UPDATE audit_head SET hash = '{forged}'",
    )
    again = open_new()
    assert verify(again.history).checked == 4
    with pytest.raises(StateError, match=f"the kept head, event {kept.seq}, is not in"):
        verify(again.history, kept)


def test_events_from_before_the_chain_have_no_hash_and_it_starts_after_them(
    store: StateStore,
) -> None:
    db = store.history
    for n in (1, 2):  # as a syncd before the chain wrote them, the head behind them
        db.execute(
            'INSERT INTO audit (seq, run_id, timestamp, event, "user", action)'
            " VALUES (?, 'old', '2026-01-01T00:00:00', 'intent', 'old', 'add_email')",
            [n],
        )
    db.execute("UPDATE audit_head SET seq = 2")
    numbers = write_events(store, 1)
    assert numbers[0] == 3
    verified = verify(db)
    assert (verified.unhashed, verified.first, verified.checked) == (2, 3, 2)


def test_audit_head_before_any_event_says_there_is_none_to_keep(
    store: StateStore, state_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It printed "0:" and exited 0: a head that `verify --head` then refused.
    assert read_head(store.history).hash is None  # the state is there, with no event
    if state_settings.on_postgresql:
        monkeypatch.setenv("SYNCD_STATE_URL", state_settings.state_url or "")
        monkeypatch.setenv("SYNCD_STATE_PASSWORD_FILE", str(state_settings.state_password_file))
    state = ["--state-dir", str(state_settings.state_dir)]
    printed = CliRunner().invoke(cli, ["audit", *state, "head"])
    assert printed.exit_code == 1
    assert printed.stdout == ""
    assert printed.stderr.startswith("syncd: no hashed event yet: there is no head to keep")


def test_audit_head_and_verify_through_the_cli(
    store: StateStore, state_settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_events(store)
    if state_settings.on_postgresql:
        monkeypatch.setenv("SYNCD_STATE_URL", state_settings.state_url or "")
        monkeypatch.setenv("SYNCD_STATE_PASSWORD_FILE", str(state_settings.state_password_file))
    state = ["--state-dir", str(state_settings.state_dir)]
    runner = CliRunner()
    printed = runner.invoke(cli, ["audit", *state, "head"], catch_exceptions=False)
    assert printed.exit_code == 0, printed.output
    head = Head.parse(printed.stdout)
    assert head == read_head(store.history)
    (tmp_path / "head").write_text(printed.stdout)
    checked = runner.invoke(cli, ["audit", *state, "verify", "--head", str(tmp_path / "head")])
    assert checked.exit_code == 0, checked.output
    assert "the chain holds: 6 events" in checked.stdout
    assert f"the kept head, event {head.seq}, is in the chain" in checked.stdout

    tamper(store, f"UPDATE audit SET target = 'x@example.com' WHERE seq = {head.seq - 2}")
    broken = runner.invoke(cli, ["audit", *state, "verify"])
    assert broken.exit_code == 1
    assert f"audit event {head.seq - 2} does not match its hash" in broken.output
    assert "Traceback" not in broken.output
